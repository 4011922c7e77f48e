/**
 * The real `securegate` bin against a running dev stack: login without ceremony, connect (key on
 * stdin, split locally), keys create, then an SDK request with the printed SG_ key.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, startTestStack } from './helpers.ts';

const bin = fileURLToPath(new URL('../../bin/securegate.mjs', import.meta.url));
let stack: Awaited<ReturnType<typeof startTestStack>>;
let configDir: string;

function cli(args: string[], stdin?: string, env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = execFile(
      process.execPath,
      [bin, ...args],
      { env: { ...process.env, SECUREGATE_DATA_DIR: stack.dataDir, SECUREGATE_URL: stack.hostUrl, SECUREGATE_CONFIG_DIR: configDir, ...env } },
      (error, stdout, stderr) => resolve({ code: error ? (error.code as number) : 0, stdout, stderr }),
    );
    child.stdin!.end(stdin ?? '');
  });
}

beforeAll(async () => {
  stack = await startTestStack();
  configDir = await mkdtemp(join(tmpdir(), 'sg-cli-'));
});
afterAll(async () => {
  await stack?.cleanup();
  await rm(configDir, { recursive: true, force: true });
});

describe('securegate CLI against the dev stack', () => {
  it('logs in to the local stack and stores credentials with 0600 permissions', async () => {
    const r = await cli(['login', '--json']);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ serverUrl: stack.hostUrl, source: 'dev stack' });
    expect((await stat(join(configDir, 'config.json'))).mode & 0o777).toBe(0o600);
  });

  it('connects a provider from stdin, creates a key, and the key works with the OpenAI SDK', async () => {
    const connect = await cli(['connect', 'openai', '--api-key-stdin', '--base-url', stack.mock!.origin, '--name', 'cli test', '--json'], `${stack.demo!.upstreamKey}\n`);
    expect(connect.code, connect.stderr).toBe(0);
    const { id } = JSON.parse(connect.stdout) as { id: string };
    expect(id).toMatch(/^conn_/);
    const created = await cli(['keys', 'create', '--connection', id, '--json']);
    expect(created.code, created.stderr).toBe(0);
    const { key } = JSON.parse(created.stdout) as { id: string; key: string };
    expect(key).toMatch(/^SG_/);
    const before = stack.mock!.requests.length;
    const client = new OpenAI({ apiKey: key, baseURL: `${stack.hostUrl}/v1`, maxRetries: 0 });
    const completion = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] });
    expect(completion.choices[0]!.message.content).toContain('mock upstream');
    expect(stack.mock!.requests[before]!.headers.authorization).toBe(`Bearer ${stack.demo!.upstreamKey}`);
    const list = await cli(['keys', 'list', '--json']);
    const keys = JSON.parse(list.stdout) as Array<Record<string, string>>;
    expect(keys.some((k) => k.connectionId === id)).toBe(true);
    expect(list.stdout.includes(key)).toBe(false);
  });

  it('manages a key\'s locks: create with options, show, kill, activate, lock, repin, bind-device, update, revoke', async () => {
    const conn = stack.demo!.connectionId;
    const created = await cli(['keys', 'create', '--connection', conn, '--models', 'gpt-4o-mini', '--inactive-expiry', '7d', '--json']);
    expect(created.code, created.stderr).toBe(0);
    const { id, key } = JSON.parse(created.stdout) as { id: string; key: string };
    const show = async () => JSON.parse((await cli(['keys', 'show', id, '--json'])).stdout) as Record<string, unknown>;
    expect(await show()).toMatchObject({ allowedModels: ['gpt-4o-mini'], inactiveExpiryMs: 604_800_000, boundIp: null, status: 'active' });
    const sdk = new OpenAI({ apiKey: key, baseURL: `${stack.hostUrl}/v1`, maxRetries: 0 });
    const ask = () => sdk.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] });
    await ask();
    expect((await show()).boundIp).toBe('127.0.0.1');
    expect((await cli(['kill', id])).code).toBe(0);
    expect(((await ask().catch((e: unknown) => e)) as { code: string }).code).toBe('key_killed');
    expect((await cli(['keys', 'activate', id])).code).toBe(0);
    await ask();
    expect((await cli(['keys', 'lock', id, '--ip', '203.0.113.9'])).code).toBe(0);
    expect(((await ask().catch((e: unknown) => e)) as { code: string }).code).toBe('ip_mismatch');
    const repin = await cli(['repin', id, '--json']);
    expect(JSON.parse(repin.stdout).boundIp).toBeNull();
    await ask();
    const fingerprint = 'ab'.repeat(32);
    expect((await cli(['keys', 'bind-device', id, '--fingerprint', fingerprint])).code).toBe(0);
    expect(((await ask().catch((e: unknown) => e)) as { code: string }).code).toBe('device_mismatch');
    const update = await cli(['keys', 'update', id, '--require-signature', '--json']);
    expect(JSON.parse(update.stdout).signingSecret).toMatch(/^[0-9a-f]{64}$/);
    expect((await cli(['keys', 'revoke', id, '--yes'])).code).toBe(0);
    expect((await show()).status).toBe('revoked');
    expect((await cli(['keys', 'activate', id])).code).toBe(1);
  });

  it('prints client snippets with the base URL and, on request, the device header', async () => {
    const r = await cli(['env', '--lang', 'node', '--json', '--device']);
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as { baseUrl: string; deviceFingerprint: string; snippets: Record<string, string> };
    expect(out.baseUrl).toBe(`${stack.hostUrl}/v1`);
    expect(out.snippets.node).toContain(out.deviceFingerprint);
    expect((await cli(['env', '--lang', 'cobol'])).code).toBe(2);
  });

  it('has --help with examples on every command', async () => {
    for (const args of [['keys', 'create'], ['keys', 'update'], ['connect'], ['kill'], ['env'], ['attest', 'verify'], ['models', 'alias']]) {
      const r = await cli([...args, '--help']);
      expect(r.code, args.join(' ')).toBe(0);
      expect(r.stdout).toContain('Usage: securegate');
    }
  });

  it('pushes a key in one step and reports its status, usage and audit trail', async () => {
    const pushed = await cli(['push', '--base-url', stack.mock!.origin, '--daily-limit', '2', '--models', 'gpt-4o', '--json'], `${stack.demo!.upstreamKey}\n`);
    expect(pushed.code, pushed.stderr).toBe(0);
    const { id, key, connectionId } = JSON.parse(pushed.stdout) as { id: string; key: string; connectionId: string };
    expect(connectionId).toMatch(/^conn_/);
    const sdk = new OpenAI({ apiKey: key, baseURL: `${stack.hostUrl}/v1`, maxRetries: 0 });
    await sdk.chat.completions.create({ model: 'gpt-4o', max_tokens: 1000, messages: [{ role: 'user', content: 'hi' }] });
    await sdk.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] }).catch(() => undefined);
    const status = await eventually(async () => {
      const s = JSON.parse((await cli(['status', id, '--json'])).stdout) as { spentToday: number; reservedNow: number; dailyLimit: number };
      return s.reservedNow === 0 && s.spentToday > 0 ? s : undefined;
    });
    expect(status).toMatchObject({ dailyLimit: 2, status: 'active', boundIp: '127.0.0.1', requestsToday: 1, topModel: { model: 'gpt-4o', share: 1 } });
    const human = await cli(['status', id]);
    expect(human.stdout).toContain('Spent today:');
    expect(human.stdout).toContain('/ $2.00');
    const usage = JSON.parse((await cli(['usage', '--key', id, '--json'])).stdout) as Array<{ model: string; requests: number }>;
    expect(usage).toEqual([expect.objectContaining({ model: 'gpt-4o', requests: 1 })]);
    const csv = (await cli(['audit', '--key', id, '--since', '1h', '--csv'])).stdout.trim().split('\n');
    expect(csv[0]).toMatch(/^at,requestId,keyId/);
    expect(csv).toHaveLength(3);
    expect(csv.some((l) => l.includes('model_not_allowed'))).toBe(true);
    const summary = JSON.parse((await cli(['status', '--json'])).stdout) as { connections: number };
    expect(summary.connections).toBeGreaterThan(1);
  });

  it('adds, lists, tests and removes alert targets', async () => {
    const added = JSON.parse((await cli(['alerts', 'add', '--webhook', 'http://127.0.0.1:9/hook', '--json'])).stdout) as { id: string; secret: string };
    expect(added.secret).toMatch(/^whsec_/);
    const list = JSON.parse((await cli(['alerts', 'list', '--json'])).stdout) as Array<{ id: string }>;
    expect(list.map((t) => t.id)).toContain(added.id);
    expect((await cli(['alerts', 'test'])).code).toBe(0);
    expect((await cli(['alerts', 'remove', added.id])).code).toBe(0);
    expect((await cli(['alerts', 'add', '--webhook', 'x', '--email', 'y'])).code).toBe(2);
  });

  it('logs out, keeping the owner key, and is logged in again by the dev stack', async () => {
    const { readFile } = await import('node:fs/promises');
    const before = JSON.parse(await readFile(join(configDir, 'config.json'), 'utf8')) as Record<string, unknown>;
    const r = await cli(['logout', '--json']);
    expect(r.code).toBe(0);
    const after = JSON.parse(await readFile(join(configDir, 'config.json'), 'utf8')) as Record<string, unknown>;
    expect(after.adminToken).toBeUndefined();
    expect(after.ownerSecretKey).toBe(before.ownerSecretKey);
    expect((await cli(['login', '--json'])).code).toBe(0);
  });

  it('operator creates an account; its owner signs up, sees the plan in status, and meets the plan\'s limits', async () => {
    const created = await cli(['accounts', 'create', 'Acme', '--plan', 'free', '--json']);
    expect(created.code, created.stderr).toBe(0);
    const { id, ownerInvite } = JSON.parse(created.stdout) as { id: string; ownerInvite: string };
    const ownerDir = await mkdtemp(join(tmpdir(), 'sg-cli-owner-'));
    const as = (args: string[], stdin?: string) => cli(args, stdin, { SECUREGATE_CONFIG_DIR: ownerDir });
    try {
      // Passwords never on argv: from stdin here (a hidden prompt on a terminal).
      const signup = await as(['signup', '--email', 'owner@acme.example', '--invite', ownerInvite, '--password-stdin', '--json'], 'a long enough password\n');
      expect(signup.code, signup.stderr).toBe(0);
      expect(JSON.parse(signup.stdout)).toMatchObject({ account: { id, plan: 'free' }, role: 'owner' });
      expect((await stat(join(ownerDir, 'config.json'))).mode & 0o777).toBe(0o600);

      const status = await as(['status', '--json']);
      expect(JSON.parse(status.stdout)).toMatchObject({ account: { id, name: 'Acme', role: 'owner' }, plan: { id: 'free', name: 'Free', limits: { connections: 2 } }, connections: 0 });
      const human = await as(['status']);
      expect(human.stdout).toContain('Plan:         Free');
      expect(human.stdout).toContain('Connections:  0 of 2');

      const connIds: string[] = [];
      for (let i = 0; i < 2; i++) {
        const c = await as(['connect', 'openai', '--api-key-stdin', '--base-url', stack.mock!.origin, '--json'], `${stack.demo!.upstreamKey}\n`);
        expect(c.code, c.stderr).toBe(0);
        connIds.push((JSON.parse(c.stdout) as { id: string }).id);
      }
      const third = await as(['connect', 'openai', '--api-key-stdin', '--base-url', stack.mock!.origin], `${stack.demo!.upstreamKey}\n`);
      expect(third.code).not.toBe(0);
      expect(third.stderr).toContain('Free plan allows at most 2 connections');
      const conn = (JSON.parse((await as(['status', '--json'])).stdout) as { connections: number }).connections;
      expect(conn).toBe(2);
      const cityKey = await as(['keys', 'create', '--connection', connIds[0]!, '--cities', 'London']);
      expect(cityKey.code).toBe(1);
      expect(cityKey.stderr).toContain('the Free plan does not include city locks');
      expect(cityKey.code).not.toBe(0);

      const invite = await as(['account', 'invite', '--json']);
      const code = (JSON.parse(invite.stdout) as { invite: string }).invite;
      expect(code).toMatch(/^sgi_/);
      // A member joins with it (in their own config) and is listed; the owner removes them.
      const memberDir = await mkdtemp(join(tmpdir(), 'sg-cli-member-'));
      try {
        const joined = await cli(['signup', '--email', 'member@acme.example', '--invite', code, '--password-stdin', '--json'], 'another long password\n', { SECUREGATE_CONFIG_DIR: memberDir });
        expect(JSON.parse(joined.stdout)).toMatchObject({ account: { id }, role: 'member' });
        const refused = await cli(['account', 'invite'], undefined, { SECUREGATE_CONFIG_DIR: memberDir });
        expect(refused.code).toBe(1);
        expect(refused.stderr).toContain('only an account owner can invite members');
      } finally {
        await rm(memberDir, { recursive: true, force: true });
      }
      const members = JSON.parse((await as(['account', 'members', '--json'])).stdout) as Array<{ userId: string; email: string; role: string }>;
      expect(members.map((m) => `${m.email}:${m.role}`).sort()).toEqual(['member@acme.example:member', 'owner@acme.example:owner']);
      const member = members.find((m) => m.role === 'member')!;
      const shownProject = (JSON.parse((await as(['account', '--json'])).stdout) as { defaultProject: string }).defaultProject;
      expect(JSON.parse((await as(['account', 'set-role', member.userId, 'owner', '--json'])).stdout)).toEqual({ userId: member.userId, role: 'owner', projects: null });
      expect((await as(['account', 'set-role', member.userId, 'member', '--projects', 'proj_nope'])).stderr).toContain('not projects of this account: proj_nope');
      const limited = JSON.parse((await as(['account', 'set-role', member.userId, 'member', '--projects', shownProject, '--json'])).stdout) as { projects: string[] };
      expect(limited.projects).toEqual([shownProject]);
      expect((await as(['account', 'set-role', member.userId, 'member', '--projects', 'all'])).code).toBe(0);
      expect((await as(['account', 'set-role', member.userId, 'admin'])).code).toBe(2);
      expect((await as(['account', 'remove-member', member.userId])).code).toBe(0);
      expect(JSON.parse((await as(['account', 'members', '--json'])).stdout)).toHaveLength(1);
      const shown = JSON.parse((await as(['account', '--json'])).stdout) as { id: string; plan: { name: string }; usage: { members: number } };
      expect(shown).toMatchObject({ id, plan: { name: 'Free' }, usage: { members: 1 } });

      const made = JSON.parse((await as(['account', 'token-create', 'ci', '--json'])).stdout) as { id: string; token: string };
      expect(made.token).toMatch(/^sga_/);
      expect((await as(['account', 'token-revoke', made.id])).code).toBe(0);
      const tokens = JSON.parse((await as(['account', 'tokens', '--json'])).stdout) as Array<{ id: string; name: string; revokedAt: number | null }>;
      expect(tokens.filter((t) => t.revokedAt === null)).toHaveLength(1);
      expect(tokens.find((t) => t.id === made.id)!.revokedAt).not.toBeNull();
      const listed = JSON.parse((await cli(['accounts', 'list', '--json'])).stdout) as Array<{ id: string; plan: string; usage: { connections: number } }>;
      expect(listed.find((a) => a.id === id)).toMatchObject({ plan: 'free', usage: { connections: 2 } });
      expect((await as(['accounts', 'list'])).stderr).toContain('only the server operator can list accounts');
      // Logging in again with the password issues a fresh token.
      const again = await as(['login', '--email', 'owner@acme.example', '--password-stdin', '--json'], 'a long enough password\n');
      expect(again.code, again.stderr).toBe(0);
      expect((JSON.parse((await as(['account', 'tokens', '--json'])).stdout) as Array<{ revokedAt: number | null }>).filter((t) => t.revokedAt === null)).toHaveLength(2);
      const wrong = await as(['login', '--email', 'owner@acme.example', '--password-stdin'], 'not it\n');
      expect(wrong.code).toBe(1);
      expect(wrong.stderr).toContain('email or password is wrong');

      const upgraded = await cli(['accounts', 'set-plan', id, 'pro', '--json']);
      expect(JSON.parse(upgraded.stdout).plan.name).toBe('Pro');
      expect((await as(['status'])).stdout).toContain('Connections:  2 of unlimited');
    } finally {
      await rm(ownerDir, { recursive: true, force: true });
    }
    // ~35 CLI runs: minutes, not seconds, on a loaded 2-core machine.
  }, 180_000);

  it('sets a project\'s auto-lock default; status shows what a key bound and when', async () => {
    const set = await cli(['projects', 'set', 'proj_default', '--auto-lock', 'ip,device', '--json']);
    expect(set.code, set.stderr).toBe(0);
    expect(JSON.parse(set.stdout)).toMatchObject({ id: 'proj_default', defaultAutoLock: ['ip', 'device'] });
    try {
      const created = JSON.parse((await cli(['keys', 'create', '--connection', stack.demo!.connectionId, '--json'])).stdout) as { id: string; key: string };
      expect((JSON.parse((await cli(['keys', 'show', created.id, '--json'])).stdout) as { autoLock: string[] }).autoLock).toEqual(['ip', 'device']);
      const before = await cli(['status', created.id]);
      expect(before.stdout).toContain('Device:        not yet (binds on first use)');
      const client = new OpenAI({ apiKey: created.key, baseURL: `${stack.hostUrl}/v1`, maxRetries: 0, defaultHeaders: { 'x-device-fingerprint': 'd'.repeat(64) } });
      await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] });
      const after = await cli(['status', created.id]);
      expect(after.stdout).toMatch(/Pinned IP: +127\.0\.0\.1 since 20\d\d-/);
      expect(after.stdout).toMatch(/Device: +bound since 20\d\d-/);
    } finally {
      expect((await cli(['projects', 'set', 'proj_default', '--auto-lock', 'none'])).code).toBe(0);
    }
    const list = JSON.parse((await cli(['projects', 'list', '--json'])).stdout) as Array<{ id: string; defaultAutoLock: string[] | null }>;
    expect(list.find((p) => p.id === 'proj_default')!.defaultAutoLock).toBeNull();
    expect((await cli(['projects', 'set', 'proj_default'])).code).toBe(2);
  }, 120_000);

  it('refuses a plain-http base URL that is not loopback', async () => {
    const r = await cli(['connect', 'openai', '--api-key-stdin', '--base-url', 'http://example.com', '--json'], 'sk-x\n');
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('https');
  });

  it('refuses an empty key and an unknown provider', async () => {
    expect((await cli(['connect', 'openai', '--api-key-stdin'], '\n')).code).toBe(2);
    expect((await cli(['connect', 'nosuch', '--api-key-stdin'], 'k\n')).code).toBe(2);
  });

  it('fails with a clear message when a pinned shareholder presents another key', async () => {
    const { writeFile, readFile } = await import('node:fs/promises');
    const path = join(configDir, 'config.json');
    const config = JSON.parse(await readFile(path, 'utf8'));
    const pins = stack.shareholders.map(({ id, url, publicKey }) => ({ id, url, publicKey }));
    pins[1]!.publicKey = '11'.repeat(32);
    await writeFile(path, JSON.stringify({ ...config, shareholders: pins }), { mode: 0o600 });
    const r = await cli(['connect', 'openai', '--api-key-stdin', '--base-url', stack.mock!.origin], 'sk-x\n');
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('sh-2');
    expect(r.stderr).toContain('Refusing to enroll');
  });
});
