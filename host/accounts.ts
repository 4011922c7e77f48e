/**
 * Accounts: owners and members, passwords (scrypt), admin API tokens per account (stored as
 * SHA-256, shown once, revocable), dashboard sessions (HttpOnly SameSite=Strict cookie plus a
 * CSRF token that cookie-authenticated writes must echo), and invites. Sign-up is open or
 * invite-only (operator setting). Projects belong to accounts; everything else (connections,
 * keys, alerts, audit) belongs to a project, so an account sees exactly its projects' rows.
 */
import { randomBytes, scrypt, timingSafeEqual, type ScryptOptions } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { HostError } from './errors.ts';
import type { PlanBook } from './plans.ts';
import { sha256Hex } from './keys.ts';
import type { HostStore } from './store.ts';

export const DEFAULT_ACCOUNT = 'acct_default';
export const SESSION_COOKIE = 'sg_session';
export const ROLES = ['owner', 'member'] as const;
export type Role = (typeof ROLES)[number];

/** Who is calling the admin API. The operator (the data directory's admin token) sees every account. */
export type Principal =
  | { kind: 'operator' }
  | { kind: 'account'; accountId: string; role: Role; userId: string | null; via: 'token' | 'session'; projects: string[] | null };

export interface Account {
  id: string;
  name: string;
  plan: string;
  defaultProject: string;
  createdAt: number;
}

const SCRYPT: ScryptOptions = { N: 1 << 15, r: 8, p: 1, maxmem: 64 * 1024 * 1024 };
const SESSION_TTL_MS = 12 * 3_600_000;
const INVITE_TTL_MS = 7 * 86_400_000;

function scryptAsync(password: string, salt: Buffer, options: ScryptOptions): Promise<Buffer> {
  return new Promise((resolve, reject) => scrypt(password, salt, 32, options, (e, key) => (e ? reject(e) : resolve(key))));
}

export async function hashPassword(password: string): Promise<string> {
  const salt = randomBytes(16);
  const key = await scryptAsync(password, salt, SCRYPT);
  return `scrypt$${SCRYPT.N}$${SCRYPT.r}$${SCRYPT.p}$${salt.toString('base64')}$${key.toString('base64')}`;
}

export async function verifyPassword(password: string, stored: string): Promise<boolean> {
  const [scheme, n, r, p, salt, hash] = stored.split('$');
  if (scheme !== 'scrypt' || !salt || !hash) return false;
  const expected = Buffer.from(hash, 'base64');
  const got = await scryptAsync(password, Buffer.from(salt, 'base64'), { N: Number(n), r: Number(r), p: Number(p), maxmem: SCRYPT.maxmem! });
  return got.length === expected.length && timingSafeEqual(got, expected);
}

/** A stand-in hash so a login for an unknown email costs the same scrypt work as a real one. */
let dummyHash: Promise<string> | undefined;

const newId = (prefix: string, bytes = 10) => `${prefix}_${randomBytes(bytes).toString('hex')}`;

export class AccountStore {
  private readonly store: HostStore;
  constructor(store: HostStore) {
    this.store = store;
  }
  private get db() {
    return this.store.db;
  }

  async create(name: string, plan: string, id = newId('acct', 8)): Promise<Account> {
    const now = Date.now();
    const project = `proj_${id.slice(5)}`;
    await this.db.transaction(async (tx) => {
      await tx.query('INSERT INTO accounts (id, name, plan, default_project, created_at) VALUES ($1, $2, $3, $4, $5)', [id, name, plan, project, now]);
      await tx.query('INSERT INTO projects (id, name, created_at, account_id) VALUES ($1, $2, $3, $4)', [project, 'Default', now, id]);
    });
    return { id, name, plan, defaultProject: project, createdAt: now };
  }

  async get(id: string): Promise<Account | undefined> {
    const [r] = await this.db.query('SELECT * FROM accounts WHERE id = $1', [id]);
    return r ? { id: r.id as string, name: r.name as string, plan: r.plan as string, defaultProject: r.default_project as string, createdAt: Number(r.created_at) } : undefined;
  }

  async list(): Promise<Account[]> {
    const rows = await this.db.query('SELECT id FROM accounts ORDER BY created_at');
    return (await Promise.all(rows.map((r) => this.get(r.id as string)))).filter((a): a is Account => a !== undefined);
  }

  async rename(id: string, name: string): Promise<void> {
    await this.db.query('UPDATE accounts SET name = $1 WHERE id = $2', [name, id]);
  }

  async setPlan(id: string, plan: string): Promise<void> {
    await this.db.query('UPDATE accounts SET plan = $1 WHERE id = $2', [plan, id]);
  }

  async accountOfProject(projectId: string): Promise<string | undefined> {
    const [r] = await this.db.query('SELECT account_id FROM projects WHERE id = $1', [projectId]);
    return r ? (r.account_id as string) : undefined;
  }

  async projectIds(accountId: string): Promise<string[]> {
    return (await this.db.query('SELECT id FROM projects WHERE account_id = $1 ORDER BY created_at', [accountId])).map((r) => r.id as string);
  }

  async counts(accountId: string): Promise<{ connections: number; keys: number; members: number }> {
    const [c] = await this.db.query('SELECT COUNT(*) AS n FROM connections c JOIN projects p ON p.id = c.project_id WHERE p.account_id = $1', [accountId]);
    const [k] = await this.db.query("SELECT COUNT(*) AS n FROM sg_keys k JOIN projects p ON p.id = k.project_id WHERE p.account_id = $1 AND k.status <> 'revoked'", [accountId]);
    const [m] = await this.db.query('SELECT COUNT(*) AS n FROM memberships WHERE account_id = $1', [accountId]);
    return { connections: Number(c!.n), keys: Number(k!.n), members: Number(m!.n) };
  }

  // ---- users and memberships ----
  async createUser(email: string, password: string): Promise<string> {
    const id = newId('usr', 8);
    const inserted = await this.db.query('INSERT INTO users (id, email, password_hash, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING RETURNING id', [id, email.toLowerCase(), await hashPassword(password), Date.now()]);
    if (inserted.length === 0) throw new HostError('conflict', 'an account with this email exists; log in instead');
    return id;
  }

  async userExists(email: string): Promise<boolean> {
    return (await this.db.query('SELECT id FROM users WHERE email = $1', [email.toLowerCase()])).length === 1;
  }

  /** The user id when the password matches; the same scrypt work either way. */
  async checkPassword(email: string, password: string): Promise<string | undefined> {
    const [r] = await this.db.query('SELECT id, password_hash FROM users WHERE email = $1', [email.toLowerCase()]);
    if (!r) {
      dummyHash ??= hashPassword(randomBytes(16).toString('hex'));
      await verifyPassword(password, await dummyHash);
      return undefined;
    }
    return (await verifyPassword(password, r.password_hash as string)) ? (r.id as string) : undefined;
  }

  /**
   * Owners see every project of the account; a member may be limited to some projects
   * (`projects`), and then sees and changes only what belongs to those.
   */
  async addMember(accountId: string, userId: string, role: Role, projects: string[] | null = null): Promise<void> {
    const scope = role === 'owner' || projects === null ? null : JSON.stringify(projects);
    await this.db.query(
      'INSERT INTO memberships (account_id, user_id, role, created_at, projects) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (account_id, user_id) DO UPDATE SET role = $3, projects = $5',
      [accountId, userId, role, Date.now(), scope],
    );
  }

  async membership(userId: string, accountId?: string): Promise<{ accountId: string; role: Role; projects: string[] | null } | undefined> {
    const rows = accountId
      ? await this.db.query('SELECT account_id, role, projects FROM memberships WHERE user_id = $1 AND account_id = $2', [userId, accountId])
      : await this.db.query('SELECT account_id, role, projects FROM memberships WHERE user_id = $1 ORDER BY created_at LIMIT 1', [userId]);
    const r = rows[0];
    return r ? { accountId: r.account_id as string, role: r.role as Role, projects: parseProjects(r.projects) } : undefined;
  }

  async members(accountId: string): Promise<Array<{ userId: string; email: string; role: Role; projects: string[] | null; since: number }>> {
    return (await this.db.query('SELECT m.user_id, u.email, m.role, m.projects, m.created_at FROM memberships m JOIN users u ON u.id = m.user_id WHERE m.account_id = $1 ORDER BY m.created_at', [accountId])).map((r) => ({
      userId: r.user_id as string, email: r.email as string, role: r.role as Role, projects: parseProjects(r.projects), since: Number(r.created_at),
    }));
  }

  /** Ends a membership: the user's sessions and admin tokens for the account stop working too. */
  async removeMember(accountId: string, userId: string): Promise<boolean> {
    return this.db.transaction(async (tx) => {
      const gone = await tx.query('DELETE FROM memberships WHERE account_id = $1 AND user_id = $2 RETURNING user_id', [accountId, userId]);
      await tx.query('UPDATE admin_tokens SET revoked_at = $1 WHERE account_id = $2 AND user_id = $3 AND revoked_at IS NULL', [Date.now(), accountId, userId]);
      await tx.query('DELETE FROM sessions WHERE account_id = $1 AND user_id = $2', [accountId, userId]);
      return gone.length === 1;
    });
  }

  async ownerCount(accountId: string): Promise<number> {
    const [r] = await this.db.query("SELECT COUNT(*) AS n FROM memberships WHERE account_id = $1 AND role = 'owner'", [accountId]);
    return Number(r!.n);
  }

  // ---- admin API tokens ----
  /**
   * A token of `userId` (a CLI log-in) acts with that user's current role and dies with their
   * membership; a token without a user (made by an owner for automation) keeps its own role.
   */
  async createToken(accountId: string, name: string, role: Role, userId: string | null = null): Promise<{ id: string; token: string }> {
    const id = newId('tok', 8);
    const token = `sga_${randomBytes(24).toString('base64url')}`;
    await this.db.query('INSERT INTO admin_tokens (id, account_id, hash, name, role, created_at, user_id) VALUES ($1, $2, $3, $4, $5, $6, $7)', [id, accountId, sha256Hex(token), name, role, Date.now(), userId]);
    return { id, token };
  }

  async findToken(token: string): Promise<{ id: string; accountId: string; role: Role; userId: string | null; projects: string[] | null } | undefined> {
    const [r] = await this.db.query(
      `SELECT t.id, t.account_id, t.user_id, COALESCE(m.role, t.role) AS role, m.projects, (t.user_id IS NULL OR m.user_id IS NOT NULL) AS member
       FROM admin_tokens t LEFT JOIN memberships m ON m.account_id = t.account_id AND m.user_id = t.user_id
       WHERE t.hash = $1 AND t.revoked_at IS NULL`,
      [sha256Hex(token)],
    );
    if (!r || !(r.member === true || Number(r.member) === 1)) return undefined;
    await this.db.query('UPDATE admin_tokens SET last_used_at = $1 WHERE id = $2', [Date.now(), r.id as string]);
    return { id: r.id as string, accountId: r.account_id as string, role: r.role as Role, userId: (r.user_id as string | null) ?? null, projects: parseProjects(r.projects) };
  }

  async listTokens(accountId: string) {
    return (await this.db.query('SELECT id, name, role, created_at, last_used_at, revoked_at FROM admin_tokens WHERE account_id = $1 ORDER BY created_at', [accountId])).map((r) => ({
      id: r.id as string, name: r.name as string, role: r.role as Role, createdAt: Number(r.created_at),
      lastUsedAt: r.last_used_at === null ? null : Number(r.last_used_at), revokedAt: r.revoked_at === null ? null : Number(r.revoked_at),
    }));
  }

  async revokeToken(accountId: string, id: string): Promise<boolean> {
    return (await this.db.query('UPDATE admin_tokens SET revoked_at = $1 WHERE id = $2 AND account_id = $3 AND revoked_at IS NULL RETURNING id', [Date.now(), id, accountId])).length === 1;
  }

  // ---- sessions ----
  async createSession(userId: string, accountId: string): Promise<{ cookie: string; csrf: string; expiresAt: number }> {
    const cookie = randomBytes(32).toString('base64url');
    const csrf = randomBytes(24).toString('base64url');
    const now = Date.now();
    await this.db.query('DELETE FROM sessions WHERE expires_at < $1', [now]);
    await this.db.query('INSERT INTO sessions (hash, user_id, account_id, csrf, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6)', [sha256Hex(cookie), userId, accountId, csrf, now, now + SESSION_TTL_MS]);
    return { cookie, csrf, expiresAt: now + SESSION_TTL_MS };
  }

  async findSession(cookie: string): Promise<{ userId: string; accountId: string; csrf: string } | undefined> {
    const [r] = await this.db.query('SELECT user_id, account_id, csrf FROM sessions WHERE hash = $1 AND expires_at > $2', [sha256Hex(cookie), Date.now()]);
    return r ? { userId: r.user_id as string, accountId: r.account_id as string, csrf: r.csrf as string } : undefined;
  }

  async deleteSession(cookie: string): Promise<void> {
    await this.db.query('DELETE FROM sessions WHERE hash = $1', [sha256Hex(cookie)]);
  }

  // ---- invites ----
  async createInvite(accountId: string | null, role: Role, projects: string[] | null = null): Promise<string> {
    const code = `sgi_${randomBytes(18).toString('base64url')}`;
    await this.db.query('INSERT INTO invites (hash, account_id, role, created_at, expires_at, projects) VALUES ($1, $2, $3, $4, $5, $6)', [
      sha256Hex(code), accountId, role, Date.now(), Date.now() + INVITE_TTL_MS, projects ? JSON.stringify(projects) : null,
    ]);
    return code;
  }

  /** Marks the invite used and returns what it grants; undefined when unknown, used or expired. */
  async redeemInvite(code: string): Promise<{ accountId: string | null; role: Role; projects: string[] | null } | undefined> {
    const [r] = await this.db.query('UPDATE invites SET used_at = $1 WHERE hash = $2 AND used_at IS NULL AND expires_at > $1 RETURNING account_id, role, projects', [Date.now(), sha256Hex(code)]);
    return r ? { accountId: (r.account_id as string | null) ?? null, role: r.role as Role, projects: parseProjects(r.projects) } : undefined;
  }
}

function parseProjects(value: unknown): string[] | null {
  return typeof value === 'string' && value ? (JSON.parse(value) as string[]) : null;
}

export function readCookie(header: string | undefined, name: string): string | undefined {
  if (!header) return undefined;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

/** Failed logins per email (10) and per client address (50) in 15 minutes, in this process. */
class LoginThrottle {
  private readonly failures = new Map<string, number[]>();
  check(keys: string[]): void {
    const now = Date.now();
    for (const k of keys) {
      const recent = (this.failures.get(k) ?? []).filter((t) => now - t < 15 * 60_000);
      this.failures.set(k, recent);
      if (recent.length >= (k.startsWith('ip:') ? 50 : 10)) throw new HostError('too_many_attempts', 'too many failed logins; wait 15 minutes', 900);
    }
  }
  fail(keys: string[]): void {
    for (const k of keys) this.failures.set(k, [...(this.failures.get(k) ?? []), Date.now()]);
    if (this.failures.size > 100_000) this.failures.clear();
  }
}

export interface AuthDeps {
  accounts: AccountStore;
  plans: PlanBook;
  signup: 'open' | 'invite';
  /** Cookies get `Secure` unless the host serves plain HTTP on loopback in dev mode. */
  secureCookies: boolean;
}

const credentials = {
  type: 'object',
  required: ['email', 'password'],
  properties: {
    email: { type: 'string', minLength: 3, maxLength: 254, pattern: '^[^\\s@]+@[^\\s@]+$' },
    password: { type: 'string', minLength: 1, maxLength: 256 },
  },
} as const;

/** Public routes under /auth/v1: sign-up, log-in (cookie or token), log-out, the current session. */
export async function registerAuth(app: FastifyInstance, deps: AuthDeps): Promise<void> {
  const { accounts } = deps;
  const throttle = new LoginThrottle();

  function setSessionCookie(reply: FastifyReply, value: string, maxAgeS: number): void {
    reply.header('set-cookie', `${SESSION_COOKIE}=${value}; Path=/; HttpOnly; SameSite=Strict; Max-Age=${maxAgeS}${deps.secureCookies ? '; Secure' : ''}`);
  }

  async function authenticate(req: FastifyRequest, email: string, password: string): Promise<string> {
    const keys = [`e:${email.toLowerCase()}`, `ip:${req.ip}`];
    throttle.check(keys);
    const userId = await accounts.checkPassword(email, password);
    if (!userId) {
      throttle.fail(keys);
      throw new HostError('admin_unauthorized', 'email or password is wrong');
    }
    return userId;
  }

  async function sessionView(userId: string, accountId: string, csrf: string) {
    const account = (await accounts.get(accountId))!;
    const membership = await accounts.membership(userId, accountId);
    return { account: { id: account.id, name: account.name, plan: account.plan }, role: membership?.role ?? 'member', csrfToken: csrf };
  }

  app.post<{ Body: { email: string; password: string; invite?: string; accountName?: string } }>(
    '/signup',
    {
      schema: {
        body: {
          ...credentials,
          additionalProperties: false,
          properties: { ...credentials.properties, password: { type: 'string', minLength: 10, maxLength: 256 }, invite: { type: 'string', maxLength: 64 }, accountName: { type: 'string', minLength: 1, maxLength: 100 } },
        },
      },
    },
    async (req, reply) => {
      const { email, password, invite } = req.body;
      if (!invite && deps.signup !== 'open') {
        throw new HostError('signup_closed', 'sign-up on this server is by invitation; ask an account owner or the operator for an invite');
      }
      // Someone who already has a user joins another account with an invite and their password;
      // everything is checked before the invite is spent.
      const existing = await accounts.userExists(email);
      let userId: string | undefined;
      if (existing) {
        if (!invite) throw new HostError('conflict', 'an account with this email exists; log in instead');
        userId = await authenticate(req, email, password);
      }
      let grant: { accountId: string | null; role: Role; projects: string[] | null } | undefined;
      if (invite) {
        grant = await accounts.redeemInvite(invite);
        if (!grant) throw new HostError('signup_closed', 'this invite is unknown, used or expired; ask for a new one');
      }
      userId ??= await accounts.createUser(email, password);
      let accountId = grant?.accountId ?? null;
      const role: Role = accountId ? grant!.role : 'owner';
      if (!accountId) accountId = (await accounts.create(req.body.accountName ?? email, deps.plans.config.signupPlan)).id;
      await accounts.addMember(accountId, userId, role, grant?.projects ?? null);
      const session = await accounts.createSession(userId, accountId);
      setSessionCookie(reply, session.cookie, SESSION_TTL_MS / 1000);
      return reply.status(201).send({ userId, ...(await sessionView(userId, accountId, session.csrf)) });
    },
  );

  app.post<{ Body: { email: string; password: string; accountId?: string } }>(
    '/login',
    { schema: { body: { ...credentials, additionalProperties: false, properties: { ...credentials.properties, accountId: { type: 'string', maxLength: 64 } } } } },
    async (req, reply) => {
      const userId = await authenticate(req, req.body.email, req.body.password);
      const membership = await accounts.membership(userId, req.body.accountId);
      if (!membership) throw new HostError('forbidden', req.body.accountId ? `you are not a member of ${req.body.accountId}` : 'this user belongs to no account');
      const session = await accounts.createSession(userId, membership.accountId);
      setSessionCookie(reply, session.cookie, SESSION_TTL_MS / 1000);
      return sessionView(userId, membership.accountId, session.csrf);
    },
  );

  // The CLI's password login: an admin token for the account, shown once.
  app.post<{ Body: { email: string; password: string; accountId?: string; name?: string } }>(
    '/token',
    { schema: { body: { ...credentials, additionalProperties: false, properties: { ...credentials.properties, accountId: { type: 'string', maxLength: 64 }, name: { type: 'string', minLength: 1, maxLength: 100 } } } } },
    async (req, reply) => {
      const userId = await authenticate(req, req.body.email, req.body.password);
      const membership = await accounts.membership(userId, req.body.accountId);
      if (!membership) throw new HostError('forbidden', 'this user belongs to no account');
      const { id, token } = await accounts.createToken(membership.accountId, req.body.name ?? 'securegate CLI', membership.role, userId);
      return reply.status(201).send({ id, token, accountId: membership.accountId, role: membership.role });
    },
  );

  app.get('/session', async (req) => {
    const cookie = readCookie(req.headers.cookie, SESSION_COOKIE);
    const session = cookie ? await accounts.findSession(cookie) : undefined;
    if (!session) throw new HostError('admin_unauthorized', 'not logged in');
    return sessionView(session.userId, session.accountId, session.csrf);
  });

  app.post('/logout', async (req, reply) => {
    const cookie = readCookie(req.headers.cookie, SESSION_COOKIE);
    if (cookie) await accounts.deleteSession(cookie);
    setSessionCookie(reply, '', 0);
    return { loggedOut: true };
  });
}

/**
 * Resolves the admin API caller: the operator token, an account token (`sga_…`), or a session
 * cookie — cookie-authenticated writes must carry the session's CSRF token in `x-csrf-token`.
 */
export async function resolvePrincipal(req: FastifyRequest, token: string | undefined, isOperator: (token: string) => boolean, accounts: AccountStore): Promise<Principal> {
  if (token) {
    if (isOperator(token)) return { kind: 'operator' };
    const t = token.startsWith('sga_') ? await accounts.findToken(token) : undefined;
    if (!t) throw new HostError('admin_unauthorized', 'admin token missing, wrong or revoked; run `securegate login`');
    return { kind: 'account', accountId: t.accountId, role: t.role, userId: t.userId, via: 'token', projects: t.projects };
  }
  const cookie = readCookie(req.headers.cookie, SESSION_COOKIE);
  const session = cookie ? await accounts.findSession(cookie) : undefined;
  if (!session) throw new HostError('admin_unauthorized', 'admin token missing or wrong; run `securegate login`');
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    const sent = Buffer.from(String(req.headers['x-csrf-token'] ?? ''));
    const want = Buffer.from(session.csrf);
    if (sent.length !== want.length || !timingSafeEqual(sent, want)) throw new HostError('csrf_failed', 'missing or wrong x-csrf-token for this session; reload the dashboard');
  }
  const membership = await accounts.membership(session.userId, session.accountId);
  if (!membership) throw new HostError('admin_unauthorized', 'your membership of this account ended; log in again');
  return { kind: 'account', accountId: session.accountId, role: membership.role, userId: session.userId, via: 'session', projects: membership.projects };
}
