import { describe, expect, it } from 'vitest';
import { providerSpec } from '../../protocol/index.ts';
import { clientResponseHeaders, upstreamRequestHeaders } from './headers.ts';

const openai = providerSpec('openai')!;
const anthropic = providerSpec('anthropic')!;
const any = providerSpec('any')!;

describe('request headers to the upstream', () => {
  it('passes what SDKs send and drops credentials, forwarding, overrides and org selectors', () => {
    const out = upstreamRequestHeaders(openai, {
      'content-type': 'application/json', accept: 'application/json', 'user-agent': 'OpenAI/JS 6', 'x-stainless-os': 'Linux', 'openai-beta': 'assistants=v2',
      authorization: 'Bearer SG_x', 'x-api-key': 'SG_x', cookie: 'a=b', 'x-forwarded-for': '1.2.3.4', forwarded: 'for=1.2.3.4', 'cf-connecting-ip': '1.2.3.4',
      'x-http-method-override': 'DELETE', 'x-method-override': 'DELETE', 'openai-organization': 'org-x', 'openai-project': 'proj-x', 'x-sg-signature': 'x',
      'x-device-fingerprint': 'd', host: 'evil', 'anthropic-version': '2023-06-01', 'accept-encoding': 'gzip, br',
    });
    expect(Object.keys(out).sort()).toEqual(['accept', 'accept-encoding', 'content-type', 'openai-beta', 'user-agent', 'x-stainless-os']);
    expect(out['accept-encoding']).toBe('identity');
  });

  it('passes anthropic-version and anthropic-beta to Anthropic only', () => {
    const h = { 'anthropic-version': '2023-06-01', 'anthropic-beta': 'x', 'openai-beta': 'y' };
    expect(Object.keys(upstreamRequestHeaders(anthropic, h)).sort()).toEqual(['accept-encoding', 'anthropic-beta', 'anthropic-version']);
  });

  it('lets version headers through any-API connections but never credentials or overrides', () => {
    const out = upstreamRequestHeaders(any, { 'stripe-version': '2024-06-20', 'x-github-api-version': '2022-11-28', 'idempotency-key': 'k', authorization: 'x', 'x-http-method-override': 'PUT', 'x-forwarded-host': 'h', 'x-real-ip': '1.1.1.1' });
    expect(Object.keys(out).sort()).toEqual(['accept-encoding', 'idempotency-key', 'stripe-version', 'x-github-api-version']);
  });
});

describe('response headers to the client', () => {
  it('drops what names the owner organisation and hop-by-hop headers', () => {
    const out = clientResponseHeaders({ 'openai-organization': 'org-owner', 'openai-project': 'p', 'anthropic-organization-id': 'o', 'set-cookie': 'x', connection: 'close', 'x-request-id': 'req_1', 'x-ratelimit-remaining-requests': '9' });
    expect(Object.keys(out).sort()).toEqual(['x-ratelimit-remaining-requests', 'x-request-id']);
  });
});
