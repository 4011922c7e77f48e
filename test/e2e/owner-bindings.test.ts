/**
 * `securegate connect` as an owner runs it (the installed bin) against a real dev stack — real
 * shareholder services, the enclave process with its dev NSM, the host:
 *  - the shares are pinned to the image *and* an owner binding (PCR8 by default in dev, PCR3 from a
 *    role ARN), a wrong binding really keeps the key from the enclave, and without any binding the
 *    CLI refuses before asking for the key (issue 18);
 *  - the connection policy flags are signed into the record and the enclave refuses a model outside
 *    them (issue 19);
 *  - a release approval is a widening: it waits out the owner's delay, the host raises a
 *    `policy_widening_pending` alert to the owner's webhook, and `connections cancel-widening`
 *    stops it.
 */
import { execFile } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEV_PARENT_ROLE_ARN, DEV_PCR1, DEV_PCR2, DEV_PCR3, DEV_PCR8 } from '../../attestation/dev.ts';
import { signReleaseManifest, toHex, type SignedReleaseManifest } from '../../protocol/index.ts';
import { adminApi, eventually, startTestStack } from './helpers.ts';

const bin = fileURLToPath(new URL('../../bin/securegate.mjs', import.meta.url));
let stack: Awaited<ReturnType<typeof startTestStack>>;
let configDir: string;
const hooks: string[] = [];
let receiver: Server;

function cli(args: string[], stdin = '', dir = configDir): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = execFile(
      process.execPath,
      [bin, ...args],
      { env: { ...process.env, SECUREGATE_DATA_DIR: stack.dataDir, SECUREGATE_URL: stack.hostUrl, SECUREGATE_CONFIG_DIR: dir } },
      (e, stdout, stderr) => resolve({ code: e ? (e.code as number) : 0, stdout, stderr }),
    );
    child.stdin!.end(stdin);
  });
}

beforeAll(async () => {
  stack = await startTestStack();
  configDir = await mkdtemp(join(tmpdir(), 'sg-bind-'));
  receiver = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      hooks.push(body);
      res.writeHead(200).end();
    });
  });
  await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
  const hook = await adminApi(stack)('POST', '/alerts', { kind: 'webhook', target: `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/sg` });
  expect(hook.status).toBe(201);
});
afterAll(async () => {
  await stack?.cleanup();
  await new Promise((r) => receiver?.close(r));
  await rm(configDir, { recursive: true, force: true });
});

interface Connected {
  id: string;
  pcrPolicy: { allow: Array<Record<string, string>> };
  ownerBindings: { pcr3: string | null; pcr8: string | null };
  wideningDelayMs: number;
  connectionPolicy: { operations: string[]; models?: string[]; ceiling: { requests?: number; microUsd?: number }; prices?: Record<string, unknown> } | null;
}

async function connect(flags: string[] = [], dir = configDir): Promise<Connected> {
  const r = await cli(['connect', 'openai', '--api-key-stdin', '--base-url', stack.mock!.origin, '--json', ...flags], `${stack.demo!.upstreamKey}\n`, dir);
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as Connected;
}

async function keyFor(connectionId: string): Promise<string> {
  const k = await cli(['keys', 'create', '--connection', connectionId, '--json']);
  expect(k.code, k.stderr).toBe(0);
  return (JSON.parse(k.stdout) as { key: string }).key;
}

const ask = (key: string, model = 'gpt-4o-mini') =>
  new OpenAI({ apiKey: key, baseURL: `${stack.hostUrl}/v1`, maxRetries: 0 }).chat.completions.create({ model, messages: [{ role: 'user', content: 'hi' }] });

async function shareholderPolicy(connectionId: string, i = 0) {
  return (await (await fetch(`${stack.shareholders[i]!.url}/v1/shares/${connectionId}/policy`)).json()) as {
    policy: { allow: Array<Record<string, string>> };
    wideningDelayMs: number;
    pending: { effectiveAt: string; sha256: string } | null;
  };
}

describe('connect pins owner-controlled bindings', () => {
  it('pins PCR0, PCR1, PCR2 and the dev EIF signing certificate (PCR8) by default, and the enclave still gets the key', async () => {
    const c = await connect();
    const expected = { '0': stack.pcr0, '1': toHex(DEV_PCR1), '2': toHex(DEV_PCR2), '8': toHex(DEV_PCR8) };
    expect(c.pcrPolicy.allow).toEqual([expected]);
    for (let i = 0; i < stack.shareholders.length; i++) expect((await shareholderPolicy(c.id, i)).policy.allow).toEqual([expected]);
    await ask(await keyFor(c.id));
  });

  it('pins PCR3 computed from the parent role ARN given with --pcr3', async () => {
    const c = await connect(['--pcr3', DEV_PARENT_ROLE_ARN]);
    expect(c.ownerBindings.pcr3).toBe(toHex(DEV_PCR3));
    expect((await shareholderPolicy(c.id)).policy.allow[0]!['3']).toBe(toHex(DEV_PCR3));
    await ask(await keyFor(c.id));
  });

  it('keeps the key from an enclave whose signing certificate is not the one pinned with --pcr8', async () => {
    const c = await connect(['--pcr8', 'ab'.repeat(48)]);
    const refused = (await ask(await keyFor(c.id)).catch((e: unknown) => e)) as { status: number; code: string };
    expect(refused).toMatchObject({ status: 503, code: 'shareholders_unavailable' });
  });

  it('refuses, before asking for the key, to connect with a policy that names no owner binding', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'sg-bind-weak-'));
    try {
      await writeFile(join(dir, 'config.json'), JSON.stringify({ pcrPolicy: { allow: [{ '0': stack.pcr0, '1': toHex(DEV_PCR1), '2': toHex(DEV_PCR2) }] } }), { mode: 0o600 });
      const r = await cli(['connect', 'openai', '--api-key-stdin', '--base-url', stack.mock!.origin], `${stack.demo!.upstreamKey}\n`, dir);
      expect(r.code).toBe(2);
      expect(r.stderr).toContain('without an owner-controlled binding');
      expect(r.stderr).toContain('--pcr8');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('connect signs the connection policy the enclave enforces', () => {
  it('repeats the signed policy and the enclave refuses a model outside it (403 connection_policy_denied)', async () => {
    const c = await connect(['--models', 'gpt-4o-mini', '--daily-requests', '50', '--daily-dollars', '2']);
    expect(c.connectionPolicy).toMatchObject({ operations: ['inference'], models: ['gpt-4o-mini'], ceiling: { requests: 50, microUsd: 2_000_000 } });
    expect(Object.keys(c.connectionPolicy!.prices!)).toEqual(['gpt-4o-mini']);
    const key = await keyFor(c.id);
    await ask(key, 'gpt-4o-mini');
    const refused = (await ask(key, 'gpt-4o').catch((e: unknown) => e)) as { status: number; code: string };
    expect(refused).toMatchObject({ status: 403, code: 'connection_policy_denied' });
  });

  it('refuses a dollar ceiling without the models to price it', async () => {
    const r = await cli(['connect', 'openai', '--api-key-stdin', '--base-url', stack.mock!.origin, '--daily-dollars', '5'], `${stack.demo!.upstreamKey}\n`);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('--daily-dollars needs --models');
  });
});

describe('a release approval is a slow, visible widening', () => {
  it('waits out the delay, alerts the owner by webhook, and is stopped by cancel-widening', async () => {
    const c = await connect();
    expect(c.wideningDelayMs).toBe(86_400_000);
    const current = JSON.parse(await readFile(stack.manifestPath, 'utf8')) as SignedReleaseManifest;
    const releaseKey = Buffer.from((await readFile(join(stack.dataDir, 'dev-root', 'release.key'), 'utf8')).trim(), 'hex');
    const next = signReleaseManifest(releaseKey, { ...current.manifest, release: 'next', pcrs: { ...current.manifest.pcrs, '0': 'cd'.repeat(48) } });
    const nextPath = join(configDir, 'next.json');
    await writeFile(nextPath, JSON.stringify(next));
    const approved = await cli(['connections', 'approve-release', nextPath, '--release-key', stack.releasePublicKey, '--connection', c.id, '--json']);
    expect(approved.code, approved.stderr).toBe(0);
    const result = JSON.parse(approved.stdout) as { connections: Array<{ pendingUntil: string | null }> };
    expect(Date.parse(result.connections[0]!.pendingUntil!)).toBeGreaterThan(Date.now() + 23 * 3_600_000);
    // Not in effect: every shareholder still admits only the running image.
    for (let i = 0; i < stack.shareholders.length; i++) {
      const view = await shareholderPolicy(c.id, i);
      expect(view.policy.allow).toHaveLength(1);
      expect(view.pending).not.toBeNull();
    }
    const pending = await cli(['connections', 'pending', '--connection', c.id, '--json']);
    expect((JSON.parse(pending.stdout) as unknown[]).length).toBe(stack.shareholders.length);
    // The host read the shareholders' logs and told the owner's webhook.
    const alert = await eventually(async () => hooks.map((h) => JSON.parse(h) as { type: string; data: Record<string, unknown> }).find((h) => h.data.problem === 'policy_widening_pending' && h.data.connectionId === c.id), 20_000);
    expect(alert.type).toBe('shareholder_anomaly');
    // (each shareholder timed its own copy of the update: the latest is what approve-release reports)
    expect(Math.abs(Date.parse(String(alert.data.effectiveAt)) - Date.parse(result.connections[0]!.pendingUntil!))).toBeLessThan(10_000);
    const cancelled = await cli(['connections', 'cancel-widening', c.id]);
    expect(cancelled.code, cancelled.stderr).toBe(0);
    for (let i = 0; i < stack.shareholders.length; i++) expect((await shareholderPolicy(c.id, i)).pending).toBeNull();
    const again = await cli(['connections', 'cancel-widening', c.id]);
    expect(again.code).toBe(1);
  });
});
