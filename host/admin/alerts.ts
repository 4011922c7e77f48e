/**
 * Admin routes for alert targets (webhooks and email, per project; delivered from the outbox by
 * host/alerts.ts), a test alert, and the delivery log. A webhook target on an internal address is
 * refused when it is added (unless private webhooks are allowed), not only at delivery.
 */
import { randomBytes } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import type { SqlValue } from '../../storage/db.ts';
import { checkWebhookTarget, newWebhookSecret } from '../alerts.ts';
import { HostError } from '../errors.ts';
import { sqlList } from '../store.ts';
import type { AdminDeps } from './deps.ts';
import type { AdminGuard } from './guard.ts';
import { idParam, keyOptions } from './key-options.ts';

export function registerAlertRoutes(app: FastifyInstance, deps: AdminDeps, guard: AdminGuard): void {
  const { store } = deps;

  app.post<{ Body: { kind: 'webhook' | 'email'; target: string; projectId?: string } }>(
    '/alerts',
    {
      schema: {
        body: {
          type: 'object',
          required: ['kind', 'target'],
          additionalProperties: false,
          properties: { kind: { type: 'string', enum: ['webhook', 'email'] }, target: { type: 'string', minLength: 3, maxLength: 2048 }, projectId: keyOptions.projectId },
        },
      },
    },
    async (req, reply) => {
      guard.requireOwner(req, 'add alert targets');
      const { kind, target } = req.body;
      const projectId = req.body.projectId ?? (await guard.defaultProject(req));
      await guard.projectAccount(req, projectId);
      if (kind === 'webhook') {
        let url: URL;
        try {
          url = new URL(target);
        } catch {
          throw new HostError('invalid_request', 'webhook target must be an http(s) URL');
        }
        if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new HostError('invalid_request', 'webhook target must be an http(s) URL');
        // The same check runs at every delivery (against the address it connects to); here it
        // tells the owner at once. A name that does not resolve yet is accepted.
        const check = await checkWebhookTarget(url, { allowPrivate: deps.allowPrivateWebhooks ?? deps.dev });
        if (!check.ok && check.code !== 'webhook_target_unresolvable') throw new HostError('invalid_request', check.message);
      } else if (!/^[^\s@]+@[^\s@]+\.[^\s@]+$/.test(target) && !/^[^\s@]+@localhost$/.test(target)) {
        throw new HostError('invalid_request', 'email target must be an email address');
      }
      const id = `alt_${randomBytes(8).toString('hex')}`;
      const secret = kind === 'webhook' ? newWebhookSecret() : null;
      await store.db.query('INSERT INTO alert_targets (id, project_id, kind, target, secret, created_at) VALUES ($1, $2, $3, $4, $5, $6)', [id, projectId, kind, target, secret, Date.now()]);
      return reply.status(201).send({ id, kind, target, projectId, ...(secret ? { secret } : {}) });
    },
  );
  app.get('/alerts', async (req) => {
    const visible = await guard.visibleProjects(req);
    const params: SqlValue[] = [];
    return (await store.db.query(`SELECT id, project_id, kind, target, created_at FROM alert_targets ${visible ? `WHERE project_id IN ${sqlList(params, visible)}` : ''} ORDER BY created_at`, params)).map((r) => ({
      id: r.id, projectId: r.project_id, kind: r.kind, target: r.target, createdAt: Number(r.created_at),
    }));
  });
  app.delete<{ Params: { id: string } }>('/alerts/:id', { schema: { params: idParam } }, async (req) => {
    guard.requireOwner(req, 'remove alert targets');
    const params: SqlValue[] = [req.params.id];
    const visible = await guard.visibleProjects(req);
    const gone = await store.db.query(`DELETE FROM alert_targets WHERE id = $1 ${visible ? `AND project_id IN ${sqlList(params, visible)}` : ''} RETURNING id`, params);
    if (gone.length === 0) throw new HostError('not_found', `no alert target ${req.params.id}`);
    return { deleted: req.params.id };
  });
  app.post<{ Body: { projectId?: string } }>('/alerts/test', { schema: { body: { type: ['object', 'null'], additionalProperties: false, properties: { projectId: keyOptions.projectId } } } }, async (req) => {
    const projectId = req.body?.projectId ?? (await guard.defaultProject(req));
    await guard.projectAccount(req, projectId);
    const id = `evt_${randomBytes(10).toString('hex')}`;
    await store.addEvent({ id, at: Date.now(), projectId, keyId: null, type: 'test', detail: { message: 'SecureGate test alert' } });
    return { eventId: id };
  });
  app.get<{ Querystring: { limit?: string } }>(
    '/alerts/deliveries',
    { schema: { querystring: { type: 'object', properties: { limit: { type: 'string', pattern: '^[1-9][0-9]{0,3}$' } } } } },
    async (req) => {
      const params: SqlValue[] = [Number(req.query.limit ?? 100)];
      const visible = await guard.visibleProjects(req);
      return (await store.db.query(`SELECT o.*, t.kind, t.target FROM alert_outbox o JOIN alert_targets t ON t.id = o.target_id ${visible ? `WHERE t.project_id IN ${sqlList(params, visible)}` : ''} ORDER BY o.created_at DESC LIMIT $1`, params)).map((r) => ({
        id: r.id, eventId: r.event_id, kind: r.kind, target: r.target, type: (JSON.parse(r.payload as string) as { type: string }).type, attempts: Number(r.attempts),
        deliveredAt: r.delivered_at === null ? null : Number(r.delivered_at), failedAt: r.failed_at === null ? null : Number(r.failed_at),
        lastStatus: r.last_status === null ? null : Number(r.last_status), lastError: r.last_error, nextAttemptAt: Number(r.next_attempt_at),
      }));
    },
  );
}
