/**
 * Slow, visible widening (SPEC.md §8.3) against the real shareholder service on loopback, with
 * its injected clock advanced instead of waiting: a policy update that admits a new enclave takes
 * effect only after the delay the owner signed at enrollment, is in the log at once, and can be
 * cancelled by the owner within the delay; removing entries applies at once.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDevRoot, DEV_PCR1, DEV_PCR2, DEV_PCR8, DevNsm, type DevRootMaterial } from '../attestation/dev.ts';
import { encodeShare, generateOwnerKeyPair, generateX25519KeyPair, sealShareEnvelope, signOwnerMessage, splitSecret, toHex, type OwnerKeyPair } from '../protocol/index.ts';
import { initIdentity, type ShareholderIdentity } from './identity.ts';
import { buildShareholderServer } from './server.ts';
import { openShareStore, type ShareStore } from './store.ts';

const HOUR = 3_600_000;
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- loosely typed JSON answers, for assertions
type Json = Record<string, any>;
const OLD = new Uint8Array(createHash('sha384').update('enclave bundle v1').digest());
const NEW = new Uint8Array(createHash('sha384').update('enclave bundle v2').digest());
const set = (pcr0: Uint8Array) => ({ '0': toHex(pcr0), '1': toHex(DEV_PCR1), '2': toHex(DEV_PCR2), '8': toHex(DEV_PCR8) });

interface Service {
  app: FastifyInstance;
  url: string;
  identity: ShareholderIdentity;
  store: ShareStore;
  dir: string;
  now: { t: number };
  oldNsm: DevNsm;
  newNsm: DevNsm;
}

let root: DevRootMaterial;
let owner: OwnerKeyPair;
const services: Service[] = [];

async function startService(): Promise<Service> {
  const dir = await mkdtemp(join(tmpdir(), 'sg-widen-'));
  const identity = initIdentity(dir, 'sh-1');
  const store = await openShareStore(dir);
  const now = { t: Date.now() };
  const clock = () => new Date(now.t);
  const app = await buildShareholderServer({ identity, store, mode: 'dev', extraRoots: [DevNsm.pinnedRoot(root)], clock });
  const url = await app.listen({ port: 0, host: '127.0.0.1' });
  // Both enclaves attest at the service's time, so documents stay fresh as the clock moves on.
  const svc = { app, url, identity, store, dir, now, oldNsm: await DevNsm.create({ root, pcr0: OLD, clock }), newNsm: await DevNsm.create({ root, pcr0: NEW, clock }) };
  services.push(svc);
  return svc;
}

async function call(url: string, body: unknown, method = 'POST') {
  const res = await fetch(url, { method, headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { status: res.status, json: (await res.json()) as Json };
}

/** Enrolls a share whose policy admits the old image only; `wideningDelayMs` as the owner signs it (omitted: the default). */
async function enroll(svc: Service, fields: Record<string, unknown> = {}, tamper?: (message: Record<string, unknown>) => void) {
  const connectionId = `conn_${randomBytes(8).toString('hex')}`;
  const share = splitSecret(new Uint8Array(randomBytes(32)), 2, 3)[0]!;
  const envelope = await sealShareEnvelope(svc.identity.publicKey, encodeShare(share), { purpose: 'enroll', connectionId, shareholderId: svc.identity.id });
  const signed = signOwnerMessage(owner.secretKey, {
    type: 'enroll',
    connectionId,
    shareholderId: svc.identity.id,
    issuedAt: svc.now.t,
    envelopeSha256: createHash('sha256').update(envelope).digest('hex'),
    policy: { allow: [set(OLD)] },
    maxReleasesPerMinute: 100,
    ...(fields as Record<string, never>),
  });
  tamper?.(signed.message as Record<string, unknown>);
  const res = await call(`${svc.url}/v1/shares`, { envelope: Buffer.from(envelope).toString('base64'), signed });
  return { connectionId, res };
}

function ownerMessage(svc: Service, connectionId: string, type: 'policy_update' | 'widening_cancel', fields: Record<string, unknown>) {
  svc.now.t += 1; // each owner message is newer than the last
  return signOwnerMessage(owner.secretKey, { type, connectionId, shareholderId: svc.identity.id, issuedAt: svc.now.t, ...(fields as Record<string, never>) });
}

const updatePolicy = (svc: Service, connectionId: string, allow: unknown[], extra: Record<string, unknown> = {}) =>
  call(`${svc.url}/v1/shares/${connectionId}/policy`, { signed: ownerMessage(svc, connectionId, 'policy_update', { policy: { allow } as never, ...extra }) }, 'PUT');

async function release(svc: Service, connectionId: string, nsm: DevNsm) {
  const eph = generateX25519KeyPair();
  const nonce = (await call(`${svc.url}/v1/challenges`, {})).json.nonce as string;
  const doc = await nsm.getAttestationDocument({ nonce: Buffer.from(nonce, 'hex'), publicKey: eph.publicKey });
  const res = await call(`${svc.url}/v1/releases`, { document: Buffer.from(doc).toString('base64'), connectionIds: [connectionId] });
  return res.status === 200 ? 'released' : (res.json.error.code as string);
}

async function logOf(svc: Service, connectionId: string) {
  const entries = (await (await fetch(`${svc.url}/v1/audit?limit=1000`)).json()).entries as Array<{ event: Json }>;
  return entries.map((e) => e.event).filter((e) => e.connectionId === connectionId && e.action !== 'release');
}

beforeAll(async () => {
  root = await createDevRoot();
  owner = generateOwnerKeyPair();
});
afterAll(async () => {
  for (const s of services) {
    await s.app.close();
    await s.store.close();
    await rm(s.dir, { recursive: true, force: true });
  }
});

describe('slow, visible widening', () => {
  it('admits a new enclave only after the default 24 h delay, logging the widening at once', async () => {
    const svc = await startService();
    const { connectionId } = await enroll(svc);
    const put = await updatePolicy(svc, connectionId, [set(OLD), set(NEW)]);
    expect(put.status).toBe(200);
    expect(put.json.pending.effectiveAt).toBe(new Date(svc.now.t + 24 * HOUR).toISOString());
    expect((await logOf(svc, connectionId)).map((e) => e.outcome)).toEqual(['enrolled', 'widening_pending']);
    expect(await release(svc, connectionId, svc.newNsm)).toBe('attestation_pcr_mismatch');
    svc.now.t += 24 * HOUR - 60_000;
    expect(await release(svc, connectionId, svc.newNsm)).toBe('attestation_pcr_mismatch');
    expect(await release(svc, connectionId, svc.oldNsm)).toBe('released');
    svc.now.t += 60_000;
    expect(await release(svc, connectionId, svc.newNsm)).toBe('released');
    const log = await logOf(svc, connectionId);
    expect(log.map((e) => e.outcome)).toEqual(['enrolled', 'widening_pending', 'policy_widened']);
    expect(log[2]!.wideningSha256).toBe(put.json.pending.sha256);
  });

  it('honours the delay the owner signed at enrollment, and shows the pending widening on the policy', async () => {
    const svc = await startService();
    const { connectionId, res } = await enroll(svc, { wideningDelayMs: 2 * HOUR });
    expect(res.status).toBe(201);
    await updatePolicy(svc, connectionId, [set(OLD), set(NEW)]);
    const view = (await (await fetch(`${svc.url}/v1/shares/${connectionId}/policy`)).json()) as Json;
    expect(view.wideningDelayMs).toBe(2 * HOUR);
    expect(view.policy.allow).toEqual([set(OLD)]);
    expect(view.pending.policy.allow).toEqual([set(OLD), set(NEW)]);
    svc.now.t += 2 * HOUR;
    expect(await release(svc, connectionId, svc.newNsm)).toBe('released');
  });

  it('lets the owner cancel a pending widening by its hash, after which it never takes effect', async () => {
    const svc = await startService();
    const { connectionId } = await enroll(svc);
    const put = await updatePolicy(svc, connectionId, [set(OLD), set(NEW)]);
    const wrong = await call(`${svc.url}/v1/shares/${connectionId}/policy/cancel`, { signed: ownerMessage(svc, connectionId, 'widening_cancel', { wideningSha256: 'a'.repeat(64) }) });
    expect(wrong.json.error.code).toBe('widening_not_pending');
    const stranger = generateOwnerKeyPair();
    svc.now.t += 1;
    const forged = signOwnerMessage(stranger.secretKey, { type: 'widening_cancel', connectionId, shareholderId: svc.identity.id, issuedAt: svc.now.t, wideningSha256: put.json.pending.sha256 });
    expect((await call(`${svc.url}/v1/shares/${connectionId}/policy/cancel`, { signed: forged })).json.error.code).toBe('owner_signature_invalid');
    const cancel = await call(`${svc.url}/v1/shares/${connectionId}/policy/cancel`, { signed: ownerMessage(svc, connectionId, 'widening_cancel', { wideningSha256: put.json.pending.sha256 }) });
    expect(cancel.status).toBe(200);
    svc.now.t += 48 * HOUR;
    expect(await release(svc, connectionId, svc.newNsm)).toBe('attestation_pcr_mismatch');
    expect((await logOf(svc, connectionId)).map((e) => e.outcome)).toEqual(['enrolled', 'widening_pending', 'widening_cancelled']);
  });

  it('applies a narrowing at once', async () => {
    const svc = await startService();
    const { connectionId } = await enroll(svc, { policy: { allow: [set(OLD), set(NEW)] } });
    expect(await release(svc, connectionId, svc.oldNsm)).toBe('released');
    const put = await updatePolicy(svc, connectionId, [set(NEW)]);
    expect(put.json.pending).toBeNull();
    expect(await release(svc, connectionId, svc.oldNsm)).toBe('attestation_pcr_mismatch');
    expect(await release(svc, connectionId, svc.newNsm)).toBe('released');
  });

  it('refuses a policy update that tries to change the delay, and an enrollment whose delay was altered after signing', async () => {
    const svc = await startService();
    const { connectionId } = await enroll(svc);
    const shorten = await updatePolicy(svc, connectionId, [set(OLD), set(NEW)], { wideningDelayMs: 0 });
    expect(shorten.status).toBe(400);
    expect(shorten.json.error.code).toBe('bad_request');
    expect(await release(svc, connectionId, svc.newNsm)).toBe('attestation_pcr_mismatch');
    // A host relaying the dashboard's enrollment cannot rewrite the owner's delay: it is signed.
    const altered = await enroll(svc, { wideningDelayMs: 24 * HOUR }, (m) => {
      m.wideningDelayMs = 0;
    });
    expect(altered.res.json.error.code).toBe('owner_signature_invalid');
  });
});

describe('a replacement (one entry out, one in)', () => {
  it('drops the removed entry at once while the added one waits', async () => {
    const svc = await startService();
    const { connectionId } = await enroll(svc);
    await updatePolicy(svc, connectionId, [set(NEW)]);
    expect(await release(svc, connectionId, svc.oldNsm)).toBe('attestation_pcr_mismatch');
    expect(await release(svc, connectionId, svc.newNsm)).toBe('attestation_pcr_mismatch');
    svc.now.t += 24 * HOUR;
    expect(await release(svc, connectionId, svc.newNsm)).toBe('released');
    expect(await release(svc, connectionId, svc.oldNsm)).toBe('attestation_pcr_mismatch');
  });
});
