/**
 * A release log nobody can quietly rewrite (issue 18): a real shareholder service signs its log
 * heads, and `securegate attest audit` (the installed bin, as a user runs it) remembers the last
 * verified head per shareholder in its config dir. The operator then truncates the log, rewrites
 * it from genesis, or swaps the signing key — each is a loud failure (exit 1, stderr), and the
 * remembered head is kept as evidence.
 */
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeShare, generateOwnerKeyPair, sealShareEnvelope, signOwnerMessage, splitSecret, toHex } from '../../protocol/index.ts';
import { initIdentity, type ShareholderIdentity } from '../../shareholders/identity.ts';
import { buildShareholderServer } from '../../shareholders/server.ts';
import { openShareStore, type ShareStore } from '../../shareholders/store.ts';
import { devPcrPolicy } from '../../attestation/dev-pcrs.ts';

const bin = fileURLToPath(new URL('../../bin/securegate.mjs', import.meta.url));

let dir: string;
let configDir: string;
let identity: ShareholderIdentity;
let store: ShareStore;
let app: FastifyInstance;
let url: string;
const owner = generateOwnerKeyPair();

interface AuditOut {
  ok: boolean;
  shareholders: Array<{ shareholder: string; chainIntact: boolean; log: { verdict: string; ok: boolean; head: { seq: number } | null; previous: { seq: number } | null } }>;
}

function audit(): Promise<{ code: number; out: AuditOut; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [bin, 'attest', 'audit', '--json'],
      { env: { ...process.env, SECUREGATE_CONFIG_DIR: configDir, SECUREGATE_DATA_DIR: join(dir, 'no-stack'), SECUREGATE_URL: 'https://gateway.example' } },
      (error, stdout, stderr) => resolve({ code: error ? (error.code as number) : 0, out: JSON.parse(stdout) as AuditOut, stderr }),
    );
  });
}

async function serve(): Promise<void> {
  app = await buildShareholderServer({ identity, store, mode: 'dev' });
  url = await app.listen({ port: 0, host: '127.0.0.1' });
  await writeFile(join(configDir, 'config.json'), JSON.stringify({ shareholders: [{ id: identity.id, url, publicKey: toHex(identity.publicKey) }] }), { mode: 0o600 });
}

/** An enrollment: one more entry in the log. */
async function enroll(): Promise<void> {
  const connectionId = `conn_${randomBytes(6).toString('hex')}`;
  const envelope = await sealShareEnvelope(identity.publicKey, encodeShare(splitSecret(new Uint8Array(randomBytes(32)), 2, 3)[0]!), { purpose: 'enroll', connectionId, shareholderId: identity.id });
  const signed = signOwnerMessage(owner.secretKey, {
    type: 'enroll', connectionId, shareholderId: identity.id, issuedAt: Date.now(),
    envelopeSha256: createHash('sha256').update(envelope).digest('hex'), policy: devPcrPolicy('ab'.repeat(48)),
  });
  const res = await fetch(`${url}/v1/shares`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ envelope: Buffer.from(envelope).toString('base64'), signed }) });
  expect(res.status).toBe(201);
}

/** What an operator with the database can do: lift the append-only triggers and delete. */
async function operatorDeletes(fromSeq: number): Promise<void> {
  await store.db.exec('DROP TRIGGER IF EXISTS audit_append_only_d');
  await store.db.query('DELETE FROM audit WHERE seq >= $1', [fromSeq]);
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sg-trust-log-'));
  configDir = join(dir, 'config');
  identity = initIdentity(join(dir, 'sh'), 'sh-1');
  store = await openShareStore(join(dir, 'sh'));
  const { mkdir } = await import('node:fs/promises');
  await mkdir(configDir, { recursive: true, mode: 0o700 });
  await serve();
  for (let i = 0; i < 3; i++) await enroll();
});
afterAll(async () => {
  await app?.close();
  await store?.close();
  await rm(dir, { recursive: true, force: true });
});

describe('securegate attest audit remembers signed log heads', () => {
  it('accepts the first head it sees, remembers it (0600), then accepts a log that grew', async () => {
    const first = await audit();
    expect(first.code, first.stderr).toBe(0);
    expect(first.out.shareholders[0]!.log).toMatchObject({ verdict: 'first_use', ok: true, head: { seq: 3 } });
    expect((await stat(join(configDir, 'audit-heads.json'))).mode & 0o777).toBe(0o600);
    await enroll();
    const grown = await audit();
    expect(grown.code, grown.stderr).toBe(0);
    expect(grown.out.shareholders[0]!.log).toMatchObject({ verdict: 'extends', head: { seq: 4 }, previous: { seq: 3 } });
  });

  it('fails loudly when the log was truncated, and keeps the head it saw as evidence', async () => {
    const before = await readFile(join(configDir, 'audit-heads.json'), 'utf8');
    await operatorDeletes(3); // entries 3 and 4 gone; what is left is a valid chain
    const r = await audit();
    expect(r.code).toBe(1);
    expect(r.out.ok).toBe(false);
    expect(r.out.shareholders[0]!.chainIntact).toBe(true);
    expect(r.out.shareholders[0]!.log).toMatchObject({ verdict: 'truncated', ok: false, previous: { seq: 4 } });
    expect(r.stderr).toContain('LOG TRUNCATED');
    expect(await readFile(join(configDir, 'audit-heads.json'), 'utf8')).toBe(before);
  });

  it('fails loudly when the log was rewritten from genesis, even when it is longer than before', async () => {
    await operatorDeletes(1);
    for (let i = 0; i < 6; i++) await enroll();
    const r = await audit();
    expect(r.code).toBe(1);
    expect(r.out.shareholders[0]!.chainIntact).toBe(true);
    expect(r.out.shareholders[0]!.log).toMatchObject({ verdict: 'rewritten', head: { seq: 6 }, previous: { seq: 4 } });
    expect(r.stderr).toContain('LOG REWRITTEN');
  });

  it('fails loudly when the log is signed by another key than the one remembered', async () => {
    await app.close();
    identity = initIdentity(join(dir, 'sh-other'), 'sh-1');
    await serve();
    const r = await audit();
    expect(r.code).toBe(1);
    expect(r.out.shareholders[0]!.log.verdict).toBe('log_key_changed');
  });
});
