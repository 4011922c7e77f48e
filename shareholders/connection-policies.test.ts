/**
 * Connection-policy updates at a real shareholder service over loopback HTTP (SPEC.md §9.1): only
 * the owner pinned at enrollment may update, only to a newer version (rollback refused, also after
 * a restart of the service), only for the connection the URL names; the lease limit k is
 * recomputed from the new ceiling; each update (and each refusal) is in the transparency log.
 * That the update then travels with every lease, bound into the release envelope, is shown
 * against a real enclave in test/e2e/policy-updates.test.ts.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDevRoot, DevNsm } from '../attestation/dev.ts';
import { encodeShare, generateOwnerKeyPair, sealShareEnvelope, signConnectionPolicy, signOwnerMessage, splitSecret, type ConnectionPolicy, type SignedOwnerMessage } from '../protocol/index.ts';
import { initIdentity, type ShareholderIdentity } from './identity.ts';
import { buildShareholderServer } from './server.ts';
import { openShareStore, type ShareStore } from './store.ts';
import { devPcrPolicy } from '../attestation/dev-pcrs.ts';

const owner = generateOwnerKeyPair();
let dir: string;
let identity: ShareholderIdentity;
let store: ShareStore;
let app: FastifyInstance;
let url: string;
let root: Awaited<ReturnType<typeof createDevRoot>>;

async function start(): Promise<void> {
  store = await openShareStore(dir);
  app = await buildShareholderServer({ identity, store, mode: 'dev', extraRoots: [DevNsm.pinnedRoot(root)] });
  url = await app.listen({ port: 0, host: '127.0.0.1' });
}

beforeAll(async () => {
  root = await createDevRoot();
  dir = await mkdtemp(join(tmpdir(), 'sg-cpol-'));
  identity = initIdentity(dir, 'sh-1');
  await start();
});
afterAll(async () => {
  await app?.close();
  await store?.close();
  await rm(dir, { recursive: true, force: true });
});

async function enroll(connectionId: string, maxLeasesPerDay?: number): Promise<void> {
  const [share] = splitSecret(new Uint8Array(randomBytes(32)), 2, 3);
  const envelope = await sealShareEnvelope(identity.publicKey, encodeShare(share!), { purpose: 'enroll', connectionId, shareholderId: 'sh-1' });
  const signed = signOwnerMessage(owner.secretKey, {
    type: 'enroll',
    connectionId,
    shareholderId: 'sh-1',
    issuedAt: Date.now(),
    envelopeSha256: createHash('sha256').update(envelope).digest('hex'),
    policy: devPcrPolicy('ab'.repeat(48)),
    maxReleasesPerMinute: 60,
    ...(maxLeasesPerDay !== undefined ? { maxLeasesPerDay } : {}),
  });
  const r = await fetch(`${url}/v1/shares`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ envelope: Buffer.from(envelope).toString('base64'), signed }) });
  expect(r.status).toBe(201);
}

const policy = (connectionId: string, over: Partial<ConnectionPolicy>, key = owner.secretKey): SignedOwnerMessage =>
  signConnectionPolicy(key, { connectionId, issuedAt: Date.now(), operations: ['inference'], ceiling: { requests: 1000 }, lease: { requests: 50 }, quorum: { n: 5, t: 3 }, ...over });

async function put(connectionId: string, signed: SignedOwnerMessage) {
  const r = await fetch(`${url}/v1/shares/${connectionId}/connection-policy`, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ signed }) });
  return { status: r.status, json: (await r.json()) as { version?: number; maxLeasesPerDay?: number | null; error?: { code: string } } };
}

const leaseLimit = async (connectionId: string) => ((await (await fetch(`${url}/v1/shares/${connectionId}/policy`)).json()) as { maxLeasesPerDay: number | null }).maxLeasesPerDay;

describe('connection-policy updates at the shareholder', () => {
  it('stores a newer version signed by the pinned owner, recomputes k from its ceiling and logs it', async () => {
    const id = `conn_${randomBytes(6).toString('hex')}`;
    await enroll(id, 12);
    // 3-of-5, 400 requests a day in leases of 50: ⌊400/50⌋ = 8 leases, k = ⌊3·8/5⌋ = 4.
    const r = await put(id, policy(id, { version: 2, ceiling: { requests: 400 }, models: ['gpt-4o-mini'] }));
    expect(r.status).toBe(200);
    expect(r.json).toMatchObject({ version: 2, maxLeasesPerDay: 4 });
    expect(await leaseLimit(id)).toBe(4);
    const current = (await (await fetch(`${url}/v1/shares/${id}/connection-policy`)).json()) as { version: number; signed: SignedOwnerMessage };
    expect(current.version).toBe(2);
    expect(current.signed.message.models).toEqual(['gpt-4o-mini']);
    const log = (await (await fetch(`${url}/v1/audit`)).json()) as { entries: Array<{ event: Record<string, unknown> }> };
    expect(log.entries.at(-1)!.event).toMatchObject({ action: 'connection_policy', outcome: 'connection_policy_updated', connectionId: id, version: 2, maxLeasesPerDay: 4 });
  });

  it('refuses a rollback to an older or equal version, also after the service restarts', async () => {
    const id = `conn_${randomBytes(6).toString('hex')}`;
    await enroll(id);
    expect((await put(id, policy(id, { version: 3 }))).status).toBe(200);
    for (const version of [3, 2, 1, undefined]) {
      const r = await put(id, policy(id, version === undefined ? {} : { version }));
      expect(r.status, `version ${version}`).toBe(409);
      expect(r.json.error?.code).toBe('message_replayed');
    }
    await app.close();
    await store.close();
    await start();
    expect((await put(id, policy(id, { version: 2 }))).json.error?.code).toBe('message_replayed');
    expect((await put(id, policy(id, { version: 4 }))).status).toBe(200);
    const log = (await (await fetch(`${url}/v1/audit`)).json()) as { entries: Array<{ event: Record<string, unknown> }> };
    expect(log.entries.filter((e) => e.event.connectionId === id && e.event.outcome === 'refused' && e.event.code === 'message_replayed')).toHaveLength(5);
  });

  it("refuses another connection's policy, and one not signed by the pinned owner", async () => {
    const a = `conn_${randomBytes(6).toString('hex')}`;
    const b = `conn_${randomBytes(6).toString('hex')}`;
    await enroll(a);
    await enroll(b);
    const r = await put(a, policy(b, { version: 2 }));
    expect(r.status).toBe(400);
    expect(r.json.error?.code).toBe('bad_request');
    const stranger = generateOwnerKeyPair();
    const s = await put(a, policy(a, { version: 2 }, stranger.secretKey));
    expect(s.status).toBe(403);
    expect(s.json.error?.code).toBe('owner_signature_invalid');
    // A signature that does not verify (the message edited after signing).
    const edited = policy(a, { version: 2 });
    edited.message.models = ['anything'];
    expect((await put(a, edited)).json.error?.code).toBe('owner_signature_invalid');
    expect(((await (await fetch(`${url}/v1/shares/${a}/connection-policy`)).json()) as { version: number | null }).version).toBeNull();
  });

  it('refuses a bounded policy without its quorum, and one whose lease quota leaves k = 0', async () => {
    const id = `conn_${randomBytes(6).toString('hex')}`;
    await enroll(id);
    const { quorum: _q, ...noQuorum } = { quorum: undefined, connectionId: id, issuedAt: Date.now(), operations: ['inference'], ceiling: { requests: 100 }, lease: { requests: 10 }, version: 2 };
    expect((await put(id, signConnectionPolicy(owner.secretKey, noQuorum))).json.error?.code).toBe('bad_request');
    expect((await put(id, policy(id, { version: 2, ceiling: { requests: 60 }, lease: { requests: 50 } }))).json.error?.code).toBe('bad_request');
  });
});
