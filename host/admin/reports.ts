/**
 * Admin reports, read-only: a key's spend status (`securegate status`), usage grouped by day, key
 * and model, the audit log (cursor-paged) and lock events. Each reads only the projects the
 * caller can see, after flushing the audit writer so a report includes the caller's last request.
 */
import type { FastifyInstance } from 'fastify';
import type { SqlValue } from '../../storage/db.ts';
import { MICROS } from '../pricing.ts';
import { periodOf } from '../spend-windows.ts';
import { utcDay } from '../spend.ts';
import { sqlList } from '../store.ts';
import type { AdminDeps } from './deps.ts';
import type { AdminGuard } from './guard.ts';
import { idParam } from './key-options.ts';

export function registerReportRoutes(app: FastifyInstance, deps: AdminDeps, guard: AdminGuard): void {
  const { store } = deps;

  app.get<{ Params: { id: string } }>('/keys/:id/status', { schema: { params: idParam } }, async (req) => {
    const key = await guard.mustGetKey(req, req.params.id);
    await deps.audit.flush();
    const now = Date.now();
    const day = utcDay(now);
    const today = await deps.ledger.counter('key', key.id, `d:${day}`);
    const life = await deps.ledger.counter('key', key.id, 'life');
    const [week, month] = await Promise.all([deps.ledger.counter('key', key.id, periodOf.week(day)), deps.ledger.counter('key', key.id, periodOf.month(day))]);
    const since = Date.parse(`${day}T00:00:00Z`);
    const models = await store.db.query(
      'SELECT model_resolved AS model, COUNT(*) AS n, SUM(cost_micros) AS cost FROM audit_log WHERE key_id = $1 AND at >= $2 AND code IS NULL GROUP BY model_resolved ORDER BY COUNT(*) DESC',
      [key.id, since],
    );
    const total = models.reduce((n, m) => n + Number(m.n), 0);
    const top = models[0];
    // A key past its expiry date is expired whether or not a request has told the store yet.
    const pastExpiry = key.expiresAt !== null && key.expiresAt <= now && key.status !== 'revoked';
    const effective = pastExpiry ? 'expired' : key.status === 'active' && key.suspendedUntil !== null && key.suspendedUntil > now ? 'suspended' : key.status;
    return {
      id: key.id,
      name: key.name,
      status: effective,
      boundIp: key.boundIp,
      boundAt: key.boundAt,
      autoLock: key.autoLock,
      boundCity: key.boundCity,
      deviceBound: key.deviceHash !== null,
      deviceBoundAt: key.deviceBoundAt,
      spentToday: today.spent / MICROS,
      reservedNow: (today.reserved) / MICROS,
      dailyLimit: key.dailyLimitMicros === null ? null : key.dailyLimitMicros / MICROS,
      spentLifetime: life.spent / MICROS,
      lifetimeLimit: key.lifetimeLimitMicros === null ? null : key.lifetimeLimitMicros / MICROS,
      spentWeek: key.weeklyLimitMicros === null ? null : week.spent / MICROS,
      weeklyLimit: key.weeklyLimitMicros === null ? null : key.weeklyLimitMicros / MICROS,
      spentMonth: key.monthlyLimitMicros === null ? null : month.spent / MICROS,
      monthlyLimit: key.monthlyLimitMicros === null ? null : key.monthlyLimitMicros / MICROS,
      rpm: key.rpmLimit,
      tpm: key.tpmLimit,
      expiresAt: key.expiresAt,
      requestsToday: today.requests,
      topModel: top ? { model: top.model as string, share: total ? Number(top.n) / total : 0 } : null,
      lastUsedAt: key.lastUsedAt,
    };
  });

  app.get<{ Querystring: { keyId?: string; days?: string } }>(
    '/usage',
    { schema: { querystring: { type: 'object', properties: { keyId: { type: 'string', maxLength: 64 }, days: { type: 'string', pattern: '^[1-9][0-9]{0,2}$' } } } } },
    async (req) => {
      await deps.audit.flush();
      const since = Date.now() - Number(req.query.days ?? 30) * 86_400_000;
      const params: SqlValue[] = [since];
      const byKey = req.query.keyId ? ` AND key_id = $${params.push(req.query.keyId)}` : '';
      const visible = await guard.visibleProjects(req);
      const byProject = visible ? ` AND project_id IN ${sqlList(params, visible)}` : '';
      const rows = await store.db.query(
        `SELECT key_id, model_resolved, at, tokens_in, tokens_out, cost_micros FROM audit_log WHERE at >= $1 AND code IS NULL${byKey}${byProject} ORDER BY at`,
        params,
      );
      const groups = new Map<string, { day: string; keyId: string; model: string | null; requests: number; tokensIn: number; tokensOut: number; cost: number }>();
      for (const r of rows) {
        const day = utcDay(Number(r.at));
        const id = `${day}\0${r.key_id as string}\0${r.model_resolved as string}`;
        const g = groups.get(id) ?? { day, keyId: r.key_id as string, model: (r.model_resolved as string | null) ?? null, requests: 0, tokensIn: 0, tokensOut: 0, cost: 0 };
        g.requests++;
        g.tokensIn += Number(r.tokens_in);
        g.tokensOut += Number(r.tokens_out);
        g.cost += Number(r.cost_micros);
        groups.set(id, g);
      }
      return [...groups.values()].map((g) => ({ ...g, cost: g.cost / MICROS }));
    },
  );

  app.get<{ Querystring: { keyId?: string; model?: string; since?: string; until?: string; limit?: string; before?: string; outcome?: 'allowed' | 'refused' } }>(
    '/audit',
    {
      schema: {
        querystring: {
          type: 'object',
          properties: {
            keyId: { type: 'string', maxLength: 64 },
            model: { type: 'string', maxLength: 128 },
            since: { type: 'string', pattern: '^[0-9]{1,15}$' },
            until: { type: 'string', pattern: '^[0-9]{1,15}$' },
            limit: { type: 'string', pattern: '^[1-9][0-9]{0,3}$' },
            before: { type: 'string', maxLength: 64 },
            outcome: { type: 'string', enum: ['allowed', 'refused'] },
          },
        },
      },
    },
    async (req) => {
      await deps.audit.flush();
      const q = req.query;
      const where: string[] = [];
      const params: SqlValue[] = [];
      const visible = await guard.visibleProjects(req);
      if (visible) where.push(`project_id IN ${sqlList(params, visible)}`);
      if (q.keyId) where.push(`key_id = $${params.push(q.keyId)}`);
      if (q.model) where.push(`(model_resolved = $${params.push(q.model)} OR model_requested = $${params.length})`);
      if (q.outcome) where.push(q.outcome === 'allowed' ? 'code IS NULL' : 'code IS NOT NULL');
      if (q.since) where.push(`at >= $${params.push(Number(q.since))}`);
      if (q.until) where.push(`at < $${params.push(Number(q.until))}`);
      if (q.before) {
        // Cursor: "<at>:<id>" of the last row of the previous page.
        const [at, id] = q.before.split(':');
        where.push(`(at < $${params.push(Number(at))} OR (at = $${params.length} AND id < $${params.push(id ?? '')}))`);
      }
      const limit = Math.min(Number(q.limit ?? 100), 1000);
      params.push(limit);
      const rows = await store.db.query(`SELECT * FROM audit_log ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY at DESC, id DESC LIMIT $${params.length}`, params);
      const items = rows.map((r) => ({
        id: r.id as string, at: Number(r.at), requestId: r.request_id as string, keyId: r.key_id as string | null, projectId: r.project_id as string | null,
        connectionId: r.connection_id as string | null, provider: r.provider as string | null, modelRequested: r.model_requested as string | null,
        modelResolved: r.model_resolved as string | null, tokensIn: Number(r.tokens_in), tokensOut: Number(r.tokens_out), tokensCached: Number(r.tokens_cached),
        cost: Number(r.cost_micros) / MICROS, status: Number(r.status), code: r.code as string | null, clientIp: r.client_ip as string | null,
        city: r.city as string | null, deviceMatch: r.device_match === null ? null : Number(r.device_match) === 1, latencyMs: Number(r.latency_ms),
        endpoint: (r.endpoint as string | null) ?? null,
      }));
      const last = items.at(-1);
      return { items, next: items.length === limit && last ? `${last.at}:${last.id}` : null };
    },
  );

  // ---- events ----
  app.get<{ Querystring: { keyId?: string; type?: string; limit?: string } }>(
    '/events',
    { schema: { querystring: { type: 'object', properties: { keyId: { type: 'string', maxLength: 64 }, type: { type: 'string', maxLength: 64 }, limit: { type: 'string', pattern: '^[1-9][0-9]{0,3}$' } } } } },
    async (req) => store.listEvents({ ...req.query, limit: req.query.limit ? Number(req.query.limit) : 100, projectIds: await guard.visibleProjects(req) }),
  );
}
