/**
 * Polls the enclave for bad shares it detected and turns each into a `shareholder_anomaly` event
 * (and so an alert) for the connection's project. A failed poll is retried at the next tick.
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
  const anomalyTimer = setInterval(() => {
    pollAnomalies().catch(() => undefined);
  }, options.pollMs);
  anomalyTimer.unref();
  app.addHook('onClose', async () => clearInterval(anomalyTimer));
}
