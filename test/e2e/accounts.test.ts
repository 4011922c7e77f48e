/**
 * Accounts and plans through the real HTTP API on both storage engines: sign-up (invite-only and
 * open), passwords, sessions with CSRF, per-account admin tokens, roles, isolation between
 * accounts, plan limits and features (403 plan_limit / plan_feature naming the plan), upgrades
 * and the downgrade rule. The admin API needs no enclave, so the host runs in-process here; the
 * last suite runs the whole stack to show a downgraded account's connections keep serving.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import OpenAI from 'openai';
import { Pool } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildHostApp, sha256Hex } from '../../host/app.ts';
import { HostStore } from '../../host/store.ts';
import { openPostgres, openSqlite } from '../../storage/db.ts';
import { dropSchema, skipPostgres, TEST_DATABASE_URL, uniqueSchema } from '../pg.ts';
import { enrollConnection, startTestStack } from './helpers.ts';

const OPERATOR = `sgadm_${randomBytes(16).toString('hex')}`;
const PASSWORD = 'correct horse battery staple';

interface Host {
  url: string;
  app: FastifyInstance;
  store: HostStore;
}

async function startHost(store: HostStore, signup: 'open' | 'invite' = 'invite'): Promise<Host> {
  const app = await buildHostApp({
    store,
    enclave: new Pool('http://127.0.0.1:9'),
    pepper: new Uint8Array(randomBytes(32)),
    adminTokenHash: sha256Hex(OPERATOR),
    dev: true,
    signup,
  });
  const address = await app.listen({ port: 0, host: '127.0.0.1' });
  return { url: address, app, store };
}

interface Res<T> {
  status: number;
  json: T;
  headers: Headers;
}

async function call<T = Record<string, unknown>>(host: Host, method: string, path: string, options: { token?: string; body?: unknown; cookie?: string; csrf?: string } = {}): Promise<Res<T>> {
  const headers: Record<string, string> = {};
  if (options.token) headers.authorization = `Bearer ${options.token}`;
  if (options.cookie) headers.cookie = options.cookie;
  if (options.csrf) headers['x-csrf-token'] = options.csrf;
  if (options.body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(`${host.url}${path}`, { method, headers, ...(options.body !== undefined ? { body: JSON.stringify(options.body) } : {}) });
  return { status: res.status, json: (await res.json()) as T, headers: res.headers };
}

type ErrorJson = { error: { code: string; message: string } };

const connectionBody = (provider = 'openai') => ({
  id: `conn_${randomBytes(10).toString('hex')}`,
  provider,
  origin: 'http://127.0.0.1:9',
  authScheme: 'bearer',
  sealedRecord: randomBytes(80).toString('base64'),
  threshold: 3,
  shareholders: ['sh1', 'sh2', 'sh3', 'sh4', 'sh5'],
  ...(provider === 'any' ? { allow: JSON.stringify(['POST /v1/things']) } : {}),
});

/** Operator creates an account; its first owner signs up with the invite and takes a CLI token. */
async function newAccount(host: Host, plan: string): Promise<{ accountId: string; token: string; email: string; project: string }> {
  const created = await call<{ id: string; ownerInvite: string; defaultProject: string }>(host, 'POST', '/admin/v1/accounts', { token: OPERATOR, body: { name: `acct ${plan}`, plan } });
  expect(created.status).toBe(201);
  const email = `owner-${randomBytes(4).toString('hex')}@example.com`;
  const signup = await call(host, 'POST', '/auth/v1/signup', { body: { email, password: PASSWORD, invite: created.json.ownerInvite } });
  expect(signup.status).toBe(201);
  const token = await call<{ token: string; accountId: string }>(host, 'POST', '/auth/v1/token', { body: { email, password: PASSWORD } });
  expect(token.status).toBe(201);
  expect(token.json.accountId).toBe(created.json.id);
  return { accountId: created.json.id, token: token.json.token, email, project: created.json.defaultProject };
}

const engines = [
  {
    name: 'sqlite',
    skip: false,
    async open() {
      const dir = await mkdtemp(join(tmpdir(), 'sg-accounts-'));
      return { store: new HostStore(openSqlite(join(dir, 'host.sqlite'))), cleanup: () => rm(dir, { recursive: true, force: true }) };
    },
  },
  {
    name: 'postgres',
    skip: skipPostgres,
    async open() {
      const schema = uniqueSchema('sg_accounts');
      return { store: new HostStore(openPostgres({ connectionString: TEST_DATABASE_URL, schema })), cleanup: () => dropSchema(schema) };
    },
  },
];

for (const engine of engines) {
  describe.skipIf(engine.skip)(`accounts and plans (${engine.name})`, () => {
    let host: Host;
    let cleanup: () => Promise<void>;

    beforeAll(async () => {
      const opened = await engine.open();
      cleanup = opened.cleanup;
      await opened.store.migrate();
      host = await startHost(opened.store);
    });
    afterAll(async () => {
      await host?.app.close();
      await host?.store.close();
      await cleanup?.();
    });

    it('signs up only by invite on an invite-only server, and invites work once', async () => {
      const refused = await call<ErrorJson>(host, 'POST', '/auth/v1/signup', { body: { email: 'walk-in@example.com', password: PASSWORD } });
      expect(refused.status).toBe(403);
      expect(refused.json.error.code).toBe('signup_closed');
      const created = await call<{ ownerInvite: string }>(host, 'POST', '/admin/v1/accounts', { token: OPERATOR, body: { name: 'Acme' } });
      const first = await call(host, 'POST', '/auth/v1/signup', { body: { email: 'a@acme.example', password: PASSWORD, invite: created.json.ownerInvite } });
      expect(first.status).toBe(201);
      const again = await call<ErrorJson>(host, 'POST', '/auth/v1/signup', { body: { email: 'b@acme.example', password: PASSWORD, invite: created.json.ownerInvite } });
      expect(again.status).toBe(403);
      // Short passwords are refused before anything is stored.
      const weak = await call<ErrorJson>(host, 'POST', '/auth/v1/signup', { body: { email: 'c@acme.example', password: 'short', invite: created.json.ownerInvite } });
      expect(weak.status).toBe(400);
      // Only the operator creates accounts.
      const acct = await newAccount(host, 'free');
      expect((await call<ErrorJson>(host, 'POST', '/admin/v1/accounts', { token: acct.token, body: { name: 'mine' } })).json.error.code).toBe('forbidden');
    });

    it('lets an existing user join a second account with an invite and their password, spending the invite only then', async () => {
      const first = await newAccount(host, 'free');
      const second = await newAccount(host, 'pro');
      const invite = (await call<{ invite: string }>(host, 'POST', '/admin/v1/invites', { token: second.token, body: { role: 'member' } })).json.invite;
      const wrong = await call<ErrorJson>(host, 'POST', '/auth/v1/signup', { body: { email: first.email, password: 'not the password at all', invite } });
      expect(wrong.status).toBe(401);
      const joined = await call<{ account: { id: string }; role: string }>(host, 'POST', '/auth/v1/signup', { body: { email: first.email, password: PASSWORD, invite } });
      expect(joined.status).toBe(201);
      expect(joined.json).toMatchObject({ account: { id: second.accountId }, role: 'member' });
      // One user, two accounts: a token for each, each seeing only its own account.
      const t1 = await call<{ accountId: string }>(host, 'POST', '/auth/v1/token', { body: { email: first.email, password: PASSWORD, accountId: first.accountId } });
      const t2 = await call<{ accountId: string; role: string }>(host, 'POST', '/auth/v1/token', { body: { email: first.email, password: PASSWORD, accountId: second.accountId } });
      expect(t1.json.accountId).toBe(first.accountId);
      expect(t2.json).toMatchObject({ accountId: second.accountId, role: 'member' });
      // The invite is spent now.
      expect((await call<ErrorJson>(host, 'POST', '/auth/v1/signup', { body: { email: 'late@example.com', password: PASSWORD, invite } })).status).toBe(403);
    });

    it('stores passwords as scrypt hashes and refuses wrong ones', async () => {
      const acct = await newAccount(host, 'free');
      const [row] = await host.store.db.query('SELECT password_hash FROM users WHERE email = $1', [acct.email]);
      expect(String(row!.password_hash)).toMatch(/^scrypt\$32768\$8\$1\$/);
      expect(String(row!.password_hash)).not.toContain(PASSWORD);
      const wrong = await call<ErrorJson>(host, 'POST', '/auth/v1/login', { body: { email: acct.email, password: 'not the password' } });
      expect(wrong.status).toBe(401);
      const unknown = await call<ErrorJson>(host, 'POST', '/auth/v1/login', { body: { email: 'nobody@example.com', password: PASSWORD } });
      expect(unknown.status).toBe(401);
      expect(unknown.json.error.message).toBe(wrong.json.error.message);
      // Admin tokens are stored hashed: the token itself is nowhere in the database.
      const tokens = await host.store.db.query('SELECT hash FROM admin_tokens');
      expect(tokens.some((t) => t.hash === sha256Hex(acct.token))).toBe(true);
      expect(JSON.stringify(tokens)).not.toContain(acct.token);
    });

    it('shows the account, its plan, limits and usage', async () => {
      const acct = await newAccount(host, 'free');
      const view = await call<{ plan: { id: string; name: string; limits: { connections: number }; features: string[] }; usage: { connections: number }; role: string }>(host, 'GET', '/admin/v1/account', { token: acct.token });
      expect(view.status).toBe(200);
      expect(view.json.plan).toMatchObject({ id: 'free', name: 'Free', limits: { connections: 2 }, features: ['ip_lock'] });
      expect(view.json.usage.connections).toBe(0);
      expect(view.json.role).toBe('owner');
    });

    it('Free: at most two connections, then 403 plan_limit naming the plan; exactly two fit under concurrency', async () => {
      const acct = await newAccount(host, 'free');
      const results = await Promise.all(Array.from({ length: 6 }, () => call<ErrorJson>(host, 'POST', '/admin/v1/connections', { token: acct.token, body: connectionBody() })));
      expect(results.filter((r) => r.status === 201)).toHaveLength(2);
      const refused = results.filter((r) => r.status !== 201);
      expect(refused).toHaveLength(4);
      for (const r of refused) {
        expect(r.status).toBe(403);
        expect(r.json.error.code).toBe('plan_limit');
        expect(r.json.error.message).toMatch(/Free plan allows at most 2 connections.*Upgrade to Pro or Enterprise/);
      }
      const listed = await call<unknown[]>(host, 'GET', '/admin/v1/connections', { token: acct.token });
      expect(listed.json).toHaveLength(2);
    });

    it('Free: IP locks only — city and device locks are 403 plan_feature naming the plan that has them', async () => {
      const acct = await newAccount(host, 'free');
      const conn = await call<{ id: string }>(host, 'POST', '/admin/v1/connections', { token: acct.token, body: connectionBody() });
      const city = await call<ErrorJson>(host, 'POST', '/admin/v1/keys', { token: acct.token, body: { connectionId: conn.json.id, cities: ['London'] } });
      expect(city.status).toBe(403);
      expect(city.json.error).toMatchObject({ code: 'plan_feature', message: 'the Free plan does not include city locks; the Pro or Enterprise plan does' });
      const autoDevice = await call<ErrorJson>(host, 'POST', '/admin/v1/keys', { token: acct.token, body: { connectionId: conn.json.id, autoLock: ['ip', 'device'] } });
      expect(autoDevice.json.error.code).toBe('plan_feature');
      expect((await call<unknown[]>(host, 'GET', '/admin/v1/keys', { token: acct.token })).json).toHaveLength(0);

      const key = await call<{ id: string }>(host, 'POST', '/admin/v1/keys', { token: acct.token, body: { connectionId: conn.json.id, models: ['gpt-4o-mini'], dailyLimit: 5 } });
      expect(key.status).toBe(201);
      const device = await call<ErrorJson>(host, 'POST', `/admin/v1/keys/${key.json.id}/device`, { token: acct.token, body: { fingerprint: 'f'.repeat(32) } });
      expect(device.json.error.code).toBe('plan_feature');
      const patchCity = await call<ErrorJson>(host, 'PATCH', `/admin/v1/keys/${key.json.id}`, { token: acct.token, body: { cities: ['Paris'] } });
      expect(patchCity.json.error.code).toBe('plan_feature');
      const ip = await call<{ boundIp: string }>(host, 'POST', `/admin/v1/keys/${key.json.id}/lock`, { token: acct.token, body: { ip: '203.0.113.7' } });
      expect(ip.status).toBe(200);
      expect(ip.json.boundIp).toBe('203.0.113.7');
      const after = await call<{ allowedCities: string[]; deviceBound: boolean }>(host, 'GET', `/admin/v1/keys/${key.json.id}`, { token: acct.token });
      expect(after.json).toMatchObject({ allowedCities: [], deviceBound: false });
    });

    it('any-API connections need Enterprise', async () => {
      const pro = await newAccount(host, 'pro');
      const refused = await call<ErrorJson>(host, 'POST', '/admin/v1/connections', { token: pro.token, body: connectionBody('any') });
      expect(refused.status).toBe(403);
      expect(refused.json.error).toMatchObject({ code: 'plan_feature', message: 'the Pro plan does not include any-API connections; the Enterprise plan does' });
      const ent = await newAccount(host, 'enterprise');
      expect((await call(host, 'POST', '/admin/v1/connections', { token: ent.token, body: connectionBody('any') })).status).toBe(201);
    });

    it('upgrade opens features; downgrade keeps everything but refuses new use', async () => {
      const acct = await newAccount(host, 'pro');
      const conns = [];
      for (let i = 0; i < 3; i++) conns.push((await call<{ id: string }>(host, 'POST', '/admin/v1/connections', { token: acct.token, body: connectionBody() })).json.id);
      const key = await call<{ id: string; allowedCities: string[] }>(host, 'POST', '/admin/v1/keys', { token: acct.token, body: { connectionId: conns[0], cities: ['London'], autoLock: ['ip', 'device'] } });
      expect(key.status).toBe(201);

      const down = await call<{ plan: { id: string }; usage: { connections: number } }>(host, 'PATCH', `/admin/v1/accounts/${acct.accountId}`, { token: OPERATOR, body: { plan: 'free' } });
      expect(down.json.plan.id).toBe('free');
      expect(down.json.usage.connections).toBe(3);
      // Nothing deleted or loosened: three connections, the key keeps its city and auto-locks.
      expect((await call<unknown[]>(host, 'GET', '/admin/v1/connections', { token: acct.token })).json).toHaveLength(3);
      const kept = await call<{ allowedCities: string[]; autoLock: string[] }>(host, 'GET', `/admin/v1/keys/${key.json.id}`, { token: acct.token });
      expect(kept.json).toMatchObject({ allowedCities: ['London'], autoLock: ['ip', 'device'] });
      // New use is refused: a fourth connection, a different city; clearing the lock is allowed.
      expect((await call<ErrorJson>(host, 'POST', '/admin/v1/connections', { token: acct.token, body: connectionBody() })).json.error.code).toBe('plan_limit');
      expect((await call<ErrorJson>(host, 'PATCH', `/admin/v1/keys/${key.json.id}`, { token: acct.token, body: { cities: ['Paris'] } })).json.error.code).toBe('plan_feature');
      const cleared = await call<{ allowedCities: string[] }>(host, 'PATCH', `/admin/v1/keys/${key.json.id}`, { token: acct.token, body: { cities: [] } });
      expect(cleared.status).toBe(200);
      expect(cleared.json.allowedCities).toEqual([]);
      // Other edits to the key still work (its kept device auto-lock is not "new use").
      expect((await call(host, 'PATCH', `/admin/v1/keys/${key.json.id}`, { token: acct.token, body: { dailyLimit: 3 } })).status).toBe(200);

      // Only the operator changes plans, and only to configured ones.
      expect((await call<ErrorJson>(host, 'PATCH', `/admin/v1/accounts/${acct.accountId}`, { token: acct.token, body: { plan: 'enterprise' } })).json.error.code).toBe('forbidden');
      expect((await call<ErrorJson>(host, 'PATCH', `/admin/v1/accounts/${acct.accountId}`, { token: OPERATOR, body: { plan: 'platinum' } })).status).toBe(400);
      await call(host, 'PATCH', `/admin/v1/accounts/${acct.accountId}`, { token: OPERATOR, body: { plan: 'pro' } });
      expect((await call(host, 'POST', '/admin/v1/connections', { token: acct.token, body: connectionBody() })).status).toBe(201);
    });

    it('keeps accounts apart: another account sees none of it, and cannot touch it', async () => {
      const a = await newAccount(host, 'pro');
      const b = await newAccount(host, 'pro');
      const conn = await call<{ id: string }>(host, 'POST', '/admin/v1/connections', { token: a.token, body: connectionBody() });
      const key = await call<{ id: string }>(host, 'POST', '/admin/v1/keys', { token: a.token, body: { connectionId: conn.json.id } });
      await call(host, 'POST', '/admin/v1/alerts', { token: a.token, body: { kind: 'webhook', target: 'https://hooks.example.com/a' } });

      expect((await call<unknown[]>(host, 'GET', '/admin/v1/connections', { token: b.token })).json).toEqual([]);
      expect((await call<unknown[]>(host, 'GET', '/admin/v1/keys', { token: b.token })).json).toEqual([]);
      expect((await call<unknown[]>(host, 'GET', '/admin/v1/alerts', { token: b.token })).json).toEqual([]);
      expect((await call<Array<{ id: string }>>(host, 'GET', '/admin/v1/projects', { token: b.token })).json.map((p) => p.id)).toEqual([b.project]);
      for (const [method, path, body] of [
        ['GET', `/admin/v1/keys/${key.json.id}`, undefined],
        ['POST', `/admin/v1/keys/${key.json.id}/kill`, undefined],
        ['PATCH', `/admin/v1/keys/${key.json.id}`, { dailyLimit: 0 }],
        ['POST', '/admin/v1/keys', { connectionId: conn.json.id }],
        ['POST', '/admin/v1/connections', { ...connectionBody(), projectId: a.project }],
        ['PUT', `/admin/v1/projects/${a.project}/aliases/fast`, { target: 'gpt-4o-mini' }],
      ] as const) {
        const r = await call<ErrorJson>(host, method, path, { token: b.token, ...(body ? { body } : {}) });
        expect(r.status, `${method} ${path}`).toBe(404);
      }
      const still = await call<{ status: string; dailyLimit: number | null }>(host, 'GET', `/admin/v1/keys/${key.json.id}`, { token: a.token });
      expect(still.json).toMatchObject({ status: 'active', dailyLimit: null });
      // A project id taken by another account cannot be claimed.
      expect((await call<ErrorJson>(host, 'POST', '/admin/v1/projects', { token: b.token, body: { id: a.project, name: 'mine' } })).status).toBe(409);
      // The operator sees both.
      const all = await call<Array<{ id: string }>>(host, 'GET', '/admin/v1/keys', { token: OPERATOR });
      expect(all.json.some((k) => k.id === key.json.id)).toBe(true);
    });

    it('members manage keys but not connections, tokens or members', async () => {
      const acct = await newAccount(host, 'pro');
      const invite = await call<{ invite: string }>(host, 'POST', '/admin/v1/invites', { token: acct.token, body: { role: 'member' } });
      expect(invite.status).toBe(201);
      await call(host, 'POST', '/auth/v1/signup', { body: { email: 'member@example.com'.replace('member', `m${randomBytes(3).toString('hex')}`), password: PASSWORD, invite: invite.json.invite } });
      const members = await call<Array<{ email: string; role: string; userId: string }>>(host, 'GET', '/admin/v1/members', { token: acct.token });
      const member = members.json.find((m) => m.role === 'member')!;
      const memberToken = await call<{ token: string; role: string }>(host, 'POST', '/auth/v1/token', { body: { email: member.email, password: PASSWORD } });
      expect(memberToken.json.role).toBe('member');
      const t = memberToken.json.token;
      const conn = await call<{ id: string }>(host, 'POST', '/admin/v1/connections', { token: acct.token, body: connectionBody() });
      expect((await call<ErrorJson>(host, 'POST', '/admin/v1/connections', { token: t, body: connectionBody() })).json.error.code).toBe('forbidden');
      expect((await call<ErrorJson>(host, 'POST', '/admin/v1/tokens', { token: t, body: { name: 'x' } })).json.error.code).toBe('forbidden');
      expect((await call<ErrorJson>(host, 'DELETE', `/admin/v1/members/${member.userId}`, { token: t })).json.error.code).toBe('forbidden');
      const key = await call<{ id: string }>(host, 'POST', '/admin/v1/keys', { token: t, body: { connectionId: conn.json.id } });
      expect(key.status).toBe(201);
      expect((await call(host, 'POST', `/admin/v1/keys/${key.json.id}/kill`, { token: t })).status).toBe(200);
      // The last owner cannot be removed; the member can.
      const owner = members.json.find((m) => m.role === 'owner')!;
      expect((await call<ErrorJson>(host, 'DELETE', `/admin/v1/members/${owner.userId}`, { token: acct.token })).status).toBe(409);
      expect((await call(host, 'DELETE', `/admin/v1/members/${member.userId}`, { token: acct.token })).status).toBe(200);
      // Their CLI token ended with the membership.
      expect((await call(host, 'GET', '/admin/v1/keys', { token: t })).status).toBe(401);
    });

    it('a member\'s token acts with their current role: promotion and demotion take effect at once', async () => {
      const acct = await newAccount(host, 'pro');
      const invite = await call<{ invite: string }>(host, 'POST', '/admin/v1/invites', { token: acct.token, body: { role: 'member' } });
      const email = `m${randomBytes(3).toString('hex')}@example.com`;
      const joined = await call<{ userId: string }>(host, 'POST', '/auth/v1/signup', { body: { email, password: PASSWORD, invite: invite.json.invite } });
      const t = (await call<{ token: string }>(host, 'POST', '/auth/v1/token', { body: { email, password: PASSWORD } })).json.token;
      expect((await call<ErrorJson>(host, 'POST', '/admin/v1/connections', { token: t, body: connectionBody() })).json.error.code).toBe('forbidden');
      expect((await call<ErrorJson>(host, 'PATCH', `/admin/v1/members/${joined.json.userId}`, { token: t, body: { role: 'owner' } })).json.error.code).toBe('forbidden');
      expect((await call(host, 'PATCH', `/admin/v1/members/${joined.json.userId}`, { token: acct.token, body: { role: 'owner' } })).status).toBe(200);
      expect((await call(host, 'POST', '/admin/v1/connections', { token: t, body: connectionBody() })).status).toBe(201);
      await call(host, 'PATCH', `/admin/v1/members/${joined.json.userId}`, { token: acct.token, body: { role: 'member' } });
      expect((await call<ErrorJson>(host, 'POST', '/admin/v1/connections', { token: t, body: connectionBody() })).json.error.code).toBe('forbidden');
    });

    it('members can be limited to projects: they see and change only those', async () => {
      const acct = await newAccount(host, 'pro');
      const other = `proj_${randomBytes(5).toString('hex')}`;
      expect((await call(host, 'POST', '/admin/v1/projects', { token: acct.token, body: { id: other, name: 'Team B' } })).status).toBe(201);
      const mainConn = await call<{ id: string }>(host, 'POST', '/admin/v1/connections', { token: acct.token, body: connectionBody() });
      const otherConn = await call<{ id: string }>(host, 'POST', '/admin/v1/connections', { token: acct.token, body: { ...connectionBody(), projectId: other } });
      const mainKey = await call<{ id: string }>(host, 'POST', '/admin/v1/keys', { token: acct.token, body: { connectionId: mainConn.json.id } });
      // A project of another account cannot be granted.
      const foreign = await newAccount(host, 'free');
      expect((await call<ErrorJson>(host, 'POST', '/admin/v1/invites', { token: acct.token, body: { role: 'member', projects: [foreign.project] } })).status).toBe(400);
      const invite = await call<{ invite: string; projects: string[] }>(host, 'POST', '/admin/v1/invites', { token: acct.token, body: { role: 'member', projects: [other] } });
      expect(invite.json.projects).toEqual([other]);
      const email = `scoped-${randomBytes(3).toString('hex')}@example.com`;
      const joined = await call<{ userId: string }>(host, 'POST', '/auth/v1/signup', { body: { email, password: PASSWORD, invite: invite.json.invite } });
      const t = (await call<{ token: string }>(host, 'POST', '/auth/v1/token', { body: { email, password: PASSWORD } })).json.token;

      expect((await call<Array<{ id: string }>>(host, 'GET', '/admin/v1/projects', { token: t })).json.map((p) => p.id)).toEqual([other]);
      expect((await call<Array<{ id: string }>>(host, 'GET', '/admin/v1/connections', { token: t })).json.map((c) => c.id)).toEqual([otherConn.json.id]);
      expect((await call<unknown[]>(host, 'GET', '/admin/v1/keys', { token: t })).json).toEqual([]);
      expect((await call(host, 'POST', `/admin/v1/keys/${mainKey.json.id}/kill`, { token: t })).status).toBe(404);
      expect((await call(host, 'POST', '/admin/v1/keys', { token: t, body: { connectionId: mainConn.json.id } })).status).toBe(404);
      expect((await call(host, 'POST', '/admin/v1/keys', { token: t, body: { connectionId: otherConn.json.id } })).status).toBe(201);
      expect((await call<{ projects: string[] }>(host, 'GET', '/admin/v1/account', { token: t })).json.projects).toEqual([other]);
      // Widening the member's scope takes effect on their existing token.
      expect((await call(host, 'PATCH', `/admin/v1/members/${joined.json.userId}`, { token: acct.token, body: { projects: null } })).status).toBe(200);
      expect((await call(host, 'POST', `/admin/v1/keys/${mainKey.json.id}/kill`, { token: t })).status).toBe(200);
      // Owners are never limited.
      expect((await call<ErrorJson>(host, 'PATCH', `/admin/v1/members/${joined.json.userId}`, { token: acct.token, body: { role: 'owner', projects: [other] } })).status).toBe(400);
    });

    it('admin tokens are shown once and stop working when revoked', async () => {
      const acct = await newAccount(host, 'free');
      const created = await call<{ id: string; token: string }>(host, 'POST', '/admin/v1/tokens', { token: acct.token, body: { name: 'ci' } });
      expect(created.json.token).toMatch(/^sga_/);
      const listed = await call<Array<Record<string, unknown>>>(host, 'GET', '/admin/v1/tokens', { token: acct.token });
      expect(JSON.stringify(listed.json)).not.toContain(created.json.token);
      expect((await call(host, 'GET', '/admin/v1/account', { token: created.json.token })).status).toBe(200);
      expect((await call(host, 'DELETE', `/admin/v1/tokens/${created.json.id}`, { token: acct.token })).status).toBe(200);
      expect((await call<ErrorJson>(host, 'GET', '/admin/v1/account', { token: created.json.token })).status).toBe(401);
    });

    it('dashboard sessions: HttpOnly SameSite cookie, writes need the CSRF token, logout ends it', async () => {
      const acct = await newAccount(host, 'free');
      const login = await call<{ csrfToken: string; account: { id: string } }>(host, 'POST', '/auth/v1/login', { body: { email: acct.email, password: PASSWORD } });
      expect(login.status).toBe(200);
      const setCookie = login.headers.get('set-cookie')!;
      expect(setCookie).toMatch(/^sg_session=[A-Za-z0-9_-]{40,};/);
      expect(setCookie).toContain('HttpOnly');
      expect(setCookie).toContain('SameSite=Strict');
      const cookie = setCookie.split(';')[0]!;
      expect((await call(host, 'GET', '/admin/v1/account', { cookie })).status).toBe(200);
      const forged = await call<ErrorJson>(host, 'POST', '/admin/v1/connections', { cookie, body: connectionBody() });
      expect(forged.status).toBe(403);
      expect(forged.json.error.code).toBe('csrf_failed');
      const wrong = await call<ErrorJson>(host, 'POST', '/admin/v1/connections', { cookie, csrf: 'x'.repeat(32), body: connectionBody() });
      expect(wrong.json.error.code).toBe('csrf_failed');
      expect((await call<unknown[]>(host, 'GET', '/admin/v1/connections', { cookie })).json).toHaveLength(0);
      expect((await call(host, 'POST', '/admin/v1/connections', { cookie, csrf: login.json.csrfToken, body: connectionBody() })).status).toBe(201);
      const session = await call<{ csrfToken: string }>(host, 'GET', '/auth/v1/session', { cookie });
      expect(session.json.csrfToken).toBe(login.json.csrfToken);
      await call(host, 'POST', '/auth/v1/logout', { cookie });
      expect((await call(host, 'GET', '/admin/v1/account', { cookie })).status).toBe(401);
    });

    it('throttles password guessing', async () => {
      const acct = await newAccount(host, 'free');
      for (let i = 0; i < 10; i++) expect((await call(host, 'POST', '/auth/v1/login', { body: { email: acct.email, password: `guess ${i}` } })).status).toBe(401);
      const limited = await call<ErrorJson>(host, 'POST', '/auth/v1/login', { body: { email: acct.email, password: PASSWORD } });
      expect(limited.status).toBe(429);
      expect(limited.json.error.code).toBe('too_many_attempts');
    });

    it('open sign-up creates an account on the sign-up plan', async () => {
      const open = await startHost(host.store, 'open');
      try {
        const email = `walk-in-${randomBytes(3).toString('hex')}@example.com`;
        const r = await call<{ account: { plan: string }; role: string }>(open, 'POST', '/auth/v1/signup', { body: { email, password: PASSWORD, accountName: 'Walk-in' } });
        expect(r.status).toBe(201);
        expect(r.json).toMatchObject({ account: { plan: 'free' }, role: 'owner' });
        expect((await call<ErrorJson>(open, 'POST', '/auth/v1/signup', { body: { email, password: PASSWORD } })).status).toBe(409);
      } finally {
        await open.app.close();
      }
    });
  });
}

describe('a downgraded account keeps serving through the gateway', () => {
  let stack: Awaited<ReturnType<typeof startTestStack>>;
  beforeAll(async () => {
    stack = await startTestStack();
  });
  afterAll(async () => {
    await stack?.cleanup();
  });

  it('serves all three connections after Pro → Free and refuses a fourth', async () => {
    const host: Host = { url: stack.hostUrl, app: undefined as unknown as FastifyInstance, store: undefined as unknown as HostStore };
    const operator = stack.adminToken;
    const created = await call<{ id: string; ownerInvite: string; defaultProject: string }>(host, 'POST', '/admin/v1/accounts', { token: operator, body: { name: 'Pro Co', plan: 'pro' } });
    const email = 'owner@pro.example';
    await call(host, 'POST', '/auth/v1/signup', { body: { email, password: PASSWORD, invite: created.json.ownerInvite } });
    const token = (await call<{ token: string }>(host, 'POST', '/auth/v1/token', { body: { email, password: PASSWORD } })).json.token;
    const conns = [];
    for (let i = 0; i < 3; i++) conns.push(await enrollConnection(stack, { upstreamKey: stack.demo!.upstreamKey, adminToken: token }));
    await call(host, 'PATCH', `/admin/v1/accounts/${created.json.id}`, { token: operator, body: { plan: 'free' } });
    for (const c of conns) {
      const client = new OpenAI({ apiKey: c.key, baseURL: `${stack.hostUrl}/v1`, maxRetries: 0 });
      const r = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] });
      expect(r.choices[0]!.message.content).toBeTruthy();
    }
    await expect(enrollConnection(stack, { upstreamKey: stack.demo!.upstreamKey, adminToken: token })).rejects.toThrow(/plan_limit/);
  });
});
