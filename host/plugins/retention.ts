/**
 * The minute sweep: reservations of a crashed instance expire and are reclaimed, inactive keys
 * expire, and audit rows, events and stored usage receipts older than the retention period are
 * deleted. Each part logs its own failure and the next sweep tries again.
 */
import type { FastifyInstance } from 'fastify';
import type { SqlDb } from '../../storage/db.ts';
import type { SpendLedger } from '../spend.ts';
import type { HostStore } from '../store.ts';

export interface RetentionOptions {
  store: HostStore;
  ledger: SpendLedger;
  /** Audit rows and events older than this are deleted. */
  auditRetentionDays: number;
}

/**
 * Deletes what is older than `cutoff` (ms): audit rows, events, and the enclave's usage receipts
 * (one per connection per collection and per lease, kept beside the audit trail for `usage --verify`, so they age with it).
 */
export async function pruneRetained(db: SqlDb, cutoff: number): Promise<void> {
  await Promise.all([
    db.query('DELETE FROM audit_log WHERE at < $1', [cutoff]),
    db.query('DELETE FROM events WHERE at < $1', [cutoff]),
    db.query('DELETE FROM usage_receipts WHERE received_at < $1', [cutoff]),
  ]);
}

export async function retentionPlugin(app: FastifyInstance, options: RetentionOptions): Promise<void> {
  const { store, ledger } = options;
  const sweep = setInterval(() => {
    ledger.reclaimExpired().catch((e: Error) => app.log.error({ err: e.message }, 'reservation sweep failed'));
    store.expireInactive().catch((e: Error) => app.log.error({ err: e.message }, 'inactivity sweep failed'));
    const cutoff = Date.now() - options.auditRetentionDays * 86_400_000;
    pruneRetained(store.db, cutoff).catch((e: Error) => app.log.error({ err: e.message }, 'retention sweep failed'));
  }, 60_000);
  sweep.unref();
  app.addHook('onClose', async () => clearInterval(sweep));
}
