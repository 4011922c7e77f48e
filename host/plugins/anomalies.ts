/**
 * Polls the enclave for bad shares it detected and turns each into a `shareholder_anomaly` event
 * (and so an alert) for the connection's project; and polls each shareholder's public log for PCR
 * policy widenings waiting out the owner's delay (SPEC.md §8.3), each becoming an alert with
 * `problem: 'policy_widening_pending'` — so a widening the owner did not make is seen while it
 * can still be cancelled. A failed poll is retried at the next tick.
 */
import { randomBytes } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import type { Pool } from 'undici';
import { enclaveAnomalies } from '../enclave-client.ts';
import type { HostStore } from '../store.ts';

export interface AnomalyPollOptions {
  enclave: Pool;
  store: HostStore;
  /** How often the enclave is asked (default 5 s). */
  pollMs: number;
  /** The operator's shareholders (the enrollment config): their logs are read for pending widenings. */
  shareholders?: Array<{ id: string; url: string }>;
  /** Wall clock for "still pending" (injected in tests). */
  now?: () => number;
}

/** The alert a pending widening raises (as `detail.problem` of a `shareholder_anomaly` event). */
export const POLICY_WIDENING_PENDING = 'policy_widening_pending';

interface LogEntry {
  seq: number;
  hash: string;
  event: { outcome?: string; connectionId?: string; effectiveAt?: string; wideningSha256?: string; policy?: unknown };
}

export async function anomalyPollPlugin(app: FastifyInstance, options: AnomalyPollOptions): Promise<void> {
  const { store } = options;
  let anomalyCursor = 0;
  const pollAnomalies = async () => {
    for (const a of await enclaveAnomalies(options.enclave, anomalyCursor, 2000)) {
      anomalyCursor = Math.max(anomalyCursor, a.seq);
      const connection = await store.getConnection(a.connectionId);
      await store.addEvent({
        id: `evt_${randomBytes(10).toString('hex')}`, at: a.at, projectId: connection?.projectId ?? 'proj_default', keyId: null,
        type: 'shareholder_anomaly', detail: { shareholder: a.shareholder, connectionId: a.connectionId, problem: 'bad share' },
      });
    }
  };
  const now = options.now ?? Date.now;
  const logCursor = new Map<string, number>();
  // Each pending widening alerts once per host process (the event id is derived from the log
  // entry, so a second host on the same database does not alert twice either).
  const pollWidenings = async () => {
    for (const sh of options.shareholders ?? []) {
      const after = logCursor.get(sh.id) ?? 0;
      const res = await fetch(`${sh.url}/v1/audit?after=${after}&limit=1000`, { signal: AbortSignal.timeout(5_000) });
      if (!res.ok) continue;
      const entries = ((await res.json()) as { entries: LogEntry[] }).entries;
      for (const e of entries) {
        logCursor.set(sh.id, e.seq);
        if (e.event.outcome !== 'widening_pending' || !e.event.connectionId) continue;
        const effectiveAt = Date.parse(e.event.effectiveAt ?? '');
        if (!(effectiveAt > now())) continue; // already in effect: nothing left to cancel
        const connection = await store.getConnection(e.event.connectionId);
        if (!connection) continue; // not a connection of this gateway
        await store
          .addEvent({
            id: `evt_w${e.hash.slice(0, 24)}`, at: now(), projectId: connection.projectId, keyId: null,
            type: 'shareholder_anomaly',
            detail: { problem: POLICY_WIDENING_PENDING, shareholder: sh.id, connectionId: e.event.connectionId, effectiveAt: e.event.effectiveAt!, wideningSha256: e.event.wideningSha256 ?? null, logSeq: e.seq },
          })
          .catch(() => undefined); // already raised (same entry, another host)
      }
    }
  };
  const anomalyTimer = setInterval(() => {
    pollAnomalies().catch(() => undefined);
    pollWidenings().catch(() => undefined);
  }, options.pollMs);
  anomalyTimer.unref();
  app.addHook('onClose', async () => clearInterval(anomalyTimer));
}
