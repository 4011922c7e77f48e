/**
 * Prometheus metrics for the host (`GET /metrics`). Labels are routes, status codes, error codes
 * and providers — never keys, IPs or anything a client chose freely.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export function createHostMetrics() {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'securegate_host_' });
  return {
    registry,
    requests: new Counter({ name: 'securegate_requests_total', help: 'Requests by route, status and refusal code', labelNames: ['route', 'status', 'code'], registers: [registry] }),
    latency: new Histogram({
      name: 'securegate_request_duration_seconds',
      help: 'Host time from request to response end',
      labelNames: ['route'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers: [registry],
    }),
    enclaveSeconds: new Histogram({
      name: 'securegate_enclave_response_seconds',
      help: 'Time until the enclave (and so the upstream) returned response headers',
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers: [registry],
    }),
    spend: new Counter({ name: 'securegate_spend_dollars_total', help: 'Settled spend', labelNames: ['provider'], registers: [registry] }),
    reservationsInFlight: new Gauge({ name: 'securegate_reservations_in_flight', help: 'Spend reservations not yet settled', registers: [registry] }),
  };
}

export type HostMetrics = ReturnType<typeof createHostMetrics>;
