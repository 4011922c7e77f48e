/**
 * Liveness (`/healthz`) and readiness (`/readyz`) for load balancers: public, so they answer in
 * fixed words only; the database driver's or the enclave's detail goes to the log.
 */
import type { FastifyInstance } from 'fastify';
import type { Pool } from 'undici';
import type { SqlDb } from '../../storage/db.ts';
import { enclaveHealth } from '../enclave-client.ts';

export interface HealthOptions {
  db: SqlDb;
  enclave: Pool;
}

/** Resolves with `work`'s value, or rejects when it takes longer than `ms` (a readiness probe must answer). */
function within<T>(work: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([work, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms)))]).finally(() => clearTimeout(timer));
}

export async function healthPlugin(app: FastifyInstance, options: HealthOptions): Promise<void> {
  app.get('/healthz', async () => ({ ok: true }));
  app.get('/readyz', async (req, reply) => {
    const checks: Record<string, string> = {};
    try {
      await within(options.db.query('SELECT 1 AS ok'), 2_000);
      checks.database = 'ok';
    } catch (e) {
      req.log.warn({ err: (e as Error).message }, 'readiness: database unavailable');
      checks.database = 'database unavailable';
    }
    try {
      const health = await enclaveHealth(options.enclave, 2_000);
      if (health.statusCode !== 200) throw new Error(`enclave phase ${String(health.phase)}`);
      checks.enclave = 'ok';
    } catch (e) {
      req.log.warn({ err: (e as Error).message }, 'readiness: enclave unavailable');
      checks.enclave = 'enclave unavailable';
    }
    const ready = Object.values(checks).every((v) => v === 'ok');
    return reply.status(ready ? 200 : 503).send({ ready, checks });
  });
}
