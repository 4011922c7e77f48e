/**
 * Every provider adapter through the real gateway: origin pinning, credential injection in the
 * provider's scheme, the path mapping and the path allow-list — against a loopback upstream that
 * records what it receives. Also any-API connections (Stripe-style basic auth, query keys).
 */
import { randomBytes } from 'node:crypto';
import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PROVIDERS } from '../../protocol/index.ts';
import { createKey } from '../../cli/owner.ts';
import { connectTestProvider, startTestStack } from './helpers.ts';

let stack: Awaited<ReturnType<typeof startTestStack>>;
let recorder: ReturnType<typeof createServer>;
let origin: string;
const seen: Array<{ method: string; url: string; headers: IncomingHttpHeaders }> = [];

beforeAll(async () => {
  stack = await startTestStack();
  recorder = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      seen.push({ method: req.method!, url: req.url!, headers: req.headers });
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ id: 'x', object: 'chat.completion', choices: [], usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 } }));
    });
  });
  await new Promise<void>((r) => recorder.listen(0, '127.0.0.1', r));
  origin = `http://127.0.0.1:${(recorder.address() as AddressInfo).port}`;
});
afterAll(async () => {
  recorder?.close();
  await stack?.cleanup();
});

const UPSTREAM_KEY = `sk-upstream-${randomBytes(8).toString('hex')}`;

async function connect(provider: string, extra: { authScheme?: string; allowRules?: string[] } = {}) {
  const connectionId = await connectTestProvider(stack, provider, { origin, apiKey: UPSTREAM_KEY, ...extra });
  return (await createKey(stack.hostUrl, stack.adminToken, connectionId)).key;
}

async function call(key: string, method: string, path: string, headerName = 'authorization') {
  const before = seen.length;
  const res = await fetch(`${stack.hostUrl}${path}`, {
    method,
    headers: { [headerName]: headerName === 'authorization' ? `Bearer ${key}` : key, 'content-type': 'application/json' },
    ...(method === 'GET' ? {} : { body: JSON.stringify({ model: 'some-model', messages: [{ role: 'user', content: 'hi' }] }) }),
  });
  await res.arrayBuffer();
  return { status: res.status, upstream: seen.slice(before) };
}

function credentialSeen(headers: IncomingHttpHeaders, url: string, scheme: string): string | undefined {
  if (scheme === 'bearer') return headers.authorization === `Bearer ${UPSTREAM_KEY}` ? 'ok' : String(headers.authorization);
  if (scheme === 'basic') return headers.authorization === `Basic ${Buffer.from(UPSTREAM_KEY).toString('base64')}` ? 'ok' : String(headers.authorization);
  if (scheme.startsWith('header:')) return headers[scheme.slice(7)] === UPSTREAM_KEY ? 'ok' : 'missing';
  if (scheme.startsWith('query:')) return new URL(url, 'http://x').searchParams.get(scheme.slice(6)) === UPSTREAM_KEY ? 'ok' : 'missing';
  return headers[scheme] === UPSTREAM_KEY ? 'ok' : 'missing';
}

const chatProviders = Object.values(PROVIDERS).filter((p) => p.endpoints.some((e) => e.path.test('/chat/completions')));

describe('provider adapters', () => {
  it('covers at least the 15 providers of the product promise', () => {
    expect(Object.keys(PROVIDERS).length).toBeGreaterThanOrEqual(17);
    for (const id of ['openai', 'anthropic', 'azure', 'gemini', 'gemini-native', 'mistral', 'groq', 'together', 'fireworks', 'deepseek', 'xai', 'openrouter', 'perplexity', 'cohere', 'cerebras', 'vllm', 'ollama', 'any']) {
      expect(PROVIDERS[id], id).toBeDefined();
    }
  });

  for (const spec of chatProviders) {
    it(`${spec.id}: maps /v1/chat/completions to ${spec.upstreamBase}/chat/completions with ${spec.authScheme} and refuses admin paths`, async () => {
      const key = await connect(spec.id);
      const ok = await call(key, 'POST', '/v1/chat/completions');
      expect(ok.status).toBe(200);
      expect(ok.upstream).toHaveLength(1);
      expect(ok.upstream[0]!.url).toBe(`${spec.upstreamBase}/chat/completions`);
      expect(credentialSeen(ok.upstream[0]!.headers, ok.upstream[0]!.url, spec.authScheme)).toBe('ok');
      expect(JSON.stringify(ok.upstream[0]!.headers)).not.toContain('SG_');
      const refused = await call(key, 'GET', '/v1/organization/users');
      expect(refused.status).toBe(404);
      expect(refused.upstream).toHaveLength(0);
    });
  }

  it('anthropic: /v1/messages with x-api-key', async () => {
    const key = await connect('anthropic');
    const ok = await call(key, 'POST', '/v1/messages', 'x-api-key');
    expect(ok.upstream[0]!.url).toBe('/v1/messages');
    expect(ok.upstream[0]!.headers['x-api-key']).toBe(UPSTREAM_KEY);
    expect((await call(key, 'POST', '/v1/chat/completions', 'x-api-key')).status).toBe(404);
  });

  it('azure: classic deployment URLs pass through with api-key and api-version', async () => {
    const key = await connect('azure');
    const ok = await call(key, 'POST', '/openai/deployments/my-gpt4o/chat/completions?api-version=2024-10-21', 'api-key');
    expect(ok.status).toBe(200);
    expect(ok.upstream[0]!.url).toBe('/openai/deployments/my-gpt4o/chat/completions?api-version=2024-10-21');
    expect(ok.upstream[0]!.headers['api-key']).toBe(UPSTREAM_KEY);
    expect((await call(key, 'GET', '/openai/deployments/x/../../admin', 'api-key')).status).toBe(404);
  });

  it('gemini-native: generateContent with the key as x-goog-api-key, both ways', async () => {
    const key = await connect('gemini-native');
    const ok = await call(key, 'POST', '/v1beta/models/gemini-2.0-flash:generateContent', 'x-goog-api-key');
    expect(ok.status).toBe(200);
    expect(ok.upstream[0]!.url).toBe('/v1beta/models/gemini-2.0-flash:generateContent');
    expect(ok.upstream[0]!.headers['x-goog-api-key']).toBe(UPSTREAM_KEY);
    expect((await call(key, 'POST', '/v1beta/tunedModels/x:generateContent', 'x-goog-api-key')).status).toBe(404);
  });
});

describe('any-API connections', () => {
  it('basic auth (Stripe style): only the allow-listed methods and paths reach the pinned origin', async () => {
    const key = await connect('any', { authScheme: 'basic', allowRules: ['GET /v1/customers/*', 'POST /v1/payment_intents'] });
    const ok = await call(key, 'GET', '/any/v1/customers/cus_123?expand=x');
    expect(ok.status).toBe(200);
    expect(ok.upstream[0]!.url).toBe('/v1/customers/cus_123?expand=x');
    expect(credentialSeen(ok.upstream[0]!.headers, '', 'basic')).toBe('ok');
    expect((await call(key, 'POST', '/any/v1/payment_intents')).status).toBe(200);
    for (const [method, path] of [['DELETE', '/any/v1/customers/cus_123'], ['GET', '/any/v1/customers/cus_1/sources'], ['GET', '/any/v1/balance'], ['GET', '/v1/chat/completions']]) {
      const refused = await call(key, method!, path!);
      expect(refused.status, `${method} ${path}`).toBe(404);
      expect(refused.upstream).toHaveLength(0);
    }
  });

  it('query-parameter and named-header schemes inject the key where the API expects it', async () => {
    const q = await connect('any', { authScheme: 'query:key', allowRules: ['GET /maps/api/geocode/json'] });
    const viaQuery = await call(q, 'GET', '/any/maps/api/geocode/json?address=x&key=attacker');
    expect(credentialSeen(viaQuery.upstream[0]!.headers, viaQuery.upstream[0]!.url, 'query:key')).toBe('ok');
    expect(viaQuery.upstream[0]!.url).not.toContain('attacker');
    const h = await connect('any', { authScheme: 'header:x-slack-token', allowRules: ['POST /api/chat.postMessage'] });
    const viaHeader = await call(h, 'POST', '/any/api/chat.postMessage');
    expect(viaHeader.upstream[0]!.headers['x-slack-token']).toBe(UPSTREAM_KEY);
  });

  it('applies a daily request cap', async () => {
    const connectionId = await connectTestProvider(stack, 'any', { origin, apiKey: UPSTREAM_KEY, authScheme: 'bearer', allowRules: ['GET /v1/ping'] });
    const res = await fetch(`${stack.hostUrl}/admin/v1/keys`, {
      method: 'POST',
      headers: { authorization: `Bearer ${stack.adminToken}`, 'content-type': 'application/json' },
      body: JSON.stringify({ connectionId, dailyRequests: 2 }),
    });
    const { key } = (await res.json()) as { key: string };
    expect((await call(key, 'GET', '/any/v1/ping')).status).toBe(200);
    expect((await call(key, 'GET', '/any/v1/ping')).status).toBe(200);
    const third = await call(key, 'GET', '/any/v1/ping');
    expect(third.status).toBe(429);
    expect(third.upstream).toHaveLength(0);
  });
});
