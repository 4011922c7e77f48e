/** Enclave metrics (Prometheus text on the RPC `GET /metrics`). Labels never carry secrets. */
import { Counter, Histogram, Registry } from 'prom-client';

/** Seconds: share fetches and key reconstructions; upstream answers also get 10 s and 30 s. */
const SECONDS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];

export function createEnclaveMetrics() {
  const registry = new Registry();
  const counter = <L extends string>(name: string, help: string, labelNames: L[]) => new Counter({ name, help, labelNames, registers: [registry] });
  const histogram = <L extends string>(name: string, help: string, labelNames: L[], buckets = SECONDS) => new Histogram({ name, help, labelNames, buckets, registers: [registry] });
  return {
    registry,
    badShares: counter('securegate_enclave_bad_shares_total', 'Shares that failed the consistency check, by shareholder', ['shareholder']),
    shareFetchFailures: counter('securegate_enclave_share_fetch_failures_total', 'Failed share retrievals, by shareholder and reason', ['shareholder', 'reason']),
    shareFetchSeconds: histogram('securegate_enclave_share_fetch_seconds', 'Time to obtain one share (challenge, attestation, release, open), by shareholder', ['shareholder']),
    reconstructionSeconds: histogram('securegate_enclave_key_reconstruction_seconds', 'Time to rebuild a data key from shareholders (cache miss)', []),
    cache: counter('securegate_enclave_dek_cache_total', 'Data key cache lookups by result (hit, miss) and background refreshes started (refresh)', ['result']),
    upstreamSeconds: histogram('securegate_enclave_upstream_response_seconds', 'Time from the upstream call to its response headers', ['provider'], [...SECONDS, 10, 30]),
    upstreamRequests: counter('securegate_enclave_upstream_requests_total', 'Requests forwarded upstream, by provider and status class', ['provider', 'status']),
  };
}

export type EnclaveMetrics = ReturnType<typeof createEnclaveMetrics>;
