/**
 * Connection-policy updates relayed through the shareholders (issue 19, protocol/SPEC.md §9.1–9.2),
 * against real shareholder services (2-of-3, dev NSM, loopback HTTP), the real enclave server and a
 * fake upstream. The test plays a hostile host: it speaks the enclave RPC directly, keeps sending
 * the record's original (laxer) policy in every descriptor, and sits on the enclave's path to the
 * shareholders (a proxy per shareholder, as the parent's egress does in production), where it can
 * block a shareholder or strip / swap what a release carries. The owner's side is the CLI's
 * `updateConnectionPolicy` (what `securegate connections policy` runs), talking to the shareholders
 * directly and to a stand-in for the host's admin API.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { mkdtemp, rm } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createDevRoot, DevNsm } from '../../attestation/dev.ts';
import { updateConnectionPolicy } from '../../cli/connection-policy.ts';
import { Enclave } from '../../enclave/server.ts';
import {
  connectionPolicySha256,
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
  type ConnectionPolicy,
  type KeyBinding,
  type SignedOwnerMessage,
  type SignedUsageReceipt,
} from '../../protocol/index.ts';
import { initIdentity } from '../../shareholders/identity.ts';
import { buildShareholderServer } from '../../shareholders/server.ts';
import { openShareStore, type ShareStore } from '../../shareholders/store.ts';
import { devPcrPolicy } from '../../attestation/dev-pcrs.ts';

const PCR0 = new Uint8Array(createHash('sha384').update('policy update enclave bundle').digest());
const owner = generateOwnerKeyPair();

interface Shareholder {
  app: FastifyInstance;
  url: string;
  id: string;
  publicKey: Uint8Array;
  store: ShareStore;
  dir: string;
  /** The host's egress to this shareholder: it can block it or rewrite release answers. */
  proxy: { server: Server; url: string; blocked: boolean; rewrite?: (body: Record<string, unknown>) => Record<string, unknown> };
}
const shareholders: Shareholder[] = [];
let nsm: DevNsm;
let enclave: Enclave;
let enclaveUrl: string;
let upstream: Server;
let upstreamOrigin: string;
const upstreamModels: string[] = [];
/** Stand-in for the host's admin API (untrusted: the CLI checks what it returns). */
let host: Server;
let hostUrl: string;
const hostPolicies = new Map<string, SignedOwnerMessage>();

async function listen(server: Server): Promise<string> {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

function startProxy(target: string): Shareholder['proxy'] {
  const proxy: Shareholder['proxy'] = { server: undefined as never, url: '', blocked: false };
  proxy.server = createServer((req, res) => {
    void (async () => {
      const body = await readBody(req);
      if (proxy.blocked) {
        res.writeHead(503).end();
        return;
      }
      const r = await fetch(`${target}${req.url}`, { method: req.method!, headers: { 'content-type': 'application/json' }, ...(body.length ? { body: body.toString() } : {}) });
      let text = await r.text();
      if (req.url === '/v1/releases' && proxy.rewrite && r.status === 200) text = JSON.stringify(proxy.rewrite(JSON.parse(text) as Record<string, unknown>));
      res.writeHead(r.status, { 'content-type': 'application/json' }).end(text);
    })();
  });
  return proxy;
}

interface Connection {
  id: string;
  binding: KeyBinding;
  record: Uint8Array;
  signed: SignedOwnerMessage;
}

/** The owner's side of `connect`: seal under a signed policy (version 1), split, enroll; the host stores the policy. */
async function connect(policy: Partial<ConnectionPolicy>): Promise<Connection> {
  const id = `conn_${randomBytes(8).toString('hex')}`;
  const signed = signConnectionPolicy(owner.secretKey, { connectionId: id, issuedAt: Date.now(), operations: ['inference'], ceiling: {}, ...policy });
  const binding: KeyBinding = { connectionId: id, provider: 'openai', origin: upstreamOrigin, authScheme: 'bearer', policySha256: connectionPolicySha256(signed) };
  const dek = new Uint8Array(randomBytes(32));
  const record = sealUpstreamKey(new TextEncoder().encode(`sk-${randomBytes(12).toString('hex')}`), dek, binding, (n) => new Uint8Array(randomBytes(n)));
  const shares = splitSecret(dek, 2, shareholders.length);
  await Promise.all(
    shareholders.map(async (sh, i) => {
      const envelope = await sealShareEnvelope(sh.publicKey, encodeShare(shares[i]!), { purpose: 'enroll', connectionId: id, shareholderId: sh.id });
      const enroll = signOwnerMessage(owner.secretKey, {
        type: 'enroll',
        connectionId: id,
        shareholderId: sh.id,
        issuedAt: Date.now(),
        envelopeSha256: createHash('sha256').update(envelope).digest('hex'),
        policy: devPcrPolicy(toHex(PCR0)),
        maxReleasesPerMinute: 600,
      });
      const res = await fetch(`${sh.url}/v1/shares`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ envelope: Buffer.from(envelope).toString('base64'), signed: enroll }) });
      expect(res.status).toBe(201);
    }),
  );
  hostPolicies.set(id, signed);
  return { id, binding, record, signed };
}

/** The hostile host: always the record's original policy in the descriptor. */
async function send(c: Connection, model: string, at = enclaveUrl) {
  const descriptor = encodeConnectionDescriptor({
    connectionId: c.id,
    provider: 'openai',
    origin: upstreamOrigin,
    authScheme: 'bearer',
    sealedRecord: Buffer.from(c.record).toString('base64'),
    threshold: 2,
    policy: c.signed,
  });
  const res = await fetch(`${at}/forward/v1/chat/completions`, {
    method: 'POST',
    headers: { [RPC_CONNECTION_HEADER]: descriptor, 'content-type': 'application/json' },
    body: JSON.stringify({ model, messages: [] }),
  });
  await res.text();
  return { status: res.status, code: res.headers.get(RPC_ENCLAVE_ERROR_HEADER) };
}

/** `securegate connections policy <id> …` as the owner's machine runs it. */
const cliUpdate = (c: Connection, changes: Parameters<typeof updateConnectionPolicy>[0]['changes']) =>
  updateConnectionPolicy({
    serverUrl: hostUrl,
    adminToken: 'unused',
    ownerSecretKey: owner.secretKey,
    shareholders: shareholders.map((s) => ({ id: s.id, url: s.url, publicKey: toHex(s.publicKey) })),
    connectionId: c.id,
    changes,
    threshold: 2,
  });

/** Signs version `version` of c's policy and puts it at the given shareholders only (bypassing the CLI's quorum rule). */
async function putVersion(c: Connection, version: number, over: Partial<ConnectionPolicy>, at: Shareholder[]) {
  const signed = signConnectionPolicy(owner.secretKey, { connectionId: c.id, issuedAt: Date.now(), operations: ['inference'], ceiling: {}, lease: { requests: 1 }, version, ...over });
  for (const sh of at) {
    const r = await fetch(`${sh.url}/v1/shares/${c.id}/connection-policy`, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ signed }) });
    expect(r.status).toBe(200);
  }
  return signed;
}

async function startEnclave(): Promise<{ enclave: Enclave; url: string }> {
  const e = new Enclave({ nsm, shareholders: shareholders.map((s) => ({ id: s.id, url: s.proxy.url, publicKey: toHex(s.publicKey) })), allowLoopbackHttp: true });
  await e.boot();
  await new Promise<void>((r) => e.server.listen(0, '127.0.0.1', r));
  return { enclave: e, url: `http://127.0.0.1:${(e.server.address() as AddressInfo).port}` };
}

beforeAll(async () => {
  const root = await createDevRoot();
  nsm = await DevNsm.create({ root, pcr0: PCR0 });
  for (const id of ['sh-a', 'sh-b', 'sh-c']) {
    const dir = await mkdtemp(join(tmpdir(), 'sg-polupd-'));
    const identity = initIdentity(dir, id);
    const store = await openShareStore(dir);
    const app = await buildShareholderServer({ identity, store, mode: 'dev', extraRoots: [DevNsm.pinnedRoot(root)] });
    const url = await app.listen({ port: 0, host: '127.0.0.1' });
    const proxy = startProxy(url);
    proxy.url = await listen(proxy.server);
    shareholders.push({ app, url, id, publicKey: identity.publicKey, store, dir, proxy });
  }
  upstream = createServer((req, res) => {
    void (async () => {
      const body = JSON.parse((await readBody(req)).toString() || '{}') as { model?: string };
      upstreamModels.push(String(body.model));
      const text = JSON.stringify({ id: 'x', model: body.model, usage: { prompt_tokens: 10, completion_tokens: 5 } });
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) }).end(text);
    })();
  });
  upstreamOrigin = await listen(upstream);
  host = createServer((req, res) => {
    const m = /^\/admin\/v1\/connections\/([^/]+)\/policy$/.exec(req.url ?? '');
    const json = req.url === '/admin/v1/connections' ? [...hostPolicies.keys()].map((id) => ({ id, threshold: 2 })) : m ? { connectionId: m[1], policy: hostPolicies.get(m[1]!) ?? null } : { error: { code: 'not_found' } };
    res.writeHead(m || req.url === '/admin/v1/connections' ? 200 : 404, { 'content-type': 'application/json' }).end(JSON.stringify(json));
  });
  hostUrl = await listen(host);
  ({ enclave, url: enclaveUrl } = await startEnclave());
}, 60_000);

afterAll(async () => {
  await enclave?.close();
  for (const s of [upstream, host]) await new Promise((r) => s?.close(r));
  for (const s of shareholders) {
    await new Promise((r) => s.proxy.server.close(r));
    await s.app.close();
    await s.store.close();
    await rm(s.dir, { recursive: true, force: true });
  }
});

beforeEach(() => {
  for (const s of shareholders) {
    s.proxy.blocked = false;
    delete s.proxy.rewrite;
  }
});

describe('connection-policy updates relayed through the shareholders', () => {
  it('tightening the models with the CLI: from the next lease the enclave refuses the removed model, whatever policy the host sends', async () => {
    const c = await connect({ models: ['gpt-4o', 'gpt-4o-mini'], lease: { requests: 2 } });
    expect((await send(c, 'gpt-4o')).status).toBe(200);
    const update = await cliUpdate(c, { models: ['gpt-4o-mini'] });
    expect(update).toMatchObject({ version: 2, accepted: ['sh-a', 'sh-b', 'sh-c'], refused: [] });
    // The lease in hand was granted under version 1: it may finish its quota (2 requests) ...
    expect((await send(c, 'gpt-4o')).status).toBe(200);
    // ... the next lease carries version 2, and this very request answers to it.
    const before = upstreamModels.length;
    const refused = await send(c, 'gpt-4o');
    expect(refused.status).toBe(403);
    expect(refused.code).toBe('policy_model_denied');
    expect(upstreamModels.length).toBe(before);
    expect((await send(c, 'gpt-4o-mini')).status).toBe(200);
    expect(enclave.policyVersions.versionOf(c.id)).toBe(2);
    // Receipts name the policy the counts were kept under: version 2's.
    const { receipts } = (await (await fetch(`${enclaveUrl}/receipts?limit=10000`)).json()) as { receipts: SignedUsageReceipt[] };
    expect(receipts.findLast((r) => r.receipt.connectionId === c.id)?.receipt.policySha256).toBe(update.sha256);
    // A restarted enclave learns version 2 at its first lease, before serving anything under it.
    const restarted = await startEnclave();
    try {
      expect((await send(c, 'gpt-4o', restarted.url)).code).toBe('policy_model_denied');
      expect(upstreamModels.length).toBe(before + 1);
    } finally {
      await restarted.enclave.close();
    }
  });

  it('a widening reaches a restarted enclave through the first request it allows, and a refusal spends no lease while one is held', async () => {
    const c = await connect({ models: ['gpt-4o-mini'] });
    const v2 = await cliUpdate(c, { models: ['gpt-4o-mini', 'gpt-4o'] });
    expect(v2.version).toBe(2);
    const fresh = await startEnclave();
    try {
      // Version 1 refuses gpt-4o, but this enclave holds no lease yet: it obtains one, learns
      // version 2 from it, and serves the request under version 2.
      expect((await send(c, 'gpt-4o', fresh.url)).status).toBe(200);
      expect(fresh.enclave.policyVersions.versionOf(c.id)).toBe(2);
      const released = async () => (await Promise.all(shareholders.map((s) => s.store.leasesOn(c.id, Math.floor(Date.now() / 86_400_000))))).reduce((a, b) => a + b, 0);
      const before = await released();
      expect((await send(c, 'o3', fresh.url)).code).toBe('policy_model_denied');
      expect(await released()).toBe(before);
    } finally {
      await fresh.enclave.close();
    }
  });

  it('the CLI starts from the newest version and refuses to proceed when fewer than n − t + 1 shareholders take it', async () => {
    const c = await connect({ models: ['gpt-4o', 'gpt-4o-mini'], ceiling: { requests: 100 }, lease: { requests: 10 } });
    expect((await cliUpdate(c, { dailyRequests: 60 })).version).toBe(2);
    const v3 = await cliUpdate(c, { models: ['gpt-4o-mini'] });
    // Fields not named stay as the previous version had them; k is recomputed: ⌊2·⌊60/10⌋/3⌋ = 4.
    expect(v3).toMatchObject({ version: 3, maxLeasesPerDay: 4 });
    expect(v3.policy).toMatchObject({ models: ['gpt-4o-mini'], ceiling: { requests: 60 }, lease: { requests: 10 }, quorum: { n: 3, t: 2 } });
    expect(((await (await fetch(`${shareholders[0]!.url}/v1/shares/${c.id}/policy`)).json()) as { maxLeasesPerDay: number }).maxLeasesPerDay).toBe(4);
    // A host that offers a policy signed by someone else as "the current one" is ignored.
    const other = await connect({});
    hostPolicies.set(other.id, signConnectionPolicy(generateOwnerKeyPair().secretKey, { connectionId: other.id, issuedAt: Date.now(), operations: ['inference', 'files'], ceiling: {} }));
    await expect(cliUpdate(other, { models: ['x'] })).rejects.toThrow(/no connection policy signed by this machine's owner key/);
    // The threshold sizes k, so it never comes from the host: a t that disagrees with the signed one is refused.
    await expect(
      updateConnectionPolicy({ serverUrl: hostUrl, adminToken: 'unused', ownerSecretKey: owner.secretKey, shareholders: shareholders.map((s) => ({ id: s.id, url: s.url, publicKey: toHex(s.publicKey) })), connectionId: c.id, changes: { dailyRequests: 90 }, threshold: 3 }),
    ).rejects.toThrow(/signed with threshold 2, not 3/);
    // Only sh-a reachable: 1 < n − t + 1 = 2, so some t shareholders an enclave reaches could all lack it.
    const partial = updateConnectionPolicy({
      serverUrl: hostUrl,
      adminToken: 'unused',
      ownerSecretKey: owner.secretKey,
      shareholders: shareholders.map((s, i) => ({ id: s.id, url: i === 0 ? s.url : 'http://127.0.0.1:9', publicKey: toHex(s.publicKey) })),
      connectionId: c.id,
      changes: { models: ['gpt-4o'] },
      threshold: 2,
    });
    await expect(partial).rejects.toThrow(/only 1 of 3 shareholders took policy version 4 \(need 2/);
  });
});

describe('a hostile host and rollback', () => {
  it('the enclave never goes back to an older version once a lease brought a newer one, even when the host blocks the shareholder holding it', async () => {
    const c = await connect({ models: ['gpt-4o', 'gpt-4o-mini'], lease: { requests: 1 } });
    await putVersion(c, 2, { models: ['gpt-4o', 'gpt-4o-mini'] }, shareholders);
    // Version 3 reached only sh-a (the CLI would have refused: fewer than n − t + 1).
    await putVersion(c, 3, { models: ['gpt-4o-mini'] }, [shareholders[0]!]);
    // Leases rotate over the shareholders: within a few, one includes sh-a.
    for (let i = 0; i < 6 && enclave.policyVersions.versionOf(c.id) !== 3; i++) expect((await send(c, 'gpt-4o-mini')).status).toBe(200);
    expect(enclave.policyVersions.versionOf(c.id)).toBe(3);
    shareholders[0]!.proxy.blocked = true;
    // New leases now come from sh-b and sh-c only, carrying version 2: not taken.
    for (let i = 0; i < 3; i++) expect((await send(c, 'gpt-4o-mini')).status).toBe(200);
    expect((await send(c, 'gpt-4o')).code).toBe('policy_model_denied');
    expect(enclave.policyVersions.versionOf(c.id)).toBe(3);
  });

  it('a host that strips or swaps the update a lease carries gets no share from it', async () => {
    const c = await connect({ models: ['gpt-4o', 'gpt-4o-mini'], lease: { requests: 1 } });
    const v2 = await putVersion(c, 2, { models: ['gpt-4o', 'gpt-4o-mini'] }, shareholders);
    await putVersion(c, 3, { models: ['gpt-4o-mini'] }, shareholders);
    const before = upstreamModels.length;
    for (const rewrite of [
      (b: Record<string, unknown>) => ({ ...b, shares: (b.shares as Array<Record<string, unknown>>).map(({ policy: _p, ...s }) => s) }),
      (b: Record<string, unknown>) => ({ ...b, shares: (b.shares as Array<Record<string, unknown>>).map((s) => ({ ...s, policy: v2 })) }),
    ]) {
      for (const s of shareholders) s.proxy.rewrite = rewrite;
      const r = await send(c, 'gpt-4o');
      expect(r.code).toBe('shareholders_unavailable');
    }
    expect(upstreamModels.length).toBe(before);
    for (const s of shareholders) delete s.proxy.rewrite;
    expect((await send(c, 'gpt-4o')).code).toBe('policy_model_denied');
  });

  it("refuses a lease carrying another connection's policy, or one signed by another key (compromised shareholders)", async () => {
    const a = await connect({ models: ['gpt-4o'], lease: { requests: 1 } });
    const b = await connect({ models: ['gpt-4o'] });
    const foreign = signConnectionPolicy(owner.secretKey, { connectionId: b.id, issuedAt: Date.now(), operations: ['inference', 'files'], ceiling: {}, version: 2 });
    const stranger = signConnectionPolicy(generateOwnerKeyPair().secretKey, { connectionId: a.id, issuedAt: Date.now(), operations: ['inference', 'files'], ceiling: {}, version: 2 });
    const before = upstreamModels.length;
    for (const signed of [foreign, stranger]) {
      // Written straight into every store: what shareholders that skipped their own checks would send.
      for (const s of shareholders) {
        await s.store.db.query('DELETE FROM connection_policies WHERE connection_id = $1', [a.id]);
        expect(await s.store.setConnectionPolicy(a.id, { version: 2, sha256: connectionPolicySha256(signed), signed: JSON.stringify(signed) }, null)).toBe(true);
      }
      const r = await send(a, 'gpt-4o');
      expect(r.status).toBe(403);
      expect(r.code).toBe('policy_invalid');
    }
    expect(upstreamModels.length).toBe(before);
    expect(enclave.policyVersions.versionOf(a.id)).toBeUndefined();
  });
});
