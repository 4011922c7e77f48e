/**
 * `securegate attest audit` compares the shareholders' logs with each other (issue 18): three real
 * shareholder services (dev mode, a dev NSM's documents), one connection enrolled at all three by
 * the owner. A policy update only one shareholder logged, and one shareholder releasing far more
 * often than the others, are each reported in plain words and fail the audit (exit 1).
 */
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDevRoot, devPcrPolicy, DevNsm } from '../../attestation/dev.ts';
import { encodeShare, generateOwnerKeyPair, generateX25519KeyPair, sealShareEnvelope, signOwnerMessage, splitSecret, toHex } from '../../protocol/index.ts';
import { initIdentity, type ShareholderIdentity } from '../../shareholders/identity.ts';
import { buildShareholderServer } from '../../shareholders/server.ts';
import { openShareStore, type ShareStore } from '../../shareholders/store.ts';

const bin = fileURLToPath(new URL('../../bin/securegate.mjs', import.meta.url));
const PCR0 = createHash('sha384').update('enclave bundle').digest();
const owner = generateOwnerKeyPair();
let dir: string;
let configDir: string;
let nsm: DevNsm;
const shareholders: Array<{ identity: ShareholderIdentity; store: ShareStore; app: FastifyInstance; url: string }> = [];

interface AuditOut {
  ok: boolean;
  disagreements: Array<{ connectionId: string; problem: string; severity: string; message: string }>;
}

function audit(connection: string): Promise<{ code: number; out: AuditOut; stdout: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [bin, 'attest', 'audit', '--json', '--connection', connection],
      { env: { ...process.env, SECUREGATE_CONFIG_DIR: configDir, SECUREGATE_DATA_DIR: join(dir, 'no-stack'), SECUREGATE_URL: 'https://gateway.example' } },
      (error, stdout) => resolve({ code: error ? (error.code as number) : 0, out: JSON.parse(stdout) as AuditOut, stdout }),
    );
  });
}

async function call(url: string, body: unknown, method = 'POST') {
  const res = await fetch(url, { method, headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
}

/** The owner enrolls one connection at every shareholder (or those at `only`). */
async function enrollEverywhere(only?: number[]): Promise<string> {
  const connectionId = `conn_${randomBytes(6).toString('hex')}`;
  const shares = splitSecret(new Uint8Array(randomBytes(32)), 2, 3);
  await Promise.all(
    shareholders.filter((_, i) => !only || only.includes(i)).map(async ({ identity, url }, i) => {
      const envelope = await sealShareEnvelope(identity.publicKey, encodeShare(shares[i]!), { purpose: 'enroll', connectionId, shareholderId: identity.id });
      const signed = signOwnerMessage(owner.secretKey, {
        type: 'enroll', connectionId, shareholderId: identity.id, issuedAt: Date.now(), maxReleasesPerMinute: 1000,
        envelopeSha256: createHash('sha256').update(envelope).digest('hex'), policy: devPcrPolicy(toHex(PCR0)),
      });
      expect((await call(`${url}/v1/shares`, { envelope: Buffer.from(envelope).toString('base64'), signed })).status).toBe(201);
    }),
  );
  return connectionId;
}

async function release(i: number, connectionId: string): Promise<void> {
  const { url } = shareholders[i]!;
  const nonce = (await call(`${url}/v1/challenges`, {})).json.nonce as string;
  const doc = await nsm.getAttestationDocument({ nonce: Buffer.from(nonce, 'hex'), publicKey: generateX25519KeyPair().publicKey });
  expect((await call(`${url}/v1/releases`, { document: Buffer.from(doc).toString('base64'), connectionIds: [connectionId] })).status).toBe(200);
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sg-log-compare-'));
  configDir = join(dir, 'config');
  await mkdir(configDir, { recursive: true, mode: 0o700 });
  const root = await createDevRoot();
  nsm = await DevNsm.create({ root, pcr0: new Uint8Array(PCR0) });
  for (const id of ['sh-1', 'sh-2', 'sh-3']) {
    const identity = initIdentity(join(dir, id), id);
    const store = await openShareStore(join(dir, id));
    const app = await buildShareholderServer({ identity, store, mode: 'dev', extraRoots: [DevNsm.pinnedRoot(root)] });
    shareholders.push({ identity, store, app, url: await app.listen({ port: 0, host: '127.0.0.1' }) });
  }
  const pins = shareholders.map(({ identity, url }) => ({ id: identity.id, url, publicKey: toHex(identity.publicKey) }));
  await writeFile(join(configDir, 'config.json'), JSON.stringify({ shareholders: pins }), { mode: 0o600 });
});
afterAll(async () => {
  for (const s of shareholders) {
    await s.app.close();
    await s.store.close();
  }
  await rm(dir, { recursive: true, force: true });
});

describe('attest audit compares the shareholders with each other', () => {
  it('finds nothing to report when every shareholder logged the same story', async () => {
    const connectionId = await enrollEverywhere();
    for (const i of [0, 1, 2]) await release(i, connectionId);
    const r = await audit(connectionId);
    expect(r.code).toBe(0);
    expect(r.out.disagreements).toEqual([]);
  });

  it('reports a policy update that only one shareholder logged', async () => {
    const connectionId = await enrollEverywhere();
    const sh = shareholders[1]!;
    const signed = signOwnerMessage(owner.secretKey, {
      type: 'policy_update', connectionId, shareholderId: sh.identity.id, issuedAt: Date.now(),
      policy: { allow: [{ ...devPcrPolicy(toHex(PCR0)).allow[0]!, '0': 'ef'.repeat(48) }] },
    });
    expect((await call(`${sh.url}/v1/shares/${connectionId}/policy`, { signed }, 'PUT')).status).toBe(200);
    const r = await audit(connectionId);
    expect(r.code).toBe(1);
    expect(r.out.ok).toBe(false);
    const d = r.out.disagreements.find((x) => x.problem === 'policy_history_differs')!;
    expect(d.message).toContain('sh-2 logged "widening pending');
    expect(d.message).toContain('that sh-1, sh-3 did not');
  });

  it('reports a shareholder that never logged an enrollment this machine sent it', async () => {
    const connectionId = await enrollEverywhere([0, 1]);
    // What `connect` records on the owner's machine: it enrolled the connection with all three.
    await writeFile(join(configDir, 'enrollments.json'), JSON.stringify({ [connectionId]: ['sh-1', 'sh-2', 'sh-3'] }), { mode: 0o600 });
    const r = await audit(connectionId);
    expect(r.code).toBe(1);
    const d = r.out.disagreements.find((x) => x.problem === 'enrollment_missing')!;
    expect(d.message).toBe('sh-3 logged no enrollment of it, though sh-1, sh-2 did (this machine enrolled it with sh-1, sh-2, sh-3)');
  });

  it('reports a shareholder that released far more often than the others', async () => {
    const connectionId = await enrollEverywhere();
    for (const i of [0, 1, 2]) await release(i, connectionId);
    for (let k = 0; k < 24; k++) await release(2, connectionId);
    const r = await audit(connectionId);
    expect(r.code).toBe(1);
    const d = r.out.disagreements.find((x) => x.problem === 'release_count_outlier')!;
    expect(d.message).toContain('sh-3 released 25 times, the others 1, 1');
  });
});
