/**
 * Which client headers reach the upstream, and which upstream headers reach the client. Request
 * headers are an allow-list per provider: credentials, forwarding headers, method overrides and
 * org/project selectors (`OpenAI-Organization`, `OpenAI-Project` — chosen by the owner's key,
 * never by a client) never pass. `Accept-Encoding` is replaced by `identity`: the host must read
 * usage from every answer, and a compressed one would hide it. Response headers that reveal the
 * owner's organisation are dropped. Pure.
 */
import type { ProviderSpec } from '../../protocol/index.ts';
import { HOP_BY_HOP_HEADERS, RPC_ENCLAVE_ERROR_HEADER } from '../../protocol/index.ts';

/** Headers any provider's clients legitimately send that carry no authority. */
const COMMON = new Set(['content-type', 'accept', 'accept-language', 'user-agent', 'idempotency-key', 'x-request-id', 'x-client-request-id']);

/** Provider-specific headers, by provider id (`*` applies to OpenAI-compatible providers). */
const BY_PROVIDER: Record<string, readonly string[]> = {
  openai: ['openai-beta'],
  azure: ['openai-beta', 'x-ms-client-request-id'],
  anthropic: ['anthropic-version', 'anthropic-beta'],
  'gemini-native': ['x-goog-api-client'],
  openrouter: ['http-referer', 'x-title'],
};

/** SDK telemetry headers (`x-stainless-os`, `x-stainless-retry-count`, …): informational only. */
const PASS_PREFIXES = ['x-stainless-'];

/**
 * Any-API connections front arbitrary APIs whose clients send version and idempotency headers
 * (`Stripe-Version`, `Notion-Version`, `X-GitHub-Api-Version`): those pass, but never a header
 * that carries a credential, a client address, a method override or a gateway control.
 */
const ANY_API_DENY = /^(authorization|proxy-authorization|cookie|x-api-key|api-key|x-goog-api-key|x-forwarded-.*|forwarded|x-real-ip|cf-connecting-ip|true-client-ip|x-client-ip|x-http-method(-override)?|x-method-override|x-original-url|x-rewrite-url|x-sg-.*|x-device-fingerprint|host|content-length|transfer-encoding|connection|keep-alive|te|trailer|upgrade|expect|accept-encoding)$/;
const ANY_API_ALLOW = /^(content-type|accept|accept-language|user-agent|idempotency-key|[a-z0-9-]*-version|x-[a-z0-9-]+)$/;

export function requestHeaderAllowed(provider: ProviderSpec, name: string): boolean {
  if (provider.id === 'any') return !ANY_API_DENY.test(name) && ANY_API_ALLOW.test(name);
  if (COMMON.has(name)) return true;
  if ((BY_PROVIDER[provider.id] ?? []).includes(name)) return true;
  return PASS_PREFIXES.some((p) => name.startsWith(p));
}

/** The headers sent on to the enclave (which adds the credential): allowed ones only. */
export function upstreamRequestHeaders(provider: ProviderSpec, incoming: Record<string, string | string[] | undefined>): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(incoming)) {
    if (value !== undefined && requestHeaderAllowed(provider, name)) out[name] = value;
  }
  out['accept-encoding'] = 'identity';
  return out;
}

const RESPONSE_DROP = new Set([
  ...HOP_BY_HOP_HEADERS, RPC_ENCLAVE_ERROR_HEADER,
  // Who the upstream key belongs to is the owner's business, not the key holder's.
  'openai-organization', 'openai-project', 'anthropic-organization-id', 'x-goog-user-project', 'set-cookie',
]);

/** The upstream's response headers the client may see. */
export function clientResponseHeaders(incoming: Record<string, string | string[] | undefined>): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(incoming)) {
    if (value !== undefined && !RESPONSE_DROP.has(name)) out[name] = value;
  }
  return out;
}
