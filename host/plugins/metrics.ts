/**
 * `GET /metrics`: the host's Prometheus registry with the enclave's own metrics (shareholder
 * fetches, reconstruction, upstream latency, bad shares) appended — one scrape target per
 * host+enclave pair. Metrics describe traffic and spend, so they are served only with a token or
 * on a separate listener (`metricsListen`), never to anyone who asks.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { FastifyInstance } from 'fastify';
import type { Pool } from 'undici';
import { enclaveMetricsText } from '../enclave-client.ts';
import { HostError } from '../errors.ts';
import type { HostMetrics } from '../metrics.ts';

export interface MetricsOptions {
  metrics: HostMetrics;
  enclave: Pool;
  /** Bearer token for `GET /metrics` (kept only as a hash). */
  metricsToken?: string;
  /** A separate listener that serves only /metrics. */
  metricsListen?: { host: string; port: number };
  /** Told where the separate listener listens, once it does. */
  onListening?: (address: AddressInfo) => void;
}

const sha256 = (text: string) => createHash('sha256').update(text).digest();

/** Constant-time check of an `Authorization: Bearer …` header against a token's SHA-256. */
function bearerMatches(header: string | undefined, tokenHash: Buffer): boolean {
  const m = /^Bearer ([^\s]+)$/i.exec(header ?? '');
  return m !== null && timingSafeEqual(sha256(m[1]!), tokenHash);
}

export async function metricsPlugin(app: FastifyInstance, options: MetricsOptions): Promise<void> {
  const { metrics } = options;
  const renderMetrics = async (): Promise<string> => {
    let enclaveText = '';
    try {
      enclaveText = await enclaveMetricsText(options.enclave, 2_000);
    } catch {
      enclaveText = '';
    }
    return `${await metrics.registry.metrics()}\n${enclaveText}`;
  };
  const metricsTokenHash = options.metricsToken ? sha256(options.metricsToken) : undefined;
  app.get('/metrics', async (req, reply) => {
    if (!metricsTokenHash) {
      throw new HostError('forbidden', options.metricsListen ? 'metrics are served on the metrics listener only' : 'metrics are not served without a metrics token (--metrics-token) or a metrics listener (--metrics-port)');
    }
    if (!bearerMatches(req.headers.authorization, metricsTokenHash)) throw new HostError('admin_unauthorized', 'a valid metrics token is required (Authorization: Bearer …)');
    return reply.type(metrics.registry.contentType).send(await renderMetrics());
  });

  if (!options.metricsListen) return;
  const listen = options.metricsListen;
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '').split('?')[0];
    if (path !== '/metrics' || (req.method !== 'GET' && req.method !== 'HEAD')) return void res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
    if (metricsTokenHash && !bearerMatches(req.headers.authorization, metricsTokenHash)) return void res.writeHead(401, { 'content-type': 'text/plain' }).end('a valid metrics token is required\n');
    renderMetrics().then(
      (text) => res.writeHead(200, { 'content-type': metrics.registry.contentType }).end(req.method === 'HEAD' ? undefined : text),
      () => res.writeHead(500).end(),
    );
  });
  server.headersTimeout = 10_000;
  server.requestTimeout = 10_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(listen.port, listen.host, () => resolve());
  });
  options.onListening?.(server.address() as AddressInfo);
  app.addHook('onClose', async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
}
