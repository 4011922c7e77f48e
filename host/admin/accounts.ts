/**
 * Admin API routes for accounts: the caller's account and plan (`GET /account`, what `securegate
 * status` and the dashboard show), the plan book, admin tokens, members and invites (owners), and
 * the operator's account management (create, list, change plan). Changing a plan never deletes
 * anything (host/plans.ts has the downgrade rule).
 */
import type { FastifyInstance } from 'fastify';
import { ROLES, type Principal, type Role } from '../accounts.ts';
import type { AccountView } from '../../protocol/index.ts';
import { HostError } from '../errors.ts';
import type { AdminDeps } from './deps.ts';
import type { AdminGuard } from './guard.ts';
import { idParam } from './key-options.ts';

const role = { type: 'string', enum: [...ROLES] } as const;
const projectList = { type: ['array', 'null'], maxItems: 100, uniqueItems: true, items: { type: 'string', pattern: '^proj_[A-Za-z0-9_-]{1,40}$' } } as const;

export function registerAccountRoutes(app: FastifyInstance, deps: AdminDeps, g: AdminGuard): void {
  const { accounts, plans } = deps;

  /** A member's project list must name projects of the account (null: all of them). */
  async function checkProjects(accountId: string, projects: string[] | null | undefined): Promise<void> {
    if (!projects) return;
    const own = await accounts.projectIds(accountId);
    const foreign = projects.filter((p) => !own.includes(p));
    if (foreign.length) throw new HostError('invalid_request', `not projects of this account: ${foreign.join(', ')}`);
    if (projects.length === 0) throw new HostError('invalid_request', 'a member needs at least one project (or null for all)');
  }

  async function accountView(accountId: string, principal: Principal, visible: string[] | null): Promise<AccountView> {
    const account = await accounts.get(accountId);
    if (!account) throw new HostError('not_found', `no account ${accountId}`);
    const plan = plans.has(account.plan) ? plans.get(account.plan) : { id: account.plan, name: account.plan, limits: {}, features: [] };
    return {
      id: account.id,
      name: account.name,
      role: principal.kind === 'operator' ? 'operator' : principal.role,
      plan: { id: plan.id, name: plan.name, limits: plan.limits, features: plan.features },
      usage: await accounts.counts(accountId),
      projects: visible ?? (await accounts.projectIds(accountId)),
      defaultProject: account.defaultProject,
      createdAt: account.createdAt,
    };
  }

  app.get<{ Querystring: { accountId?: string } }>('/account', { schema: { querystring: { type: 'object', properties: { accountId: { type: 'string', maxLength: 64 } } } } }, async (req) => {
    if (req.query.accountId) g.requireOperator(req, 'look at other accounts');
    return accountView(req.query.accountId ?? g.accountIdOf(req), g.who(req), req.query.accountId ? null : await g.visibleProjects(req));
  });

  app.get('/plans', async () => plans.config);

  // The dashboard's attestation page (an Enterprise feature by default).
  app.get('/attestation', async (req) => {
    const account = await accounts.get(g.accountIdOf(req));
    plans.requireFeature(account?.plan ?? 'free', 'attestation');
    return deps.attest();
  });

  // What the dashboard needs to enroll in the browser: the operator's published shareholders.
  app.get('/enrollment', async () => {
    if (!deps.enrollment) throw new HostError('not_found', 'this server publishes no shareholder list; connect providers with the CLI (`securegate connect`), which pins its own');
    return deps.enrollment;
  });

  // ---- the operator's account management ----
  app.get('/accounts', async (req) => {
    g.requireOperator(req, 'list accounts');
    return Promise.all((await accounts.list()).map(async (a) => ({ ...a, usage: await accounts.counts(a.id) })));
  });

  app.post<{ Body: { name: string; plan?: string } }>(
    '/accounts',
    { schema: { body: { type: 'object', required: ['name'], additionalProperties: false, properties: { name: { type: 'string', minLength: 1, maxLength: 100 }, plan: { type: 'string', maxLength: 40 } } } } },
    async (req, reply) => {
      g.requireOperator(req, 'create accounts');
      const plan = req.body.plan ?? plans.config.signupPlan;
      if (!plans.has(plan)) throw new HostError('invalid_request', `unknown plan ${plan}; configured: ${plans.config.plans.map((p) => p.id).join(', ')}`);
      const account = await accounts.create(req.body.name, plan);
      // The first owner joins with this invite (shown once): `securegate signup --invite …` or the dashboard.
      const invite = await accounts.createInvite(account.id, 'owner');
      return reply.status(201).send({ ...account, ownerInvite: invite });
    },
  );

  app.patch<{ Params: { id: string }; Body: { plan?: string; name?: string } }>(
    '/accounts/:id',
    { schema: { params: idParam, body: { type: 'object', additionalProperties: false, properties: { plan: { type: 'string', maxLength: 40 }, name: { type: 'string', minLength: 1, maxLength: 100 } } } } },
    async (req) => {
      g.requireOperator(req, 'change plans');
      if (!(await accounts.get(req.params.id))) throw new HostError('not_found', `no account ${req.params.id}`);
      if (req.body.plan !== undefined) {
        if (!plans.has(req.body.plan)) throw new HostError('invalid_request', `unknown plan ${req.body.plan}; configured: ${plans.config.plans.map((p) => p.id).join(', ')}`);
        await accounts.setPlan(req.params.id, req.body.plan);
      }
      if (req.body.name !== undefined) await accounts.rename(req.params.id, req.body.name);
      return accountView(req.params.id, g.who(req), null);
    },
  );

  // ---- admin tokens (owners): stored as SHA-256, shown once, revocable ----
  app.get('/tokens', async (req) => {
    g.requireOwner(req, 'list admin tokens');
    return accounts.listTokens(g.accountIdOf(req));
  });
  app.post<{ Body: { name: string; role?: Role } }>(
    '/tokens',
    { schema: { body: { type: 'object', required: ['name'], additionalProperties: false, properties: { name: { type: 'string', minLength: 1, maxLength: 100 }, role } } } },
    async (req, reply) => {
      g.requireOwner(req, 'create admin tokens');
      const created = await accounts.createToken(g.accountIdOf(req), req.body.name, req.body.role ?? 'owner');
      return reply.status(201).send({ ...created, name: req.body.name, role: req.body.role ?? 'owner' });
    },
  );
  app.delete<{ Params: { id: string } }>('/tokens/:id', { schema: { params: idParam } }, async (req) => {
    g.requireOwner(req, 'revoke admin tokens');
    if (!(await accounts.revokeToken(g.accountIdOf(req), req.params.id))) throw new HostError('not_found', `no active token ${req.params.id}`);
    return { revoked: req.params.id };
  });

  // ---- members and invites (owners) ----
  app.get('/members', async (req) => accounts.members(g.accountIdOf(req)));
  app.post<{ Body: { role?: Role; projects?: string[] | null } }>(
    '/invites',
    { schema: { body: { type: ['object', 'null'], additionalProperties: false, properties: { role, projects: projectList } } } },
    async (req, reply) => {
      g.requireOwner(req, 'invite members');
      const accountId = g.accountIdOf(req);
      const account = (await accounts.get(accountId))!;
      plans.requireRoom(account.plan, 'members', (await accounts.counts(accountId)).members);
      const inviteRole = req.body?.role ?? 'member';
      const projects = inviteRole === 'member' ? (req.body?.projects ?? null) : null;
      await checkProjects(accountId, projects);
      const code = await accounts.createInvite(accountId, inviteRole, projects);
      return reply.status(201).send({ invite: code, accountId, role: inviteRole, projects, expiresInDays: 7 });
    },
  );
  app.patch<{ Params: { id: string }; Body: { role?: Role; projects?: string[] | null } }>(
    '/members/:id',
    { schema: { params: idParam, body: { type: 'object', minProperties: 1, additionalProperties: false, properties: { role, projects: projectList } } } },
    async (req) => {
      g.requireOwner(req, 'change roles');
      const accountId = g.accountIdOf(req);
      const target = (await accounts.members(accountId)).find((m) => m.userId === req.params.id);
      if (!target) throw new HostError('not_found', `no member ${req.params.id}`);
      const newRole = req.body.role ?? target.role;
      if (target.role === 'owner' && newRole !== 'owner' && (await accounts.ownerCount(accountId)) === 1) throw new HostError('conflict', 'an account keeps at least one owner; make someone else owner first');
      const projects = newRole === 'owner' ? null : req.body.projects !== undefined ? req.body.projects : target.projects;
      if (newRole === 'owner' && req.body.projects) throw new HostError('invalid_request', 'owners see every project; limit members only');
      await checkProjects(accountId, projects);
      await accounts.addMember(accountId, req.params.id, newRole, projects);
      return { userId: req.params.id, role: newRole, projects };
    },
  );
  app.delete<{ Params: { id: string } }>('/members/:id', { schema: { params: idParam } }, async (req) => {
    g.requireOwner(req, 'remove members');
    const accountId = g.accountIdOf(req);
    const members = await accounts.members(accountId);
    const target = members.find((m) => m.userId === req.params.id);
    if (!target) throw new HostError('not_found', `no member ${req.params.id}`);
    if (target.role === 'owner' && (await accounts.ownerCount(accountId)) === 1) throw new HostError('conflict', 'an account keeps at least one owner; make someone else owner first');
    await accounts.removeMember(accountId, req.params.id);
    return { removed: req.params.id };
  });
}
