/** Enclave metrics (Prometheus text on the RPC `GET /metrics`). Labels never carry secrets. */
import { Counter, Histogram, Registry } from 'prom-client';

export function createEnclaveMetrics() {
  const registry = new Registry();
  return {
    registry,
    badShares: new Counter({
      name: 'securegate_enclave_bad_shares_total',
      help: 'Shares that failed the consistency check, by shareholder',
      labelNames: ['shareholder'],
      registers: [registry],
    }),
    shareFetchFailures: new Counter({
      name: 'securegate_enclave_share_fetch_failures_total',
      help: 'Failed share retrievals, by shareholder and reason',
      labelNames: ['shareholder', 'reason'],
      registers: [registry],
    }),
    shareFetchSeconds: new Histogram({
      name: 'securegate_enclave_share_fetch_seconds',
      help: 'Time to obtain one share (challenge, attestation, release, open), by shareholder',
      labelNames: ['shareholder'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers: [registry],
    }),
    reconstructionSeconds: new Histogram({
      name: 'securegate_enclave_key_reconstruction_seconds',
      help: 'Time to rebuild a data key from shareholders (cache miss)',
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers: [registry],
    }),
    cache: new Counter({
      name: 'securegate_enclave_dek_cache_total',
      help: 'Data key cache lookups by result (hit, miss) and background refreshes started (refresh)',
      labelNames: ['result'],
      registers: [registry],
    }),
    upstreamSeconds: new Histogram({
      name: 'securegate_enclave_upstream_response_seconds',
      help: 'Time from the upstream call to its response headers',
      labelNames: ['provider'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers: [registry],
    }),
    upstreamRequests: new Counter({
      name: 'securegate_enclave_upstream_requests_total',
      help: 'Requests forwarded upstream, by provider and status class',
      labelNames: ['provider', 'status'],
      registers: [registry],
    }),
  };
}

export type EnclaveMetrics = ReturnType<typeof createEnclaveMetrics>;
