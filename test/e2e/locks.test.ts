/**
 * Every lock, positive and negative, through the real gateway with the official SDKs. The stack
 * trusts loopback as a proxy, so tests present real-world client addresses (from the GeoLite2
 * database) in X-Forwarded-For; one test uses distinct real loopback source addresses instead.
 */
import { DatabaseSync } from 'node:sqlite';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';
import Anthropic from '@anthropic-ai/sdk';
import { createServer } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { Agent, fetch as undiciFetch } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { signRequest } from '../../protocol/index.ts';
import { startTestSmtp, type TestSmtp } from '../smtp.ts';
import { adminApi, enrollConnection, eventually, startTestStack } from './helpers.ts';

let stack: Awaited<ReturnType<typeof startTestStack>>;
let smtp: TestSmtp;

beforeAll(async () => {
  smtp = await startTestSmtp();
  const smtpUrl = smtp.url;
  stack = await startTestStack({ hostArgs: ['--trusted-proxy', 'loopback', '--velocity-floor', '20', '--velocity-factor', '3', '--smtp-url', smtpUrl] });
});
afterAll(async () => {
  await stack?.cleanup();
  await smtp.close();
});

const BRACKNELL = '81.2.69.142';
const PLYMOUTH = '2.125.160.216';
const MINNEAPOLIS = '128.101.101.101';
const SAO_PAULO = '200.160.2.3';
const NOWHERE = '1.1.1.1';

const admin = <T = Record<string, unknown>>(method: string, path: string, body?: unknown) => adminApi(stack)<T>(method, path, body);

async function newKey(options: Record<string, unknown> = {}): Promise<{ id: string; key: string; signingSecret?: string }> {
  const r = await admin<{ id: string; key: string; signingSecret?: string }>('POST', '/keys', { connectionId: stack.demo!.connectionId, ...options });
  expect(r.status).toBe(201);
  return r.json;
}

function client(key: string, headers: Record<string, string> = {}) {
  return new OpenAI({ apiKey: key, baseURL: `${stack.hostUrl}/v1`, maxRetries: 0, defaultHeaders: headers });
}

function chat(key: string, ip: string, extra: Record<string, string> = {}, model = 'gpt-4o-mini') {
  return client(key, { 'x-forwarded-for': ip, ...extra }).chat.completions.create({ model, messages: [{ role: 'user', content: 'hi' }] });
}

async function refusal(p: Promise<unknown>): Promise<{ status: number; code: string; headers: Headers }> {
  const e = (await p.catch((x: unknown) => x)) as InstanceType<typeof OpenAI.APIError>;
  expect(e).toBeInstanceOf(OpenAI.APIError);
  return { status: e.status!, code: e.code as string, headers: e.headers as unknown as Headers };
}

/** An undici dispatcher whose connections leave from `localAddress` (any 127.0.0.0/8 address). */
function fromAddress(localAddress: string): Agent {
  return new Agent({
    connect: (opts, callback) => {
      const socket = connect({ host: opts.hostname, port: Number(opts.port), localAddress });
      socket.once('connect', () => callback(null, socket));
      socket.once('error', (e) => callback(e, null));
      return socket;
    },
  });
}

async function events(keyId: string, type: string) {
  return (await admin<Array<{ type: string; detail: Record<string, unknown> }>>('GET', `/events?keyId=${keyId}&type=${type}`)).json;
}

describe('IP auto-bind', () => {
  it('binds on first use, refuses other IPs with 403 ip_mismatch and an alert event, forwards nothing', async () => {
    const k = await newKey();
    expect((await admin<{ boundIp: null }>('GET', `/keys/${k.id}`)).json.boundIp).toBeNull();
    await chat(k.key, BRACKNELL);
    expect((await admin<{ boundIp: string }>('GET', `/keys/${k.id}`)).json.boundIp).toBe(BRACKNELL);
    await chat(k.key, BRACKNELL);
    const before = stack.mock!.requests.length;
    const r = await refusal(chat(k.key, PLYMOUTH));
    expect(r).toMatchObject({ status: 403, code: 'ip_mismatch' });
    expect(r.headers.get('x-should-retry')).toBe('false');
    expect(stack.mock!.requests.length).toBe(before);
    const ev = await events(k.id, 'ip_mismatch');
    expect(ev[0]!.detail).toMatchObject({ clientIp: PLYMOUTH, boundIp: BRACKNELL });
  });

  it('repin returns the key to unbound and lock --ip pins it manually', async () => {
    const k = await newKey();
    await chat(k.key, BRACKNELL);
    await admin('POST', `/keys/${k.id}/repin`);
    await chat(k.key, PLYMOUTH);
    expect((await admin<{ boundIp: string }>('GET', `/keys/${k.id}`)).json.boundIp).toBe(PLYMOUTH);
    await admin('POST', `/keys/${k.id}/lock`, { ip: `::ffff:${MINNEAPOLIS}` });
    expect((await refusal(chat(k.key, PLYMOUTH))).code).toBe('ip_mismatch');
    await chat(k.key, MINNEAPOLIS);
  });

  it('lets exactly one of concurrent first requests from different real source addresses win', async () => {
    const k = await newKey();
    const sources = ['127.0.0.2', '127.0.0.3', '127.0.0.4', '127.0.0.5', '127.0.0.6', '127.0.0.7'];
    // Loopback is a trusted proxy here, and a trusted proxy must say who the client is: each
    // "proxy" forwards its own address, as a proxy in front of distinct machines would.
    const results = await Promise.allSettled(
      sources.map((localAddress) =>
        new OpenAI({
          apiKey: k.key,
          baseURL: `${stack.hostUrl}/v1`,
          maxRetries: 0,
          defaultHeaders: { 'x-forwarded-for': localAddress },
          // Each client connects from its own loopback address, as distinct machines would.
          fetch: ((url: string, init: object) => undiciFetch(url, { ...init, dispatcher: fromAddress(localAddress) })) as never,
        })
          .chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] }),
      ),
    );
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    const winner = sources[results.findIndex((r) => r.status === 'fulfilled')];
    expect((await admin<{ boundIp: string }>('GET', `/keys/${k.id}`)).json.boundIp).toBe(winner);
    for (const r of results) if (r.status === 'rejected') expect((r.reason as { code: string }).code).toBe('ip_mismatch');
  });
});

describe('self-healing identity (auto-lock to device and city on first use)', () => {
  const F1 = '1'.repeat(64);
  const F2 = '2'.repeat(64);
  const view = async (id: string) => (await admin<{ boundIp: string | null; boundCity: string | null; deviceBound: boolean }>('GET', `/keys/${id}/status`)).json;

  it('binds IP, device and city on the first successful request, refuses others, repin resets', async () => {
    const k = await newKey({ autoLock: ['ip', 'device', 'city'] });
    // A first use without a fingerprint cannot bind the device: refused, and nothing is bound.
    expect((await refusal(chat(k.key, BRACKNELL))).code).toBe('device_mismatch');
    expect(await view(k.id)).toMatchObject({ boundIp: null, boundCity: null, deviceBound: false });
    await chat(k.key, BRACKNELL, { 'x-device-fingerprint': F1 });
    expect(await view(k.id)).toMatchObject({ boundIp: BRACKNELL, boundCity: 'Bracknell, GB', deviceBound: true });
    await chat(k.key, BRACKNELL, { 'x-device-fingerprint': F1 });
    expect((await refusal(chat(k.key, BRACKNELL, { 'x-device-fingerprint': F2 }))).code).toBe('device_mismatch');
    // Moved to another city (IP pinned there by hand): the city auto-lock still holds.
    await admin('POST', `/keys/${k.id}/lock`, { ip: PLYMOUTH });
    expect((await refusal(chat(k.key, PLYMOUTH, { 'x-device-fingerprint': F1 }))).code).toBe('city_not_allowed');
    await admin('POST', `/keys/${k.id}/repin`);
    await chat(k.key, PLYMOUTH, { 'x-device-fingerprint': F2 });
    expect(await view(k.id)).toMatchObject({ boundIp: PLYMOUTH, boundCity: 'Plymouth, GB', deviceBound: true });
    expect((await events(k.id, 'device_bound')).length).toBe(2);
  });

  it('lets exactly one of concurrent first requests from different devices bind', async () => {
    const k = await newKey({ autoLock: ['device'] });
    const prints = Array.from({ length: 6 }, (_, i) => String(i + 3).repeat(64));
    const results = await Promise.allSettled(prints.map((fp) => chat(k.key, BRACKNELL, { 'x-device-fingerprint': fp })));
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    for (const r of results) if (r.status === 'rejected') expect((r.reason as { code: string }).code).toBe('device_mismatch');
  });

  it('takes the project default for keys that say nothing, and binds the city on first use', async () => {
    expect((await admin('PATCH', '/projects/proj_default', { autoLock: ['city'] })).json).toMatchObject({ defaultAutoLock: ['ip', 'city'] });
    try {
      const k = await newKey();
      const explicit = await newKey({ autoLock: ['ip'] });
      expect((await admin<{ autoLock: string[] }>('GET', `/keys/${k.id}`)).json.autoLock).toEqual(['ip', 'city']);
      expect((await admin<{ autoLock: string[] }>('GET', `/keys/${explicit.id}`)).json.autoLock).toEqual(['ip']);
      await chat(k.key, MINNEAPOLIS);
      expect(await view(k.id)).toMatchObject({ boundIp: MINNEAPOLIS, boundCity: 'Minneapolis, US' });
      await admin('POST', `/keys/${k.id}/lock`, { ip: BRACKNELL });
      expect((await refusal(chat(k.key, BRACKNELL))).code).toBe('city_not_allowed');
    } finally {
      await admin('PATCH', '/projects/proj_default', { autoLock: null });
    }
    expect((await admin<{ autoLock: string[] }>('GET', `/keys/${(await newKey()).id}`)).json.autoLock).toEqual(['ip']);
  });
});

describe('city lock', () => {
  it('allows listed cities case- and accent-insensitively and refuses others and unknown places', async () => {
    const cities = ['bracknell, gb', 'São Paulo'];
    await chat((await newKey({ cities })).key, BRACKNELL);
    await chat((await newKey({ cities })).key, SAO_PAULO);
    expect(await refusal(chat((await newKey({ cities })).key, MINNEAPOLIS))).toMatchObject({ status: 403, code: 'city_not_allowed' });
    expect((await refusal(chat((await newKey({ cities })).key, NOWHERE))).code).toBe('city_not_allowed');
    // Not a city the database knows: the owner confirms it, and it matches nothing.
    expect((await refusal(chat((await newKey({ cities: ['Bracknell, US'], confirmUnknown: true })).key, BRACKNELL))).code).toBe('city_not_allowed');
  });
});

describe('device lock', () => {
  it('requires the bound fingerprint in x-device-fingerprint', async () => {
    const k = await newKey();
    const fingerprint = 'f'.repeat(64);
    expect((await admin('POST', `/keys/${k.id}/device`, { fingerprint })).status).toBe(200);
    expect(await refusal(chat(k.key, BRACKNELL))).toMatchObject({ status: 403, code: 'device_mismatch' });
    expect((await refusal(chat(k.key, BRACKNELL, { 'x-device-fingerprint': 'e'.repeat(64) }))).code).toBe('device_mismatch');
    await chat(k.key, BRACKNELL, { 'x-device-fingerprint': fingerprint });
    expect((await events(k.id, 'device_mismatch')).length).toBe(2);
  });
});

describe('models and aliases', () => {
  it('refuses models outside the allow-list before any upstream call, resolves aliases, filters /v1/models', async () => {
    await admin('PUT', '/projects/proj_default/aliases/fast', { target: 'gpt-4o-mini' });
    const k = await newKey({ models: ['gpt-4o-mini'] });
    const before = stack.mock!.requests.length;
    expect(await refusal(chat(k.key, BRACKNELL, {}, 'gpt-4o'))).toMatchObject({ status: 403, code: 'model_not_allowed' });
    expect(stack.mock!.requests.length).toBe(before);
    const viaAlias = await chat(k.key, BRACKNELL, {}, 'fast');
    expect(viaAlias.model).toBe('gpt-4o-mini');
    const models = await client(k.key, { 'x-forwarded-for': BRACKNELL }).models.list();
    expect(models.data.map((m) => m.id)).toEqual(['gpt-4o-mini']);
  });

  it('keeps keys inside their connection\'s project', async () => {
    await admin('POST', '/projects', { id: 'proj_other', name: 'Other' });
    const r = await admin('POST', '/keys', { connectionId: stack.demo!.connectionId, projectId: 'proj_other' });
    expect(r.status).toBe(400);
  });
});

describe('request signatures', () => {
  it('requires a valid, fresh, unused signature once enabled', async () => {
    const k = await newKey({ requireSignature: true });
    expect(k.signingSecret).toMatch(/^[0-9a-f]{64}$/);
    expect((await refusal(chat(k.key, BRACKNELL))).code).toBe('signature_invalid');
    const body = new TextEncoder().encode(JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] }));
    const headers = { authorization: `Bearer ${k.key}`, 'content-type': 'application/json', 'x-forwarded-for': BRACKNELL, ...signRequest(k.signingSecret!, 'POST', '/v1/chat/completions', body) };
    const ok = await fetch(`${stack.hostUrl}/v1/chat/completions`, { method: 'POST', headers, body });
    expect(ok.status).toBe(200);
    const replay = await fetch(`${stack.hostUrl}/v1/chat/completions`, { method: 'POST', headers, body });
    expect(replay.status).toBe(401);
    expect((await replay.json()).error.code).toBe('signature_replayed');
    const stale = { ...headers, ...signRequest(k.signingSecret!, 'POST', '/v1/chat/completions', body, Date.now() - 600_000) };
    const old = await fetch(`${stack.hostUrl}/v1/chat/completions`, { method: 'POST', headers: stale, body });
    expect((await old.json()).error.code).toBe('signature_invalid');
  });
});

describe('signed-request snippets from securegate env --signed', () => {
  it('the curl snippet produces requests the gateway accepts', async () => {
    const { SIGNED_SNIPPETS } = await import('../../cli/keys.ts');
    const { execFile } = await import('node:child_process');
    const k = await newKey({ requireSignature: true });
    // Asynchronously: the mock upstream lives in this process and must keep answering.
    // Loopback is a trusted proxy in this stack: a .curlrc adds the client address it must forward.
    const curlHome = await mkdtemp(join(tmpdir(), 'sg-curl-'));
    await writeFile(join(curlHome, '.curlrc'), `header = "X-Forwarded-For: ${BRACKNELL}"\n`);
    const out = await new Promise<string>((resolve, reject) =>
      execFile('bash', ['-c', SIGNED_SNIPPETS.curl!(`${stack.hostUrl}/v1`)], { env: { ...process.env, CURL_HOME: curlHome, SECUREGATE_KEY: k.key, SECUREGATE_SIGNING_SECRET: k.signingSecret! } }, (e, stdout) =>
        e ? reject(e) : resolve(stdout),
      ),
    );
    expect(JSON.parse(out).choices[0].message.content).toBe('Hello from the mock upstream.');
  });
});

describe('kill switch, revoke, inactivity expiry', () => {
  it('kill is immediate and reversible; revoke is permanent', async () => {
    const k = await newKey();
    await chat(k.key, BRACKNELL);
    await admin('POST', `/keys/${k.id}/kill`);
    expect(await refusal(chat(k.key, BRACKNELL))).toMatchObject({ status: 401, code: 'key_killed' });
    await admin('POST', `/keys/${k.id}/activate`);
    await chat(k.key, BRACKNELL);
    await admin('POST', `/keys/${k.id}/revoke`);
    expect((await refusal(chat(k.key, BRACKNELL))).code).toBe('key_revoked');
    expect((await admin('POST', `/keys/${k.id}/activate`)).status).toBe(409);
  });

  it('expires a key unused longer than --inactive-expiry', async () => {
    const k = await newKey({ inactiveExpiry: '7d' });
    await chat(k.key, BRACKNELL);
    // Eight days pass: move the key's last use back (the clock itself cannot be moved here).
    const db = new DatabaseSync(join(stack.dataDir, 'host', 'host.sqlite'));
    db.exec('PRAGMA busy_timeout = 5000');
    db.prepare('UPDATE sg_keys SET last_used_at = last_used_at - ? WHERE id = ?').run(8 * 86_400_000, k.id);
    db.close();
    await admin('PATCH', `/keys/${k.id}`, { name: 'touch to drop caches' });
    expect(await refusal(chat(k.key, BRACKNELL))).toMatchObject({ status: 401, code: 'key_expired' });
    expect((await admin<{ status: string }>('GET', `/keys/${k.id}`)).json.status).toBe('expired');
  });

  it('speaks Anthropic\'s error shape on /v1/messages', async () => {
    const conn = await enrollConnection(stack, { upstreamKey: stack.demo!.upstreamKey, provider: 'anthropic' });
    const keys = (await admin<Array<{ id: string; connectionId: string }>>('GET', '/keys')).json;
    const id = keys.find((x) => x.connectionId === conn.connectionId)!.id;
    await admin('POST', `/keys/${id}/kill`);
    const a = new Anthropic({ apiKey: conn.key, baseURL: stack.hostUrl, maxRetries: 0 });
    const e = (await a.messages.create({ model: 'claude-opus-4-8', max_tokens: 8, messages: [{ role: 'user', content: 'x' }] }).catch((x: unknown) => x)) as { status: number; error: unknown };
    expect(e.status).toBe(401);
    expect(e.error).toMatchObject({ type: 'error', error: { type: 'authentication_error', code: 'key_killed' } });
  });
});

describe('abuse detection', () => {
  it('suspends a key whose rate spikes, with retry-after and an event, until unsuspended', async () => {
    const k = await newKey();
    const statuses: number[] = [];
    let suspended: { status: number; code: string; headers: Headers } | undefined;
    for (let i = 0; i < 30 && !suspended; i++) {
      try {
        await chat(k.key, BRACKNELL);
        statuses.push(200);
      } catch (e) {
        suspended = await refusal(Promise.reject(e));
      }
    }
    expect(suspended).toMatchObject({ status: 429, code: 'key_suspended' });
    expect(Number(suspended!.headers.get('retry-after'))).toBeGreaterThan(0);
    expect(statuses.length).toBeGreaterThan(15);
    expect((await refusal(chat(k.key, BRACKNELL))).code).toBe('key_suspended');
    expect((await events(k.id, 'key_suspended')).length).toBe(1);
    await admin('POST', `/keys/${k.id}/unsuspend`);
    await chat(k.key, BRACKNELL);
  });
});

describe('alerts on lock events', () => {
  it('delivers an IP mismatch to the project\'s webhook (signed) and by email', async () => {
    const hooks: Array<{ headers: Record<string, unknown>; body: string }> = [];
    const receiver = createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('end', () => {
        hooks.push({ headers: req.headers, body });
        res.writeHead(200).end();
      });
    });
    await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
    try {
      const hook = await admin<{ id: string; secret: string }>('POST', '/alerts', { kind: 'webhook', target: `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/sg` });
      expect(hook.json.secret).toMatch(/^whsec_/);
      await admin('POST', '/alerts', { kind: 'email', target: 'owner@example.com' });
      const k = await newKey();
      await chat(k.key, BRACKNELL);
      await refusal(chat(k.key, PLYMOUTH));
      const delivered = await eventually(async () => hooks.find((h) => JSON.parse(h.body).type === 'ip_mismatch'));
      expect(JSON.parse(delivered.body).data).toMatchObject({ keyId: k.id, clientIp: PLYMOUTH, boundIp: BRACKNELL });
      expect(String(delivered.headers['webhook-signature'])).toMatch(/^v1,/);
      const mail = await eventually(async () => smtp.mails.find((m) => m.includes(k.id)));
      expect(mail).toContain(`Request IP: ${PLYMOUTH}`);
      expect(mail).toContain(`Bound IP: ${BRACKNELL}`);
      const deliveries = (await admin<Array<{ type: string; deliveredAt: number | null }>>('GET', '/alerts/deliveries')).json;
      expect(deliveries.filter((d) => d.type === 'ip_mismatch' && d.deliveredAt !== null).length).toBeGreaterThanOrEqual(2);
    } finally {
      receiver.close();
    }
  });
});
