/**
 * Upgrades and rotation through the real CLI against the dev stack: approving a new release's
 * PCRs (owner-signed, every shareholder), withdrawing an image so it gets no more shares, and
 * rotating the upstream key with SG_ keys working throughout.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEV_PCR8 } from '../../attestation/dev.ts';
import { signReleaseManifest, toHex, type SignedReleaseManifest } from '../../protocol/index.ts';
import { startTestStack } from './helpers.ts';

const bin = fileURLToPath(new URL('../../bin/securegate.mjs', import.meta.url));
let stack: Awaited<ReturnType<typeof startTestStack>>;
let configDir: string;

function cli(args: string[], stdin = ''): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = execFile(
      process.execPath,
      [bin, ...args],
      { env: { ...process.env, SECUREGATE_DATA_DIR: stack.dataDir, SECUREGATE_URL: stack.hostUrl, SECUREGATE_CONFIG_DIR: configDir } },
      (e, stdout, stderr) => resolve({ code: e ? (e.code as number) : 0, stdout, stderr }),
    );
    child.stdin!.end(stdin);
  });
}

beforeAll(async () => {
  stack = await startTestStack();
  configDir = await mkdtemp(join(tmpdir(), 'sg-upg-'));
});
afterAll(async () => {
  await stack?.cleanup();
  await rm(configDir, { recursive: true, force: true });
});

async function connectAndKey(upstreamKey: string): Promise<{ connectionId: string; key: string }> {
  // No widening delay: these tests cut over at once (the delay itself: test/e2e/owner-bindings.test.ts).
  const c = await cli(['connect', 'openai', '--api-key-stdin', '--base-url', stack.mock!.origin, '--widening-delay', '0', '--json'], `${upstreamKey}\n`);
  expect(c.code, c.stderr).toBe(0);
  const connectionId = (JSON.parse(c.stdout) as { id: string }).id;
  const k = await cli(['keys', 'create', '--connection', connectionId, '--json']);
  return { connectionId, key: (JSON.parse(k.stdout) as { key: string }).key };
}

const ask = (key: string) => new OpenAI({ apiKey: key, baseURL: `${stack.hostUrl}/v1`, maxRetries: 0 }).chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] });

async function policyAt(connectionId: string): Promise<Array<Record<string, string>>> {
  const r = await fetch(`${stack.shareholders[0]!.url}/v1/shares/${connectionId}/policy`);
  return ((await r.json()) as { policy: { allow: Array<Record<string, string>> } }).policy.allow;
}

describe('release approval', () => {
  it('adds a new release on every shareholder, and a withdrawn release gets no more shares', async () => {
    const { connectionId, key } = await connectAndKey(stack.demo!.upstreamKey);
    const current = JSON.parse(await readFile(stack.manifestPath, 'utf8')) as SignedReleaseManifest;
    const releaseKey = Buffer.from((await readFile(join(stack.dataDir, 'dev-root', 'release.key'), 'utf8')).trim(), 'hex');
    const next = signReleaseManifest(releaseKey, { ...current.manifest, release: 'next', pcrs: { ...current.manifest.pcrs, '0': 'cd'.repeat(48) } });
    const nextPath = join(configDir, 'next.json');
    await writeFile(nextPath, JSON.stringify(next));
    const approved = await cli(['connections', 'approve-release', nextPath, '--release-key', stack.releasePublicKey, '--connection', connectionId, '--json']);
    expect(approved.code, approved.stderr).toBe(0);
    for (const sh of stack.shareholders) {
      const r = (await (await fetch(`${sh.url}/v1/shares/${connectionId}/policy`)).json()) as { policy: { allow: unknown[] } };
      expect(r.policy.allow).toHaveLength(2);
    }
    // Cut over: withdraw the running release. The enclave has not fetched this key yet, so the
    // shareholders now refuse it: a clean 503, nothing upstream.
    const withdrawn = await cli(['connections', 'approve-release', stack.manifestPath, '--release-key', stack.releasePublicKey, '--connection', connectionId, '--withdraw', '--json']);
    expect(withdrawn.code, withdrawn.stderr).toBe(0);
    // The owner binding connect pinned (the dev EIF signing certificate, PCR8) is carried over to the new image.
    expect(await policyAt(connectionId)).toEqual([{ ...next.manifest.pcrs, '8': toHex(DEV_PCR8) }]);
    const refused = (await ask(key).catch((e: unknown) => e)) as { status: number; code: string };
    expect(refused).toMatchObject({ status: 503, code: 'shareholders_unavailable' });
    // Re-approving the running release restores service.
    expect((await cli(['connections', 'approve-release', stack.manifestPath, '--release-key', stack.releasePublicKey, '--connection', connectionId])).code).toBe(0);
    await ask(key);
  });

  it('refuses a manifest not signed by the pinned release key', async () => {
    const r = await cli(['connections', 'approve-release', stack.manifestPath, '--release-key', 'ab'.repeat(32)]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('does not verify');
  });
});

describe('upstream key rotation', () => {
  it('moves SG_ keys to the new upstream key without changing them, and deletes the old shares', async () => {
    const { connectionId, key } = await connectAndKey(stack.demo!.upstreamKey);
    await ask(key);
    const newUpstream = `sk-rotated-${Date.now()}`;
    stack.mock!.acceptKey(newUpstream);
    const r = await cli(['connect', 'openai', '--rotate', connectionId, '--api-key-stdin', '--json'], `${newUpstream}\n`);
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as { from: string; to: string; keysMoved: number };
    expect(out).toMatchObject({ from: connectionId, keysMoved: 1 });
    const before = stack.mock!.requests.length;
    await ask(key);
    expect(stack.mock!.requests[before]!.headers.authorization).toBe(`Bearer ${newUpstream}`);
    for (const sh of stack.shareholders) expect((await fetch(`${sh.url}/v1/shares/${connectionId}/policy`)).status).toBe(404);
  });
});

describe('shareholder replacement', () => {
  it('re-splits onto a new shareholder set without downtime; the retired shareholder is no longer needed', async () => {
    const { connectionId, key } = await connectAndKey(stack.demo!.upstreamKey);
    await ask(key);
    // The owner retires sh-5: pin the remaining four (3-of-4) and re-enroll the same upstream key.
    const { readConfig } = await import('../../cli/config.ts');
    const saved = readConfig({ ...process.env, SECUREGATE_CONFIG_DIR: configDir });
    const remaining = stack.shareholders.filter((s) => s.id !== 'sh-5').map(({ id, url, publicKey }) => ({ id, url, publicKey }));
    await writeFile(join(configDir, 'config.json'), JSON.stringify({ ...saved, shareholders: remaining, threshold: 3 }), { mode: 0o600 });
    const traffic = (async () => {
      for (let i = 0; i < 10; i++) await ask(key);
    })();
    const r = await cli(['connect', 'openai', '--rotate', connectionId, '--api-key-stdin', '--base-url', stack.mock!.origin, '--json'], `${stack.demo!.upstreamKey}\n`);
    expect(r.code, r.stderr).toBe(0);
    await traffic;
    const moved = JSON.parse(r.stdout) as { to: string; keysMoved: number };
    expect(moved.keysMoved).toBe(1);
    const conn = (await (await fetch(`${stack.hostUrl}/admin/v1/connections`, { headers: { authorization: `Bearer ${stack.adminToken}` } })).json()) as Array<{ id: string; threshold: number }>;
    expect(conn.find((c) => c.id === moved.to)!.threshold).toBe(3);
    expect((await fetch(`${stack.shareholders[4]!.url}/v1/shares/${moved.to}/policy`)).status).toBe(404);
    const sh5 = stack.shareholders[4]!;
    await sh5.stop();
    try {
      // With sh-5 gone the key still works (cold: evict the enclave's cached data key first).
      await stack.restartEnclave();
      const answer = await ask(key);
      expect(answer.choices[0]!.message.content).toContain('mock upstream');
    } finally {
      await sh5.start();
      await writeFile(join(configDir, 'config.json'), JSON.stringify(saved), { mode: 0o600 });
    }
  });
});

describe('securegate attest audit', () => {
  it('finds every shareholder log intact and every release sent to approved PCRs', async () => {
    const r = await cli(['attest', 'audit', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as { ok: boolean; shareholders: Array<{ shareholder: string; entries: number; chainIntact: boolean; releases: number }> };
    expect(out.ok).toBe(true);
    expect(out.shareholders).toHaveLength(5);
    expect(out.shareholders.every((s) => s.chainIntact && s.entries > 0)).toBe(true);
    expect(out.shareholders.reduce((n, s) => n + s.releases, 0)).toBeGreaterThanOrEqual(3);
  });

  it('flags a shareholder whose log was edited', async () => {
    const real = (await (await fetch(`${stack.shareholders[0]!.url}/v1/audit`)).json()) as { entries: Array<{ event: { outcome: string } }> };
    real.entries[0]!.event.outcome = 'refused';
    const { createServer } = await import('node:http');
    const fake = createServer((_req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(real)));
    await new Promise<void>((resolve) => fake.listen(0, '127.0.0.1', resolve));
    const configPath = join(configDir, 'config.json');
    const saved = await readFile(configPath, 'utf8');
    try {
      const config = JSON.parse(saved);
      const pins = stack.shareholders.map(({ id, url, publicKey }) => ({ id, url, publicKey }));
      pins[0]!.url = `http://127.0.0.1:${(fake.address() as { port: number }).port}`;
      await writeFile(configPath, JSON.stringify({ ...config, shareholders: pins }));
      const r = await cli(['attest', 'audit', '--json']);
      expect(r.code).toBe(1);
      const out = JSON.parse(r.stdout) as { shareholders: Array<{ shareholder: string; chainIntact: boolean }> };
      expect(out.shareholders.find((s) => s.shareholder === 'sh-1')!.chainIntact).toBe(false);
    } finally {
      await writeFile(configPath, saved);
      fake.close();
    }
  });
});
