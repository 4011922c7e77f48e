/**
 * Who is calling the admin API and what it may touch: the principal of each request (operator
 * token, account token or dashboard session), the projects it can see, the owner/operator checks
 * and the plan checks every resource module uses. Anything the caller cannot see answers
 * not_found, never forbidden: others' projects, keys and connections do not exist for it.
 */
import { timingSafeEqual } from 'node:crypto';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { DEFAULT_ACCOUNT, resolvePrincipal, type AccountStore, type Principal } from '../accounts.ts';
import { HostError } from '../errors.ts';
import { bearerToken, sha256Hex } from '../keys.ts';
import type { PlanBook, PlanFeature, PlanLimit } from '../plans.ts';
import { DEFAULT_PROJECT, type ConnectionRecord, type HostStore, type KeyRecord } from '../store.ts';

export interface AdminGuard {
  who(req: FastifyRequest): Principal;
  /** The caller's account (the operator acts for the default account unless it names one). */
  accountIdOf(req: FastifyRequest): string;
  requireOwner(req: FastifyRequest, what: string): void;
  requireOperator(req: FastifyRequest, what: string): void;
  /** The projects the caller may see; null = all (the operator). Members may be limited to some. */
  visibleProjects(req: FastifyRequest): Promise<string[] | null>;
  /** Whether the caller may see `projectId` (others' projects do not exist for it). */
  canSee(req: FastifyRequest, projectId: string): Promise<boolean>;
  /** The account that owns `projectId`, when the caller may use it. */
  projectAccount(req: FastifyRequest, projectId: string): Promise<string>;
  /** Where a resource goes when the caller names no project. */
  defaultProject(req: FastifyRequest): Promise<string>;
  planOf(accountId: string): Promise<string>;
  requireFeature(projectId: string, feature: PlanFeature): Promise<void>;
  requireRoom(accountId: string, limit: PlanLimit): Promise<void>;
  /** The key `id`, when the caller may see it. */
  mustGetKey(req: FastifyRequest, id: string): Promise<KeyRecord>;
  /** The connection `id`, when the caller may see it. */
  mustGetConnection(req: FastifyRequest, id: string): Promise<ConnectionRecord>;
}

export interface GuardDeps {
  store: HostStore;
  accounts: AccountStore;
  plans: PlanBook;
  adminTokenHash: string;
}

/**
 * Resolves every request's principal in `onRequest` (an unauthenticated request never reaches a
 * route) and returns the checks the routes of `app` use.
 */
export function installAdminGuard(app: FastifyInstance, deps: GuardDeps): AdminGuard {
  const { store, accounts, plans } = deps;
  const expected = Buffer.from(deps.adminTokenHash, 'hex');
  const isOperator = (token: string) => timingSafeEqual(Buffer.from(sha256Hex(token), 'hex'), expected);
  const principals = new WeakMap<FastifyRequest, Principal>();

  app.addHook('onRequest', async (req) => {
    principals.set(req, await resolvePrincipal(req, bearerToken(req.headers.authorization), isOperator, accounts));
  });

  const who = (req: FastifyRequest): Principal => principals.get(req)!;
  const planOf = async (accountId: string): Promise<string> => (await accounts.get(accountId))?.plan ?? 'free';
  const canSee = async (req: FastifyRequest, projectId: string): Promise<boolean> => {
    const p = who(req);
    if (p.kind === 'operator') return true;
    if (p.projects && !p.projects.includes(projectId)) return false;
    return (await accounts.accountOfProject(projectId)) === p.accountId;
  };

  return {
    who,
    accountIdOf(req) {
      const p = who(req);
      return p.kind === 'account' ? p.accountId : DEFAULT_ACCOUNT;
    },
    requireOwner(req, what) {
      const p = who(req);
      if (p.kind === 'account' && p.role !== 'owner') throw new HostError('forbidden', `only an account owner can ${what}; you are a member`);
    },
    requireOperator(req, what) {
      if (who(req).kind !== 'operator') throw new HostError('forbidden', `only the server operator can ${what}`);
    },
    async visibleProjects(req) {
      const p = who(req);
      if (p.kind === 'operator') return null;
      const all = await accounts.projectIds(p.accountId);
      return p.projects ? all.filter((id) => p.projects!.includes(id)) : all;
    },
    canSee,
    async projectAccount(req, projectId) {
      const owner = await accounts.accountOfProject(projectId);
      if (!owner || !(await canSee(req, projectId))) throw new HostError('not_found', `no project ${projectId}`);
      return owner;
    },
    async defaultProject(req) {
      const p = who(req);
      if (p.kind === 'operator') return DEFAULT_PROJECT;
      const main = (await accounts.get(p.accountId))!.defaultProject;
      return !p.projects || p.projects.includes(main) ? main : (p.projects[0] ?? main);
    },
    planOf,
    async requireFeature(projectId, feature) {
      const accountId = await accounts.accountOfProject(projectId);
      plans.requireFeature(await planOf(accountId ?? DEFAULT_ACCOUNT), feature);
    },
    async requireRoom(accountId, limit) {
      plans.requireRoom(await planOf(accountId), limit, (await accounts.counts(accountId))[limit]);
    },
    async mustGetKey(req, id) {
      const key = await store.getKey(id);
      if (!key || !(await canSee(req, key.projectId))) throw new HostError('not_found', `no key ${id}`);
      return key;
    },
    async mustGetConnection(req, id) {
      const c = await store.getConnection(id);
      if (!c || !(await canSee(req, c.projectId))) throw new HostError('not_found', `no connection ${id}`);
      return c;
    },
  };
}
