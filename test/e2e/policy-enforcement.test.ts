/**
 * Invariants 8 and 9 against the real enclave server, real shareholder services (2-of-3, dev NSM)
 * and a fake upstream on loopback. The test plays a hostile host: it speaks the enclave RPC
 * directly and chooses every descriptor field itself. What it shows:
 * - the owner-signed connection policy sealed with the record is enforced (operations, models,
 *   daily requests / tokens / micro-dollars read from relayed JSON and SSE), with typed errors;
 * - the host cannot pair a record with a laxer, foreign or missing policy;
 * - records sealed without a policy keep working as before;
 * - the upstream key never leaves in a response header or body, in any common encoding.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { mkdtemp, rm } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { gzipSync } from 'node:zlib';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDevRoot, DevNsm } from '../../attestation/dev.ts';
import { verifyAttestation } from '../../attestation/index.ts';
import { Enclave } from '../../enclave/server.ts';
import { keyPatterns } from '../../enclave/scrub.ts';
import {
  compareUsage,
  connectionPolicySha256,
  receiptKeyFromUserData,
  verifyUsageReceipt,
  type SignedUsageReceipt,
  encodeConnectionDescriptor,
  encodeShare,
  generateOwnerKeyPair,
  RPC_CONNECTION_HEADER,
  RPC_ENCLAVE_ERROR_HEADER,
  sealShareEnvelope,
  sealUpstreamKey,
  signConnectionPolicy,
  signOwnerMessage,
  splitSecret,
  toHex,
  type ConnectionDescriptor,
  type ConnectionPolicy,
  type KeyBinding,
  type SignedOwnerMessage,
} from '../../protocol/index.ts';
import { initIdentity } from '../../shareholders/identity.ts';
import { buildShareholderServer } from '../../shareholders/server.ts';
import { openShareStore, type ShareStore } from '../../shareholders/store.ts';
import { devPcrPolicy } from '../../attestation/dev-pcrs.ts';

const PCR0 = new Uint8Array(createHash('sha384').update('policy enclave bundle').digest());
const DAY = 86_400_000;
const owner = generateOwnerKeyPair();
const clock = { t: Date.UTC(2026, 11, 2, 12) };

interface Shareholder {
  app: FastifyInstance;
  url: string;
  id: string;
  publicKey: Uint8Array;
  store: ShareStore;
  dir: string;
}
const shareholders: Shareholder[] = [];
let enclave: Enclave;
let enclaveUrl: string;
let nsm: DevNsm;
let devRoot: Awaited<ReturnType<typeof createDevRoot>>;
let upstream: Server;
let upstreamOrigin: string;
let upstreamCalls = 0;

/** How the fake upstream echoes the credential it received. */
function echoForms(key: string): Record<string, string> {
  const b = Buffer.from(key);
  return {
    raw: key,
    base64: b.toString('base64'),
    base64url: b.toString('base64url'),
    basic: Buffer.from(`${key}:`).toString('base64'),
    hex: b.toString('hex'),
    urlEncoded: encodeURIComponent(key),
    formEncoded: new URLSearchParams({ k: key }).toString().slice(2),
    jsonEscaped: JSON.stringify(key).slice(1, -1),
  };
}

function credentialOf(req: IncomingMessage): string {
  const auth = String(req.headers.authorization ?? '');
  return auth.startsWith('Bearer ') ? auth.slice(7) : String(new URL(req.url ?? '/', 'http://x').searchParams.get('key') ?? '');
}

async function readJson(req: IncomingMessage): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  return chunks.length ? (JSON.parse(Buffer.concat(chunks).toString()) as Record<string, unknown>) : {};
}

async function startUpstream(): Promise<void> {
  upstream = createServer((req, res) => {
    upstreamCalls++;
    void (async () => {
      const body = await readJson(req);
      const key = credentialOf(req);
      const echo = String(req.headers['x-test-echo'] ?? '');
      if (echo) {
        const form = echoForms(key)[echo]!;
        const status = Number(req.headers['x-test-status'] ?? 200);
        const text = JSON.stringify({ next: `${upstreamOrigin}/v1/chat/completions?key=${form}&page=2`, echo: form, usage: { prompt_tokens: 1, completion_tokens: 1 } });
        const headers = { 'content-type': 'application/json', location: `${upstreamOrigin}/v1/x?key=${form}`, 'x-echo': form };
        if (req.headers['x-test-gzip']) {
          // An upstream that compresses although asked for identity.
          const gz = gzipSync(text);
          res.writeHead(status, { ...headers, 'content-encoding': 'gzip', 'content-length': gz.length, 'x-accept-encoding-seen': String(req.headers['accept-encoding']) });
          res.end(gz);
          return;
        }
        if (req.headers['x-test-chunked']) {
          // Streamed in 3-byte writes, so echoes straddle chunk boundaries.
          res.writeHead(status, headers);
          for (let i = 0; i < text.length; i += 3) {
            res.write(text.slice(i, i + 3));
            await new Promise((r) => setImmediate(r));
          }
          res.end();
        } else {
          res.writeHead(status, { ...headers, 'content-length': Buffer.byteLength(text) });
          res.end(text);
        }
        return;
      }
      if (req.headers['x-test-no-usage']) {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end('{"id":"x","choices":[]}');
        return;
      }
      if (body.stream === true) {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.write(`data: ${JSON.stringify({ choices: [{ delta: { content: 'hi' } }] })}\n\n`);
        res.write(`data: ${JSON.stringify({ choices: [], usage: { prompt_tokens: 7, completion_tokens: 3 } })}\n\n`);
        res.end('data: [DONE]\n\n');
        return;
      }
      const text = JSON.stringify({ id: 'x', model: body.model, usage: { prompt_tokens: 10, completion_tokens: 5 } });
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
      res.end(text);
    })();
  });
  await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
  upstreamOrigin = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`;
}

interface Connection {
  binding: KeyBinding;
  record: Uint8Array;
  key: string;
  signed?: SignedOwnerMessage;
}

/** The owner's side of `connect`: seal (with the policy's hash when there is one), split, enroll. */
async function connect(policy?: Partial<ConnectionPolicy>, key = `sk-proj-${randomBytes(12).toString('base64')}/+x~y`, maxLeasesPerDay?: number): Promise<Connection> {
  const connectionId = `conn_${randomBytes(8).toString('hex')}`;
  const signed = policy
    ? signConnectionPolicy(owner.secretKey, { connectionId, issuedAt: clock.t, operations: ['inference'], ceiling: {}, ...policy })
    : undefined;
  const binding: KeyBinding = {
    connectionId,
    provider: 'openai',
    origin: upstreamOrigin,
    authScheme: 'bearer',
    ...(signed ? { policySha256: connectionPolicySha256(signed) } : {}),
  };
  const dek = new Uint8Array(randomBytes(32));
  const record = sealUpstreamKey(new TextEncoder().encode(key), dek, binding, (n) => new Uint8Array(randomBytes(n)));
  const shares = splitSecret(dek, 2, shareholders.length);
  await Promise.all(
    shareholders.map(async (sh, i) => {
      const envelope = await sealShareEnvelope(sh.publicKey, encodeShare(shares[i]!), { purpose: 'enroll', connectionId, shareholderId: sh.id });
      const enroll = signOwnerMessage(owner.secretKey, {
        type: 'enroll',
        connectionId,
        shareholderId: sh.id,
        issuedAt: Date.now(),
        envelopeSha256: createHash('sha256').update(envelope).digest('hex'),
        policy: devPcrPolicy(toHex(PCR0)),
        maxReleasesPerMinute: 600,
        ...(maxLeasesPerDay !== undefined ? { maxLeasesPerDay } : {}),
      });
      const res = await fetch(`${sh.url}/v1/shares`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ envelope: Buffer.from(envelope).toString('base64'), signed: enroll }) });
      expect(res.status).toBe(201);
    }),
  );
  return { binding, record, key, ...(signed ? { signed } : {}) };
}

function descriptor(c: Connection, over: Partial<ConnectionDescriptor> = {}): string {
  const d: ConnectionDescriptor = {
    connectionId: c.binding.connectionId,
    provider: 'openai',
    origin: upstreamOrigin,
    authScheme: 'bearer',
    sealedRecord: Buffer.from(c.record).toString('base64'),
    threshold: 2,
    ...(c.signed ? { policy: c.signed } : {}),
    ...over,
  };
  return encodeConnectionDescriptor(d);
}

/** The hostile host: any request, any descriptor, straight to the enclave. */
async function send(c: Connection, opts: { path?: string; method?: string; body?: unknown; headers?: Record<string, string>; descriptor?: string; at?: string } = {}) {
  const res = await fetch(`${opts.at ?? enclaveUrl}/forward${opts.path ?? '/v1/chat/completions'}`, {
    method: opts.method ?? 'POST',
    redirect: 'manual',
    headers: { [RPC_CONNECTION_HEADER]: opts.descriptor ?? descriptor(c), 'content-type': 'application/json', ...opts.headers },
    ...((opts.method ?? 'POST') === 'POST' ? { body: JSON.stringify(opts.body ?? { model: 'gpt-4o', messages: [] }) } : {}),
  });
  const text = await res.text();
  return { status: res.status, code: res.headers.get(RPC_ENCLAVE_ERROR_HEADER), headers: res.headers, text };
}

/** One enclave process's worth: a fresh ephemeral key and empty memory (what a restart gives). */
async function startEnclave(): Promise<{ enclave: Enclave; url: string }> {
  const e = new Enclave({
    nsm,
    shareholders: shareholders.map((s) => ({ id: s.id, url: s.url, publicKey: toHex(s.publicKey) })),
    allowLoopbackHttp: true,
    now: () => clock.t,
  });
  await e.boot();
  await new Promise<void>((r) => e.server.listen(0, '127.0.0.1', r));
  return { enclave: e, url: `http://127.0.0.1:${(e.server.address() as AddressInfo).port}` };
}

beforeAll(async () => {
  const root = await createDevRoot();
  devRoot = root;
  nsm = await DevNsm.create({ root, pcr0: PCR0 });
  for (const id of ['sh-a', 'sh-b', 'sh-c']) {
    const dir = await mkdtemp(join(tmpdir(), 'sg-policy-'));
    const identity = initIdentity(dir, id);
    const store = await openShareStore(dir);
    const app = await buildShareholderServer({ identity, store, mode: 'dev', extraRoots: [DevNsm.pinnedRoot(root)] });
    const url = await app.listen({ port: 0, host: '127.0.0.1' });
    shareholders.push({ app, url, id, publicKey: identity.publicKey, store, dir });
  }
  await startUpstream();
  ({ enclave, url: enclaveUrl } = await startEnclave());
}, 60_000);

afterAll(async () => {
  await enclave?.close();
  await new Promise((r) => upstream?.close(r));
  for (const s of shareholders) {
    await s.app.close();
    await s.store.close();
    await rm(s.dir, { recursive: true, force: true });
  }
});

describe('owner-signed connection policy, enforced in the enclave', () => {
  it('forwards a request inside the policy and counts its tokens from the JSON answer', async () => {
    const c = await connect({ models: ['gpt-4o'] });
    const r = await send(c);
    expect(r.status).toBe(200);
    expect(enclave.usage.used(c.binding.connectionId)).toEqual({ requests: 1, tokens: 15, microUsd: 0 });
  });

  it('counts tokens from an SSE answer', async () => {
    const c = await connect({});
    const r = await send(c, { body: { model: 'gpt-4o', stream: true, messages: [] } });
    expect(r.status).toBe(200);
    expect(enclave.usage.used(c.binding.connectionId).tokens).toBe(10);
  });

  it('refuses an operation the policy does not grant, before any upstream call', async () => {
    const c = await connect({});
    const before = upstreamCalls;
    const r = await send(c, { path: '/v1/files', method: 'GET' });
    expect(r.status).toBe(403);
    expect(r.code).toBe('policy_operation_denied');
    expect(upstreamCalls).toBe(before);
    const granted = await connect({ operations: ['inference', 'files:read'] });
    expect((await send(granted, { path: '/v1/files', method: 'GET', headers: { 'x-test-echo': 'raw' } })).status).toBe(200);
    expect((await send(granted, { path: '/v1/files/file-1', method: 'DELETE' })).code).toBe('policy_operation_denied');
  });

  it('refuses a model outside the list, and a request whose model cannot be read', async () => {
    const c = await connect({ models: ['gpt-4o-mini'] });
    const r = await send(c, { body: { model: 'gpt-4o', messages: [] } });
    expect(r.status).toBe(403);
    expect(r.code).toBe('policy_model_denied');
    expect((await send(c, { body: { messages: [] } })).code).toBe('policy_model_denied');
    expect((await send(c, { body: { model: 'gpt-4o-mini', messages: [] } })).status).toBe(200);
  });

  it('stops at the daily request ceiling until the next UTC day', async () => {
    const c = await connect({ ceiling: { requests: 3 } });
    for (let i = 0; i < 3; i++) expect((await send(c)).status).toBe(200);
    const r = await send(c);
    expect(r.status).toBe(429);
    expect(r.code).toBe('policy_ceiling_reached');
    clock.t += DAY;
    expect((await send(c)).status).toBe(200);
  });

  it('stops at the daily token ceiling once the relayed answers used it up', async () => {
    const c = await connect({ ceiling: { tokens: 20 } });
    expect((await send(c)).status).toBe(200);
    expect((await send(c)).status).toBe(200);
    expect((await send(c)).code).toBe('policy_ceiling_reached');
  });

  it('stops at the daily dollar ceiling at the prices the owner signed, and refuses unpriced models', async () => {
    // 10 input + 5 output tokens at $2.50 / $10 per million tokens = 75 micro-dollars an answer.
    const c = await connect({ ceiling: { microUsd: 100 }, prices: { 'gpt-4o': { inputMicroUsdPerMTok: 2_500_000, outputMicroUsdPerMTok: 10_000_000 } } });
    expect((await send(c, { body: { model: 'o3', messages: [] } })).code).toBe('policy_model_denied');
    expect((await send(c)).status).toBe(200);
    expect(enclave.usage.used(c.binding.connectionId).microUsd).toBe(75);
    expect((await send(c)).status).toBe(200);
    expect((await send(c)).code).toBe('policy_ceiling_reached');
  });

  it('charges the signed flat amount for a metered answer whose usage cannot be read', async () => {
    const c = await connect({ ceiling: { tokens: 1000 }, unmeteredTokens: 1000 });
    expect((await send(c, { headers: { 'x-test-no-usage': '1' } })).status).toBe(200);
    expect(enclave.usage.used(c.binding.connectionId).tokens).toBe(1000);
    expect((await send(c)).code).toBe('policy_ceiling_reached');
  });

  it('refuses a record paired with a laxer policy, with no policy, or with another connection’s policy', async () => {
    const strict = await connect({ ceiling: { requests: 1 } });
    const hostKey = generateOwnerKeyPair();
    const laxer = signConnectionPolicy(hostKey.secretKey, { connectionId: strict.binding.connectionId, issuedAt: clock.t, operations: ['inference', 'files'], ceiling: {} });
    expect((await send(strict, { descriptor: descriptor(strict, { policy: laxer }) })).code).toBe('sealed_record_invalid');
    const { policy: _drop, ...noPolicy } = JSON.parse(Buffer.from(descriptor(strict), 'base64url').toString()) as ConnectionDescriptor;
    expect((await send(strict, { descriptor: encodeConnectionDescriptor(noPolicy) })).code).toBe('sealed_record_invalid');
    const other = await connect({ ceiling: {} });
    expect((await send(strict, { descriptor: descriptor(strict, { policy: other.signed! }) })).code).toBe('policy_invalid');
    // None of that spent the strict connection's one request.
    expect((await send(strict)).status).toBe(200);
    expect((await send(strict)).code).toBe('policy_ceiling_reached');
  });

  it('serves a record sealed without a policy as before (no ceiling), and refuses one presented with a policy', async () => {
    const old = await connect(undefined);
    for (let i = 0; i < 3; i++) expect((await send(old)).status).toBe(200);
    const withPolicy = await connect({});
    expect((await send(old, { descriptor: descriptor(old, { policy: withPolicy.signed! }) })).code).toBe('policy_invalid');
  });
});

describe('metered DEK leases', () => {
  const today = () => Math.floor(Date.now() / DAY);
  const leasesGranted = async (c: Connection) => Promise.all(shareholders.map((s) => s.store.leasesOn(c.binding.connectionId, today())));

  it('drops the DEK when a lease has served its request quota and obtains a new lease for the next request', async () => {
    const c = await connect({ lease: { requests: 2 } });
    expect((await send(c)).status).toBe(200);
    expect((await send(c)).status).toBe(200);
    const before = (await leasesGranted(c)).reduce((a, b) => a + b, 0);
    expect((await send(c)).status).toBe(200);
    // The third request needed a new reconstruction: the shareholders granted more leases.
    expect((await leasesGranted(c)).reduce((a, b) => a + b, 0)).toBeGreaterThan(before);
  });

  it('drops the DEK when a lease has used its token quota', async () => {
    const c = await connect({ lease: { tokens: 15 } });
    expect((await send(c)).status).toBe(200);
    const before = (await leasesGranted(c)).reduce((a, b) => a + b, 0);
    expect((await send(c)).status).toBe(200);
    expect((await leasesGranted(c)).reduce((a, b) => a + b, 0)).toBeGreaterThan(before);
  });

  it('drops the DEK when a lease expires', async () => {
    const c = await connect({ lease: { ttlMs: 60_000 } });
    expect((await send(c)).status).toBe(200);
    expect((await send(c)).status).toBe(200);
    const before = (await leasesGranted(c)).reduce((a, b) => a + b, 0);
    clock.t += 60_000;
    expect((await send(c)).status).toBe(200);
    expect((await leasesGranted(c)).reduce((a, b) => a + b, 0)).toBeGreaterThan(before);
  });

  it('refuses a new lease beyond the owner-signed daily limit, also to a restarted or second enclave', async () => {
    // n = 3, t = 2, k = 1: at most ⌊3·1/2⌋ = 1 lease a day, 2 requests each.
    const c = await connect({ lease: { requests: 2 } }, undefined, 1);
    expect((await send(c)).status).toBe(200);
    expect((await send(c)).status).toBe(200);
    const third = await send(c);
    expect(third.status).toBe(429);
    expect(third.code).toBe('lease_limit_reached');
    const second = await startEnclave();
    try {
      const r = await send(c, { at: second.url });
      expect(r.code).toBe('lease_limit_reached');
    } finally {
      await second.enclave.close();
    }
    expect(await leasesGranted(c)).toEqual([1, 1, 1]);
  });

  it('a record without leases in its policy reconstructs as before (no quota)', async () => {
    const c = await connect({}, undefined, 1);
    for (let i = 0; i < 4; i++) expect((await send(c)).status).toBe(200);
  });
});

describe('signed usage receipts', () => {
  /** The owner's side: the receipt key comes from a verified attestation document of the enclave. */
  async function attestedReceiptKey(): Promise<string> {
    const r = await fetch(`${enclaveUrl}/attestation?nonce=${randomBytes(16).toString('hex')}`);
    const { document } = (await r.json()) as { document: string };
    const doc = verifyAttestation(new Uint8Array(Buffer.from(document, 'base64')), { now: new Date(), roots: [DevNsm.pinnedRoot(devRoot)] });
    return receiptKeyFromUserData(doc.userData);
  }
  /** The connection's newest receipt, from the chain the host collects. */
  const receiptOf = async (c: Connection) =>
    ((await (await fetch(`${enclaveUrl}/receipts?limit=10000`)).json()) as { receipts: SignedUsageReceipt[] }).receipts.findLast((r) => r.receipt.connectionId === c.binding.connectionId) ?? null;

  it('signs a running count per connection that verifies with the attested receipt key', async () => {
    const c = await connect({});
    for (let i = 0; i < 3; i++) expect((await send(c)).status).toBe(200);
    const signed = (await receiptOf(c))!;
    const receipt = verifyUsageReceipt(signed, await attestedReceiptKey());
    expect(receipt).toMatchObject({ connectionId: c.binding.connectionId, requests: 3, tokens: 45, policySha256: connectionPolicySha256(c.signed!) });
  });

  it('signs the answers between two collections as one receipt, and a lease change signs the count so far first', async () => {
    const c = await connect({ lease: { requests: 4 } });
    const id = c.binding.connectionId;
    const chain = async () =>
      ((await (await fetch(`${enclaveUrl}/receipts?limit=10000`)).json()) as { receipts: SignedUsageReceipt[] }).receipts.filter((r) => r.receipt.connectionId === id).map((r) => r.receipt);
    for (let i = 0; i < 3; i++) expect((await send(c)).status).toBe(200);
    // The lease's receipt (signed before its first request went out), then one for the three answers.
    let receipts = await chain();
    expect(receipts.map((r) => [r.requests, r.lease])).toEqual([[0, receipts[0]!.lease], [3, receipts[0]!.lease]]);
    expect(receipts[1]!.prevSeq).toBe(receipts[0]!.seq);
    // The fourth answer uses the lease up; the fifth request takes a new lease: the count under the
    // first lease is signed before the new lease's receipt, without anyone collecting in between.
    expect((await send(c)).status).toBe(200);
    expect((await send(c)).status).toBe(200);
    receipts = await chain();
    const [first, second] = [receipts[0]!.lease, receipts.at(-1)!.lease];
    expect(second).not.toBe(first);
    expect(receipts.slice(2).map((r) => [r.requests, r.lease])).toEqual([[4, first], [4, second], [5, second]]);
    // One chain for the connection-day, across both leases.
    expect(receipts.map((r) => r.prevSeq)).toEqual([0, ...receipts.slice(0, -1).map((r) => r.seq)]);
  });

  it('a receipt the host edits does not verify', async () => {
    const c = await connect({});
    await send(c);
    const signed = (await receiptOf(c))!;
    const edited = { ...signed, receipt: { ...signed.receipt, tokens: 0 } };
    expect(() => verifyUsageReceipt(edited, signed.enclaveKey)).toThrow(expect.objectContaining({ code: 'signature_invalid' }));
  });

  it('usage comparison reports a host that under-reports or replays an older receipt', async () => {
    const c = await connect({});
    await send(c);
    const older = verifyUsageReceipt((await receiptOf(c))!, await attestedReceiptKey());
    await send(c);
    const newer = verifyUsageReceipt((await receiptOf(c))!, await attestedReceiptKey());
    const id = c.binding.connectionId;
    expect(compareUsage([older, newer], [{ connectionId: id, day: newer.day, requests: 2, tokens: 30 }])).toEqual([]);
    expect(compareUsage([older, newer], [{ connectionId: id, day: newer.day, requests: 1, tokens: 15 }])).toEqual([
      { kind: 'under_reported', connectionId: id, day: newer.day, field: 'requests', host: 1, enclave: 2 },
      { kind: 'under_reported', connectionId: id, day: newer.day, field: 'tokens', host: 15, enclave: 30 },
    ]);
    // Presenting the older receipt after the newer one (a replay) is a regression.
    const replayed = { ...older, seq: newer.seq + 1 };
    expect(compareUsage([newer, replayed], [{ connectionId: id, day: newer.day, requests: 2, tokens: 30 }])).toEqual([
      { kind: 'receipt_regressed', connectionId: id, day: newer.day, seq: newer.seq + 1 },
    ]);
  });
});

describe('the key never leaves through a response', () => {
  const forms = Object.keys(echoForms('k'));
  function leaked(r: { headers: Headers; text: string }, key: string): string[] {
    const seen: string = [...(r.headers as unknown as Iterable<[string, string]>)].map(([k, v]) => `${k}: ${v}`).join('\n') + '\n' + r.text;
    const out = Object.entries(echoForms(key)).filter(([, f]) => seen.includes(f)).map(([n]) => n);
    for (const p of keyPatterns(key)) if (seen.includes(p.toString())) out.push(`pattern:${p.toString().length}`);
    return out;
  }

  it('asks for identity bodies, and decodes and scrubs a compressed answer anyway', async () => {
    const c = await connect(undefined);
    const r = await send(c, { headers: { 'x-test-echo': 'raw', 'x-test-gzip': '1', 'accept-encoding': 'gzip, br' } });
    expect(r.status).toBe(200);
    expect(r.headers.get('x-accept-encoding-seen')).toBe('identity');
    expect(r.headers.get('content-encoding')).toBeNull();
    expect(JSON.parse(r.text).echo).toMatch(/^\*+$/);
    expect(leaked(r, c.key)).toEqual([]);
  });

  for (const form of forms) {
    for (const variant of ['200 json', '200 chunked', '400 json', '302 json'] as const) {
      it(`scrubs a ${form} echo from the headers and body of a ${variant} answer`, async () => {
        const c = await connect(form === 'raw' ? {} : undefined);
        const [status, mode] = variant.split(' ');
        const r = await send(c, { headers: { 'x-test-echo': form, 'x-test-status': status!, ...(mode === 'chunked' ? { 'x-test-chunked': '1' } : {}) } });
        // The enclave never follows a redirect itself: the 302 comes back as it was (scrubbed).
        expect(r.status).toBe(Number(status));
        expect(r.code).toBeNull();
        expect(leaked(r, c.key)).toEqual([]);
        // The rest of the answer is intact.
        expect(r.headers.get('location')).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/v1\/x\?key=\*+/);
      });
    }
  }
});
