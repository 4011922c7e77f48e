/**
 * Hostile clients against every route (docs/architecture.md §8.6): generated garbage in methods, paths,
 * credentials, headers and bodies never yields a 5xx or a crash, and a refused request changes
 * nothing; 10 000 distinct forged keys are refused; a slow body does not hold up others.
 */
import { connect } from 'node:net';
import fc from 'fast-check';
import { Pool } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateSgKey } from '../../host/keys.ts';
import { startTestStack } from './helpers.ts';

let stack: Awaited<ReturnType<typeof startTestStack>>;
let pool: Pool;
let keyId: string;
let key: string;

beforeAll(async () => {
  stack = await startTestStack({ hostArgs: ['--velocity-floor', '100000000'] });
  pool = new Pool(stack.hostUrl, { connections: 32 });
  const res = await fetch(`${stack.hostUrl}/admin/v1/keys`, {
    method: 'POST',
    headers: { authorization: `Bearer ${stack.adminToken}`, 'content-type': 'application/json' },
    body: JSON.stringify({ connectionId: stack.demo!.connectionId, models: ['gpt-4o-mini'], dailyLimit: 50 }),
  });
  ({ id: keyId, key } = (await res.json()) as { id: string; key: string });
  // Bind the key to this machine first, so every later request is judged against a bound key.
  await fetch(`${stack.hostUrl}/v1/models`, { headers: { authorization: `Bearer ${key}` } });
});
afterAll(async () => {
  await pool?.close();
  await stack?.cleanup();
});

const admin = async (path: string) =>
  (await (await fetch(`${stack.hostUrl}/admin/v1${path}`, { headers: { authorization: `Bearer ${stack.adminToken}` } })).json()) as Record<string, unknown>;

const ROUTES = [
  '/v1/chat/completions', '/v1/completions', '/v1/embeddings', '/v1/responses', '/v1/responses/resp_1', '/v1/models', '/v1/messages',
  '/v1/messages/count_tokens', '/v1/audio/transcriptions', '/v1/audio/speech', '/v1/images/edits', '/v1/files', '/v1/files/file-1/content',
  '/v1/uploads/up_1/parts', '/v1/attestation', '/any/v1/x', '/openai/deployments/d/chat/completions', '/v1beta/models/m:generateContent',
  '/admin/v1/keys', '/admin/v1/connections', '/healthz', '/readyz', '/metrics', '/', '/v1', '/v1/', '/v1/../admin/v1/keys', '/v1/%2e%2e/x',
  '/auth/v1/signup', '/auth/v1/login', '/auth/v1/token', '/auth/v1/session', '/auth/v1/logout', '/admin/v1/account', '/admin/v1/accounts',
  '/admin/v1/accounts/acct_default', '/admin/v1/invites', '/admin/v1/members/usr_1', '/admin/v1/tokens', '/admin/v1/tokens/tok_1',
  '/admin/v1/projects/proj_default', '/admin/v1/attestation', '/admin/v1/enrollment', '/admin/v1/plans', '/dashboard', '/dashboard/',
  '/dashboard/assets/x.js', '/dashboard/../host.sqlite',
];

const credential = fc.oneof(
  fc.constant(undefined),
  fc.constant(`Bearer ${'SG_'}`),
  fc.string().map((s) => `Bearer ${s}`),
  fc.constant('valid'),
  fc.constant(`Bearer ${generateSgKey()}`),
  fc.string({ maxLength: 300 }),
);

const body = fc.oneof(
  fc.constant(undefined),
  fc.uint8Array({ maxLength: 2000 }).map((b) => Buffer.from(b)),
  fc.json().map((j) => Buffer.from(j)),
  fc.constantFrom('{"model":', '{"model": 1e999999}', '{"model":"gpt-4o-mini","messages":[]}', '['.repeat(5000), '{"model":"gpt-4o-mini","stream":true,"stream_options":7}', '{"model":{"a":1}}', 'null', '"x"').map((s) => Buffer.from(s)),
  fc.constant(Buffer.from('--x\r\nContent-Disposition: form-data; name="model"\r\n\r\nwhisper-1\r\n--x--\r\n')),
);

const request = fc.record({
  method: fc.constantFrom('GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'HEAD', 'OPTIONS'),
  // (an empty request target is not a request a client can send: undici hangs on it client-side)
  path: fc.oneof(fc.constantFrom(...ROUTES), fc.webPath().map((p) => (p.startsWith('/') ? p : `/${p}`)), fc.string({ maxLength: 100 }).map((s) => `/v1/${encodeURIComponent(s)}`)),
  query: fc.oneof(fc.constant(''), fc.string({ maxLength: 50 }).map((s) => `?${encodeURIComponent(s)}=1`), fc.constant('?nonce=zz')),
  auth: credential,
  header: fc.constantFrom('authorization', 'x-api-key', 'api-key', 'x-goog-api-key'),
  contentType: fc.constantFrom(undefined, 'application/json', 'multipart/form-data; boundary=x', 'multipart/form-data', 'text/plain', 'application/json; charset=utf-16'),
  extra: fc.dictionary(fc.constantFrom('x-forwarded-for', 'x-device-fingerprint', 'x-sg-timestamp', 'x-sg-signature', 'anthropic-version', 'forwarded', 'cookie', 'x-csrf-token'), fc.string({ maxLength: 60 }).filter((v) => !/[\r\n\0]/.test(v) && /^[\x20-\x7e]*$/.test(v))),
  body,
});

describe('hostile clients', () => {
  it('never get a 5xx for anything they send, and refused requests change nothing', { timeout: 120_000 }, async () => {
    const statusBefore = await admin(`/keys/${keyId}/status`);
    const keyBefore = await admin(`/keys/${keyId}`);
    let served = 0;
    await fc.assert(
      fc.asyncProperty(request, async (r) => {
        const headers: Record<string, string> = { ...r.extra };
        if (r.contentType) headers['content-type'] = r.contentType;
        if (r.auth !== undefined) {
          const value = r.auth === 'valid' ? (r.header === 'authorization' ? `Bearer ${key}` : key) : r.auth;
          if (/^[\x20-\x7e]*$/.test(value)) headers[r.header] = value;
        }
        const hasBody = r.body !== undefined && r.method !== 'GET' && r.method !== 'HEAD';
        let status: number;
        try {
          const res = await pool.request({ path: r.path + r.query, method: r.method as 'GET', headers, body: hasBody ? r.body : null, headersTimeout: 20_000, bodyTimeout: 20_000, signal: AbortSignal.timeout(20_000) });
          await res.body.dump();
          status = res.statusCode;
        } catch (e) {
          // undici itself refusing to send a malformed request is fine; anything else is not.
          expect(String((e as Error).message)).toMatch(/invalid|Invalid|header|path/);
          return;
        }
        expect(status, `${r.method} ${r.path}${r.query}`).toBeLessThan(500);
        if (status < 300 && r.auth === 'valid') served++;
      }),
      { numRuns: 500, seed: 20261124, endOnFailure: true },
    );
    // Only served requests (if any) may move counters; the key's locks never change.
    const keyAfter = await admin(`/keys/${keyId}`);
    expect({ ...keyAfter, lastUsedAt: null }).toEqual({ ...keyBefore, lastUsedAt: null });
    const statusAfter = await admin(`/keys/${keyId}/status`);
    if (served === 0) expect(statusAfter.spentToday).toBe(statusBefore.spentToday);
    const health = await fetch(`${stack.hostUrl}/healthz`);
    expect(health.status).toBe(200);
  });

  it('refuses 10 000 distinct forged keys with 401 and stays healthy', { timeout: 120_000 }, async () => {
    const keys = Array.from({ length: 10_000 }, () => generateSgKey());
    const statuses = new Map<number, number>();
    for (let i = 0; i < keys.length; i += 100) {
      const batch = await Promise.all(
        keys.slice(i, i + 100).map(async (k) => {
          const res = await pool.request({ path: '/v1/models', method: 'GET', headers: { authorization: `Bearer ${k}` } });
          await res.body.dump();
          return res.statusCode;
        }),
      );
      for (const s of batch) statuses.set(s, (statuses.get(s) ?? 0) + 1);
    }
    expect([...statuses]).toEqual([[401, 10_000]]);
    expect(stack.mock!.requests.some((r) => JSON.stringify(r.headers).includes('SG_'))).toBe(false);
    const ok = await fetch(`${stack.hostUrl}/v1/models`, { headers: { authorization: `Bearer ${key}` } });
    expect(ok.status).toBe(200);
  });

  it('keeps serving others while a client trickles its body', async () => {
    const port = Number(new URL(stack.hostUrl).port);
    const slow = connect(port, '127.0.0.1');
    await new Promise<void>((r) => slow.once('connect', () => r()));
    slow.write(`POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${key}\r\ncontent-type: application/json\r\ncontent-length: 100000\r\n\r\n{"model":`);
    const timer = setInterval(() => slow.write(' '), 50);
    try {
      const results = await Promise.all(
        Array.from({ length: 20 }, async () => {
          const res = await fetch(`${stack.hostUrl}/v1/chat/completions`, {
            method: 'POST',
            headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
            body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] }),
          });
          return res.status;
        }),
      );
      expect(results.every((s) => s === 200)).toBe(true);
    } finally {
      clearInterval(timer);
      slow.destroy();
    }
  });
});
