/**
 * The shareholder service over real HTTP on loopback: enrollment checks, and every refusal the
 * release path owes (DESIGN.md §8.2) — wrong PCRs, replayed, unknown or expired nonce, stale
 * document, dev-signed document in production mode, debug documents under production policy.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { Agent } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDevRoot, DEV_PCR1, DEV_PCR2, DEV_PCR3, DEV_PCR8, DevNsm, type DevRootMaterial } from '../attestation/dev.ts';
import {
  decodeShare,
  encodeShare,
  generateOwnerKeyPair,
  generateX25519KeyPair,
  openShareEnvelope,
  sealShareEnvelope,
  signOwnerMessage,
  splitSecret,
  toHex,
  fromHex,
  GENESIS_HASH,
  verifyLogHead,
  type OwnerKeyPair,
} from '../protocol/index.ts';
import { verifyAuditChain } from './audit.ts';
import { initIdentity, logSigningKey, type ShareholderIdentity } from './identity.ts';
import { buildShareholderServer, type AdmissionLimits } from './server.ts';
import { openShareStore, type ShareStore } from './store.ts';
import { dropSchema, skipPostgres, TEST_DATABASE_URL, uniqueSchema } from '../test/pg.ts';
import { devPcrPolicy } from '../attestation/dev-pcrs.ts';

const PCR0 = new Uint8Array(createHash('sha384').update('enclave bundle v1').digest());
const OTHER_PCR0 = new Uint8Array(createHash('sha384').update('enclave bundle v2').digest());

interface Service {
  app: FastifyInstance;
  url: string;
  identity: ShareholderIdentity;
  store: ShareStore;
  dir: string;
  now: { t: number };
}

let root: DevRootMaterial;
let nsm: DevNsm;
let owner: OwnerKeyPair;
const services: Service[] = [];
const schemas: string[] = [];

/** Which engine the suite runs on (the suite below runs once per engine). */
let engine: { name: 'sqlite' | 'postgres'; schema?: string } = { name: 'sqlite' };

async function startService(mode: 'dev' | 'production', limits?: Partial<AdmissionLimits>): Promise<Service> {
  const dir = await mkdtemp(join(tmpdir(), 'sg-sh-'));
  const identity = initIdentity(dir, `sh-${mode}`);
  const schema = engine.name === 'postgres' ? uniqueSchema('sg_sh') : undefined;
  const store = await openShareStore(dir, schema ? TEST_DATABASE_URL : undefined, schema);
  if (schema) schemas.push(schema);
  const now = { t: Date.now() };
  const app = await buildShareholderServer({
    identity,
    store,
    mode,
    extraRoots: mode === 'dev' ? [DevNsm.pinnedRoot(root)] : [],
    clock: () => new Date(now.t),
    ...(limits ? { limits } : {}),
  });
  const url = await app.listen({ port: 0, host: '127.0.0.1' });
  const service = { app, url, identity, store, dir, now };
  services.push(service);
  return service;
}

/** The JSON shapes the shareholder answers with, loosely typed for assertions. */
interface Reply {
  nonce: string;
  error: { code: string };
  refused: Array<{ code: string }>;
  shares: Array<{ envelope: string }>;
}

/** Calls from another loopback address (127.0.0.2): a different caller to per-address limits. */
const stranger = new Agent({ localAddress: '127.0.0.2' });

async function post(url: string, body: unknown, method = 'POST', from?: Agent) {
  const res = await fetch(url, { method, headers: { 'content-type': 'application/json' }, body: JSON.stringify(body), ...(from ? { dispatcher: from } : {}) } as RequestInit);
  return { status: res.status, json: (await res.json()) as Reply };
}

/** A production-strength policy: the image (PCR0/1/2) and an owner-controlled binding (PCR3). */
const strongPolicy = (pcr0: Uint8Array = PCR0) => ({ allow: [{ '0': toHex(pcr0), '1': toHex(DEV_PCR1), '2': toHex(DEV_PCR2), '3': toHex(DEV_PCR3) }] });

async function enroll(svc: Service, options: { pcr0?: Uint8Array; connectionId?: string; signer?: OwnerKeyPair; policy?: unknown } = {}) {
  const connectionId = options.connectionId ?? `conn_${randomBytes(8).toString('hex')}`;
  const share = splitSecret(new Uint8Array(randomBytes(32)), 2, 3)[0]!;
  const envelope = await sealShareEnvelope(svc.identity.publicKey, encodeShare(share), { purpose: 'enroll', connectionId, shareholderId: svc.identity.id });
  const signed = signOwnerMessage((options.signer ?? owner).secretKey, {
    type: 'enroll',
    connectionId,
    shareholderId: svc.identity.id,
    issuedAt: svc.now.t,
    envelopeSha256: createHash('sha256').update(envelope).digest('hex'),
    policy: (options.policy ?? devPcrPolicy(toHex(options.pcr0 ?? PCR0))) as never,
    maxReleasesPerMinute: 5,
  });
  const body = { envelope: Buffer.from(envelope).toString('base64'), signed };
  const res = await post(`${svc.url}/v1/shares`, body);
  return { connectionId, share, res, body };
}

async function release(svc: Service, connectionId: string, options: { nsm?: DevNsm; nonce?: string; eph?: ReturnType<typeof generateX25519KeyPair> } = {}) {
  const eph = options.eph ?? generateX25519KeyPair();
  const nonce = options.nonce ?? (await post(`${svc.url}/v1/challenges`, {})).json.nonce;
  const doc = await (options.nsm ?? nsm).getAttestationDocument({ nonce: Buffer.from(nonce, 'hex'), publicKey: eph.publicKey });
  const res = await post(`${svc.url}/v1/releases`, { document: Buffer.from(doc).toString('base64'), connectionIds: [connectionId] });
  return { res, eph, nonce, doc };
}

beforeAll(async () => {
  root = await createDevRoot();
  nsm = await DevNsm.create({ root, pcr0: PCR0 });
  owner = generateOwnerKeyPair();
});
afterAll(async () => {
  await stranger.close();
  for (const s of services) {
    await s.app.close();
    await s.store.close();
    await rm(s.dir, { recursive: true, force: true });
  }
  for (const schema of schemas) await dropSchema(schema);
});

for (const e of [{ name: 'sqlite' as const, skip: false }, { name: 'postgres' as const, skip: skipPostgres }]) {
describe.skipIf(e.skip)(`shareholder service on ${e.name}`, () => {
beforeAll(() => {
  engine = { name: e.name };
});
describe('shareholder enrollment', () => {
  it('publishes its identity', async () => {
    const svc = await startService('dev');
    const res = await fetch(`${svc.url}/v1/identity`);
    expect(await res.json()).toMatchObject({ id: 'sh-dev', publicKey: toHex(svc.identity.publicKey), mode: 'dev' });
  });

  it('lets browsers call identity and enrollment cross-origin, and nothing else', async () => {
    const svc = await startService('dev');
    const pre = await fetch(`${svc.url}/v1/shares`, { method: 'OPTIONS', headers: { origin: 'http://127.0.0.1:8080', 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type' } });
    expect(pre.status).toBe(204);
    expect(pre.headers.get('access-control-allow-origin')).toBe('*');
    expect(pre.headers.get('access-control-allow-methods')).toContain('POST');
    expect(pre.headers.get('access-control-allow-credentials')).toBeNull();
    expect((await fetch(`${svc.url}/v1/identity`, { headers: { origin: 'http://x.example' } })).headers.get('access-control-allow-origin')).toBe('*');
    const release = await fetch(`${svc.url}/v1/challenges`, { method: 'POST', headers: { origin: 'http://x.example' } });
    expect(release.headers.get('access-control-allow-origin')).toBeNull();
    expect((await fetch(`${svc.url}/v1/audit`, { headers: { origin: 'http://x.example' } })).headers.get('access-control-allow-origin')).toBeNull();
  });

  it('enrolls once and refuses a second enrollment for the same connection', async () => {
    const svc = await startService('dev');
    const first = await enroll(svc);
    expect(first.res.status).toBe(201);
    const again = await enroll(svc, { connectionId: first.connectionId });
    expect(again.res.status).toBe(409);
    expect(again.res.json.error.code).toBe('share_exists');
  });

  it('refuses an enrollment whose signature does not cover the envelope', async () => {
    const svc = await startService('dev');
    const connectionId = 'conn_tampered';
    const share = splitSecret(new Uint8Array(randomBytes(32)), 2, 3)[0]!;
    const envelope = await sealShareEnvelope(svc.identity.publicKey, encodeShare(share), { purpose: 'enroll', connectionId, shareholderId: svc.identity.id });
    const signed = signOwnerMessage(owner.secretKey, { type: 'enroll', connectionId, shareholderId: svc.identity.id, issuedAt: svc.now.t, envelopeSha256: '00'.repeat(32), policy: devPcrPolicy(toHex(PCR0)) });
    const res = await post(`${svc.url}/v1/shares`, { envelope: Buffer.from(envelope).toString('base64'), signed });
    expect(res.status).toBe(400);
    const forged = { ...signed, message: { ...signed.message, envelopeSha256: createHash('sha256').update(envelope).digest('hex') } };
    const res2 = await post(`${svc.url}/v1/shares`, { envelope: Buffer.from(envelope).toString('base64'), signed: forged });
    expect(res2.status).toBe(403);
    expect(res2.json.error.code).toBe('owner_signature_invalid');
  });

  it('accepts policy updates and deletion only from the owner pinned at enrollment, never replayed', async () => {
    const svc = await startService('dev');
    const { connectionId } = await enroll(svc);
    const msg = (signer: OwnerKeyPair, type: 'policy_update' | 'delete', issuedAt: number) =>
      signOwnerMessage(signer.secretKey, { type, connectionId, shareholderId: svc.identity.id, issuedAt, policy: devPcrPolicy(toHex(OTHER_PCR0)) });
    const attacker = generateOwnerKeyPair();
    const byAttacker = await post(`${svc.url}/v1/shares/${connectionId}/policy`, { signed: msg(attacker, 'policy_update', svc.now.t + 1) }, 'PUT');
    expect(byAttacker.json.error.code).toBe('owner_signature_invalid');
    const update = msg(owner, 'policy_update', svc.now.t + 1);
    expect((await post(`${svc.url}/v1/shares/${connectionId}/policy`, { signed: update }, 'PUT')).status).toBe(200);
    const replay = await post(`${svc.url}/v1/shares/${connectionId}/policy`, { signed: update }, 'PUT');
    expect(replay.json.error.code).toBe('message_replayed');
    // What the update removed is gone at once: the old enclave measurement no longer receives the
    // share (the new one waits out the widening delay, shareholders/widening.test.ts).
    expect((await release(svc, connectionId)).res.json.refused[0]!.code).toBe('attestation_pcr_mismatch');
    expect((await post(`${svc.url}/v1/shares/${connectionId}`, { signed: msg(owner, 'delete', svc.now.t + 2) }, 'DELETE')).status).toBe(200);
    expect((await release(svc, connectionId)).res.json.error.code).toBe('share_not_found');
  });
});

describe('release budget against strangers', () => {
  it('refuses a release request that lists the same connection twice', async () => {
    const svc = await startService('dev');
    const { connectionId } = await enroll(svc);
    const nonce = (await post(`${svc.url}/v1/challenges`, {})).json.nonce;
    const doc = await nsm.getAttestationDocument({ nonce: Buffer.from(nonce, 'hex'), publicKey: generateX25519KeyPair().publicKey });
    const res = await post(`${svc.url}/v1/releases`, { document: Buffer.from(doc).toString('base64'), connectionIds: [connectionId, connectionId] });
    expect(res.status).toBe(400);
    expect(res.json.error.code).toBe('bad_request');
  });

  it('does not spend the budget on releases whose attestation is invalid', async () => {
    const svc = await startService('dev');
    const { connectionId } = await enroll(svc);
    const other = await DevNsm.create({ root, pcr0: OTHER_PCR0 });
    for (let i = 0; i < 8; i++) expect((await release(svc, connectionId, { nsm: other })).res.json.refused[0]!.code).toBe('attestation_pcr_mismatch');
    for (let i = 0; i < 8; i++) expect((await release(svc, connectionId, { nonce: randomBytes(32).toString('hex') })).res.json.error.code).toBe('nonce_unknown');
    expect((await release(svc, connectionId)).res.status).toBe(200);
  });

  it('counts repeated releases to one enclave key once: replaying a gateway\'s attestation cannot use up the budget', async () => {
    const svc = await startService('dev');
    const { connectionId } = await enroll(svc); // 5 releases a minute
    const victim = generateX25519KeyPair();
    // A stranger asks the victim's gateway for documents over the shareholder's nonces, 12 times.
    for (let i = 0; i < 12; i++) expect((await release(svc, connectionId, { eph: victim })).res.status).toBe(200);
    // Four other enclaves still get the share in the same minute.
    for (let i = 0; i < 4; i++) expect((await release(svc, connectionId)).res.status).toBe(200);
    expect((await release(svc, connectionId)).res.status).toBe(429);
  });

  it('throttles a flood of challenges from one address without touching another address', async () => {
    const svc = await startService('dev', { challenges: { perMinute: 60, burst: 5 } });
    const flood = [];
    for (let i = 0; i < 10; i++) flood.push((await post(`${svc.url}/v1/challenges`, {}, 'POST', stranger)).status);
    expect(flood.slice(0, 5)).toEqual([200, 200, 200, 200, 200]);
    expect(flood.slice(5).every((s) => s === 429)).toBe(true);
    expect((await post(`${svc.url}/v1/challenges`, {})).status).toBe(200);
  });

  it('caps the unused challenges one address may hold, and frees a slot when one is used', async () => {
    const svc = await startService('dev', { outstandingPerSource: 3 });
    const { connectionId } = await enroll(svc);
    const held = [];
    for (let i = 0; i < 3; i++) held.push((await post(`${svc.url}/v1/challenges`, {}, 'POST', stranger)).json.nonce);
    const fourth = await post(`${svc.url}/v1/challenges`, {}, 'POST', stranger);
    expect(fourth.status).toBe(429);
    expect(fourth.json.error.code).toBe('rate_limited');
    expect((await release(svc, connectionId)).res.status).toBe(200); // another address is unaffected
    const doc = await nsm.getAttestationDocument({ nonce: Buffer.from(held[0]!, 'hex'), publicKey: generateX25519KeyPair().publicKey });
    await post(`${svc.url}/v1/releases`, { document: Buffer.from(doc).toString('base64'), connectionIds: [connectionId] }, 'POST', stranger);
    expect((await post(`${svc.url}/v1/challenges`, {}, 'POST', stranger)).status).toBe(200);
  });

  it('throttles release requests per address before verifying them', async () => {
    const svc = await startService('dev', { releases: { perMinute: 60, burst: 3 } });
    const statuses = [];
    for (let i = 0; i < 5; i++) statuses.push((await post(`${svc.url}/v1/releases`, { document: 'bm90IGEgZG9j', connectionIds: ['x'] }, 'POST', stranger)).status);
    expect(statuses).toEqual([403, 403, 403, 429, 429]);
    const { connectionId } = await enroll(svc);
    expect((await release(svc, connectionId)).res.status).toBe(200);
  });
});

describe('enroll replay after deletion', () => {
  it('refuses an enroll message replayed after its share was deleted (the tombstone outlives the row)', async () => {
    const svc = await startService('dev');
    const { connectionId, body } = await enroll(svc);
    const del = signOwnerMessage(owner.secretKey, { type: 'delete', connectionId, shareholderId: svc.identity.id, issuedAt: svc.now.t + 1 });
    expect((await post(`${svc.url}/v1/shares/${connectionId}`, { signed: del }, 'DELETE')).status).toBe(200);
    const replay = await post(`${svc.url}/v1/shares`, body);
    expect(replay.status).toBe(409);
    expect(replay.json.error.code).toBe('message_replayed');
    expect(await svc.store.getShare(connectionId)).toBeUndefined();
  });

  it('accepts a new enrollment for a deleted connection when its message is newer than the deletion', async () => {
    const svc = await startService('dev');
    const { connectionId } = await enroll(svc);
    const del = signOwnerMessage(owner.secretKey, { type: 'delete', connectionId, shareholderId: svc.identity.id, issuedAt: svc.now.t + 1 });
    await post(`${svc.url}/v1/shares/${connectionId}`, { signed: del }, 'DELETE');
    svc.now.t += 2;
    expect((await enroll(svc, { connectionId })).res.status).toBe(201);
  });
});

describe('whose enclave: PCR policy strength', () => {
  const Z = '00'.repeat(48);
  const image = { '0': toHex(PCR0), '1': toHex(DEV_PCR1), '2': toHex(DEV_PCR2) };

  it('refuses in production a policy naming only PCR3, PCR4 or PCR8 (it admits any image on that instance)', async () => {
    const svc = await startService('production');
    for (const set of [{ '4': toHex(PCR0) }, { '3': toHex(DEV_PCR3) }, { '8': toHex(DEV_PCR8) }, { '3': toHex(DEV_PCR3), '8': toHex(DEV_PCR8) }]) {
      const { res } = await enroll(svc, { policy: { allow: [set] } });
      expect(res.status).toBe(400);
      expect(res.json.error.code).toBe('policy_weak');
    }
  });

  it('refuses in production a policy that lacks any of PCR0, PCR1, PCR2', async () => {
    const svc = await startService('production');
    for (const drop of ['0', '1', '2']) {
      const set: Record<string, string> = { ...image, '3': toHex(DEV_PCR3) };
      delete set[drop];
      const { res } = await enroll(svc, { policy: { allow: [set] } });
      expect(res.json.error.code).toBe('policy_weak');
    }
  });

  it('refuses in production an image-only policy, and bindings or image PCRs that are all zeros (debug, unsigned)', async () => {
    const svc = await startService('production');
    for (const set of [image, { ...image, '3': Z }, { ...image, '8': Z }, { ...image, '0': Z, '3': toHex(DEV_PCR3) }]) {
      const { res } = await enroll(svc, { policy: { allow: [set] } });
      expect(res.json.error.code).toBe('policy_weak');
    }
    const debug = await enroll(svc, { policy: { ...strongPolicy(), allowDebug: true } });
    expect(debug.res.json.error.code).toBe('policy_weak');
  });

  it('accepts in production the image plus PCR3 and/or PCR8', async () => {
    const svc = await startService('production');
    for (const binding of [{ '3': toHex(DEV_PCR3) }, { '8': toHex(DEV_PCR8) }, { '3': toHex(DEV_PCR3), '8': toHex(DEV_PCR8) }]) {
      const { res } = await enroll(svc, { policy: { allow: [{ ...image, ...binding }] } });
      expect(res.status).toBe(201);
    }
  });

  it('refuses a policy update that drops the binding, and keeps the old policy', async () => {
    const svc = await startService('production');
    const { connectionId } = await enroll(svc, { policy: strongPolicy() });
    const signed = signOwnerMessage(owner.secretKey, { type: 'policy_update', connectionId, shareholderId: svc.identity.id, issuedAt: svc.now.t + 1, policy: { allow: [image] } });
    const res = await post(`${svc.url}/v1/shares/${connectionId}/policy`, { signed }, 'PUT');
    expect(res.status).toBe(400);
    expect(res.json.error.code).toBe('policy_weak');
    const current = (await (await fetch(`${svc.url}/v1/shares/${connectionId}/policy`)).json()) as { policy: unknown };
    expect(current.policy).toEqual(strongPolicy());
  });

  it('refuses in dev mode too a policy that does not pin PCR0', async () => {
    const svc = await startService('dev');
    const { res } = await enroll(svc, { policy: { allow: [{ '4': toHex(PCR0) }] } });
    expect(res.json.error.code).toBe('policy_weak');
  });

  it('releases under an owner-bound policy to the dev NSM, whose PCR3 and PCR8 are realistic (non-zero)', async () => {
    const svc = await startService('dev');
    const { connectionId } = await enroll(svc, { policy: { allow: [{ ...strongPolicy().allow[0]!, '8': toHex(DEV_PCR8) }] } });
    expect((await release(svc, connectionId)).res.status).toBe(200);
    // The log records the bindings too, so `attest audit` can replay the release against this policy.
    const logged = (await svc.store.readAudit()).find((e) => e.event.outcome === 'released')!;
    expect(logged.event.pcrs).toMatchObject({ '3': toHex(DEV_PCR3), '8': toHex(DEV_PCR8) });
    const otherRole = await DevNsm.create({ root, pcr0: PCR0, pcr3: new Uint8Array(createHash('sha384').update('another account').digest()) });
    expect((await release(svc, connectionId, { nsm: otherRole })).res.json.refused[0]!.code).toBe('attestation_pcr_mismatch');
  });
});

describe('shareholder release', () => {
  it('releases the share sealed to the document public key, bound to the nonce and authenticated by its identity key', async () => {
    const svc = await startService('dev');
    const { connectionId, share } = await enroll(svc);
    const { res, eph, nonce } = await release(svc, connectionId);
    expect(res.status).toBe(200);
    const envelope = new Uint8Array(Buffer.from(res.json.shares[0]!.envelope, 'base64'));
    const ctx = { purpose: 'release' as const, connectionId, shareholderId: svc.identity.id, nonce: Buffer.from(nonce, 'hex') };
    expect(decodeShare(await openShareEnvelope(eph.privateKey, envelope, ctx, svc.identity.publicKey))).toEqual(share);
    // Authenticated as this shareholder: it does not open as coming from any other key.
    await expect(openShareEnvelope(eph.privateKey, envelope, ctx, generateX25519KeyPair().publicKey)).rejects.toMatchObject({ code: 'envelope_auth_failed' });
  });

  it('refuses a document whose PCRs are not in the owner policy', async () => {
    const svc = await startService('dev');
    const { connectionId } = await enroll(svc);
    const other = await DevNsm.create({ root, pcr0: OTHER_PCR0 });
    const { res } = await release(svc, connectionId, { nsm: other });
    expect(res.status).toBe(403);
    expect(res.json.refused[0]!.code).toBe('attestation_pcr_mismatch');
  });

  it('refuses a replayed nonce', async () => {
    const svc = await startService('dev');
    const { connectionId } = await enroll(svc);
    const first = await release(svc, connectionId);
    expect(first.res.status).toBe(200);
    const replay = await post(`${svc.url}/v1/releases`, { document: Buffer.from(first.doc).toString('base64'), connectionIds: [connectionId] });
    expect(replay.status).toBe(403);
    expect(replay.json.error.code).toBe('nonce_used');
  });

  it('refuses a nonce it never issued and one that expired', async () => {
    const svc = await startService('dev');
    const { connectionId } = await enroll(svc);
    const unknown = await release(svc, connectionId, { nonce: randomBytes(32).toString('hex') });
    expect(unknown.res.json.error.code).toBe('nonce_unknown');
    const nonce = (await post(`${svc.url}/v1/challenges`, {})).json.nonce;
    svc.now.t += 61_000;
    const late = await release(svc, connectionId, { nonce });
    expect(late.res.json.error.code).toBe('nonce_expired');
  });

  it('refuses an expired document (timestamp older than allowed)', async () => {
    const svc = await startService('dev');
    const { connectionId } = await enroll(svc);
    const nonce = (await post(`${svc.url}/v1/challenges`, {})).json.nonce;
    const eph = generateX25519KeyPair();
    const past = { t: svc.now.t - 10 * 60_000 };
    const oldNsm = await DevNsm.create({ root, pcr0: PCR0, clock: () => new Date(past.t) });
    const doc = await oldNsm.getAttestationDocument({ nonce: Buffer.from(nonce, 'hex'), publicKey: eph.publicKey });
    const res = await post(`${svc.url}/v1/releases`, { document: Buffer.from(doc).toString('base64'), connectionIds: [connectionId] });
    expect(res.status).toBe(403);
    expect(res.json.error.code).toBe('attestation_expired');
  });

  it('refuses a dev-signed document in production mode', async () => {
    const svc = await startService('production');
    const { connectionId, res: enrolled } = await enroll(svc, { policy: strongPolicy() });
    expect(enrolled.status).toBe(201);
    const { res } = await release(svc, connectionId);
    expect(res.status).toBe(403);
    expect(res.json.error.code).toBe('attestation_chain_invalid');
  });

  it('refuses a production start that pins a dev root', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'sg-sh-'));
    const store = await openShareStore(dir);
    await expect(
      buildShareholderServer({ identity: initIdentity(dir, 'x'), store, mode: 'production', extraRoots: [DevNsm.pinnedRoot(root)] }),
    ).rejects.toThrow(/production/);
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('rate-limits releases per connection', async () => {
    const svc = await startService('dev');
    const { connectionId } = await enroll(svc);
    const codes: number[] = [];
    for (let i = 0; i < 6; i++) codes.push((await release(svc, connectionId)).res.status);
    expect(codes.slice(0, 5)).toEqual([200, 200, 200, 200, 200]);
    expect(codes[5]).toBe(429);
  });

  it('answers malformed requests with 400 and a code, never 5xx', async () => {
    const svc = await startService('dev');
    for (const body of [{}, { document: 'AAAA' }, { document: 123, connectionIds: ['x'] }, { document: 'AAAA', connectionIds: [] }]) {
      const res = await post(`${svc.url}/v1/releases`, body);
      expect(res.status).toBe(400);
      expect(res.json.error.code).toBe('bad_request');
    }
    const junk = await post(`${svc.url}/v1/releases`, { document: 'bm90IGEgZG9j', connectionIds: ['x'] });
    expect(junk.status).toBe(403);
    expect(junk.json.error.code).toBe('attestation_malformed');
  });

  it('serves its log head signed with the log key it publishes', async () => {
    const svc = await startService('dev');
    const identity = (await (await fetch(`${svc.url}/v1/identity`)).json()) as { logPublicKey: string };
    const empty = verifyLogHead(await (await fetch(`${svc.url}/v1/audit/head`)).json(), fromHex(identity.logPublicKey));
    expect(empty).toMatchObject({ shareholderId: 'sh-dev', seq: 0, hash: GENESIS_HASH });
    const { connectionId } = await enroll(svc);
    await release(svc, connectionId);
    const head = verifyLogHead(await (await fetch(`${svc.url}/v1/audit/head`)).json(), fromHex(identity.logPublicKey));
    const entries = await svc.store.readAudit();
    expect(head).toMatchObject({ seq: entries.at(-1)!.seq, hash: entries.at(-1)!.hash });
    expect(logSigningKey(svc.identity).publicKey).toEqual(fromHex(identity.logPublicKey));
  });

  it('keeps an intact hash-chained audit of enrollments, releases and refusals', async () => {
    const svc = await startService('dev');
    const { connectionId } = await enroll(svc);
    await release(svc, connectionId);
    await release(svc, connectionId, { nonce: randomBytes(32).toString('hex') });
    const entries = await svc.store.readAudit();
    expect(entries.map((e) => `${e.event.action}:${e.event.outcome}`)).toEqual(['enroll:enrolled', 'release:released', 'release:refused']);
    expect(entries[1]!.event.moduleId).toBe(nsm.moduleId);
    expect(verifyAuditChain(entries)).toBeUndefined();
    const tampered = entries.map((e, i) => (i === 1 ? { ...e, event: { ...e.event, outcome: 'refused' as const } } : e));
    expect(verifyAuditChain(tampered)).toBe(2);
    expect(verifyAuditChain(entries.slice(1))).toBe(2);
  });
});
});
}
