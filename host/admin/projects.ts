/**
 * Admin routes for projects: list and create them, their model aliases, and the settings a
 * project gives its keys (daily limit, default auto-lock).
 */
import type { FastifyInstance } from 'fastify';
import { HostError } from '../errors.ts';
import { dollarsToMicros } from '../pricing.ts';
import type { AdminDeps } from './deps.ts';
import type { AdminGuard } from './guard.ts';
import { idParam, keyOptions, requireKeyFeatures, type KeyOptionsBody } from './key-options.ts';

export function registerProjectRoutes(app: FastifyInstance, deps: AdminDeps, guard: AdminGuard): void {
  const { store, accounts } = deps;

  app.get('/projects', async (req) => {
    const p = guard.who(req);
    const visible = await guard.visibleProjects(req);
    return (await store.listProjects(p.kind === 'account' ? p.accountId : undefined)).filter((x) => !visible || visible.includes(x.id));
  });
  app.post<{ Body: { id: string; name: string; accountId?: string } }>(
    '/projects',
    { schema: { body: { type: 'object', required: ['id', 'name'], additionalProperties: false, properties: { id: keyOptions.projectId, name: { type: 'string', minLength: 1, maxLength: 100 }, accountId: { type: 'string', maxLength: 64 } } } } },
    async (req, reply) => {
      guard.requireOwner(req, 'create projects');
      if (req.body.accountId !== undefined) guard.requireOperator(req, 'create projects in another account');
      const accountId = req.body.accountId ?? guard.accountIdOf(req);
      if (!(await accounts.get(accountId))) throw new HostError('not_found', `no account ${accountId}`);
      if (!(await store.ensureProject(req.body.id, req.body.name, accountId))) throw new HostError('conflict', `project id ${req.body.id} is taken; choose another`);
      return reply.status(201).send({ id: req.body.id, name: req.body.name, accountId });
    },
  );
  app.get<{ Params: { id: string } }>('/projects/:id/aliases', { schema: { params: idParam } }, async (req) => {
    await guard.projectAccount(req, req.params.id);
    return store.listAliases(req.params.id);
  });
  app.put<{ Params: { id: string; alias: string }; Body: { target: string } }>(
    '/projects/:id/aliases/:alias',
    { schema: { body: { type: 'object', required: ['target'], additionalProperties: false, properties: { target: { type: 'string', minLength: 1, maxLength: 128 } } } } },
    async (req) => {
      await guard.projectAccount(req, req.params.id);
      await store.setAlias(req.params.id, req.params.alias, req.body.target);
      return store.listAliases(req.params.id);
    },
  );
  app.delete<{ Params: { id: string; alias: string } }>('/projects/:id/aliases/:alias', async (req) => {
    await guard.projectAccount(req, req.params.id);
    await store.deleteAlias(req.params.id, req.params.alias);
    return store.listAliases(req.params.id);
  });

  app.patch<{ Params: { id: string }; Body: { dailyLimit?: number | null; autoLock?: KeyOptionsBody['autoLock'] | null } }>(
    '/projects/:id',
    {
      schema: {
        params: idParam,
        body: { type: 'object', minProperties: 1, additionalProperties: false, properties: { dailyLimit: keyOptions.dailyLimit, autoLock: { anyOf: [keyOptions.autoLock, { type: 'null' }] } } },
      },
    },
    async (req) => {
      guard.requireOwner(req, 'change project settings');
      await guard.projectAccount(req, req.params.id);
      if (req.body.autoLock) await requireKeyFeatures(guard, req.params.id, { autoLock: req.body.autoLock });
      if (req.body.dailyLimit !== undefined) await store.setProjectDailyLimit(req.params.id, req.body.dailyLimit === null ? null : dollarsToMicros(req.body.dailyLimit));
      if (req.body.autoLock !== undefined) {
        await store.setProjectDefaultAutoLock(req.params.id, req.body.autoLock === null ? null : ['ip', ...req.body.autoLock.filter((a) => a !== 'ip')]);
      }
      return (await store.listProjects()).find((p) => p.id === req.params.id);
    },
  );
}
