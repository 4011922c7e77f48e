/**
 * The host gateway (untrusted with keys): one encapsulated Fastify plugin per concern — health,
 * metrics, anomaly polling, retention and attestation (host/plugins/), the dashboard, auth, the
 * admin API (host/admin/) and the proxy with its locks. It never sees an upstream key
 * or data key, and never logs a request body or a credential header. On any enclave failure it
 * returns one generic error in the provider's shape and logs the detail.
 */
import type { AddressInfo } from 'node:net';
import Fastify, { type FastifyInstance, type FastifyReply } from 'fastify';
import type { Pool } from 'undici';
import { registerAdmin } from './admin/index.ts';
import { newId } from './keys.ts';
import { AccountStore, registerAuth } from './accounts.ts';
import { PlanBook } from './plans.ts';
import { awsNitroRoot, type PinnedRoot } from '../attestation/index.ts';
import { attestationReport } from './attestation-report.ts';
import { registerDashboard, type EnrollmentConfig } from './dashboard.ts';
import { AlertDispatcher } from './alerts.ts';
import { AuditWriter } from './audit.ts';
import { createHostMetrics } from './metrics.ts';
import { SpendLedger } from './spend.ts';
import { anomalyPollPlugin } from './plugins/anomalies.ts';
import { ReceiptCollector, receiptCollectorPlugin } from './receipts.ts';
import { attestationPlugin } from './plugins/attestation.ts';
import { healthPlugin } from './plugins/health.ts';
import { metricsPlugin } from './plugins/metrics.ts';
import { retentionPlugin } from './plugins/retention.ts';
import { TrustedProxies } from './client-ip.ts';
import { registerBodyTimeout } from './body-timeout.ts';
import { registerRequestTargetGuard } from './request-target.ts';
import { errorBody, errorShapeForPath, HOST_ERRORS, HostError } from './errors.ts';
import type { ErrorShape } from '../protocol/index.ts';
import type { GeoLookup } from './geo.ts';
import { registerProxy } from './proxy.ts';
import type { HostStore } from './store.ts';
import { VelocityTracker, type VelocityConfig } from './velocity.ts';

export { sha256Hex } from './keys.ts';
export { credentialFrom } from './proxy.ts';

export interface HostConfig {
  store: HostStore;
  enclave: Pool;
  pepper: Uint8Array;
  /** SHA-256 hex of the admin token (the token itself is never kept in memory after start). */
  adminTokenHash: string;
  /** Dev mode permits http://127.0.0.1 upstream origins (mock upstreams). */
  dev?: boolean;
  logger?: boolean | object;
  keyCacheTtlMs?: number;
  /**
   * Trusted proxies, each with the one header it sets: presets (`alb`, `nginx`, `cloudflare`,
   * `loopback`, `private`), `xff@<cidr>`, `forwarded@<cidr>`, `header=<name>@<cidr>`, or bare
   * CIDRs (X-Forwarded-For). Syntax in host/client-ip.ts.
   */
  trustedProxies?: string[];
  geo?: GeoLookup;
  allowUnknownLocation?: boolean;
  velocity?: Partial<VelocityConfig>;
  jsonBodyLimit?: number;
  /** SMTP server for alert email, e.g. smtp://user:pass@mail.example.com:587 */
  smtpUrl?: string;
  emailFrom?: string;
  /** How often the alert outbox is polled (it is also woken on every new alert). */
  alertPollMs?: number;
  /** How often the enclave is asked for newly detected bad shares (default 5 s). */
  anomalyPollMs?: number;
  /** Audit rows and events older than this are deleted by the periodic sweep (default 90 days). */
  auditRetentionDays?: number;
  /** The signed release manifest of the enclave image this host runs (served, not trusted). */
  releaseManifest?: unknown;
  /** Upstream response-header timeout and idle timeout between body chunks (default 300 s each). */
  timeouts?: { headersMs?: number; idleMs?: number };
  /** The operator's plans (default: Free, Pro, Enterprise as in the product documents). */
  plans?: PlanBook;
  /** Self-service sign-up: open to anyone, or by invite only (default). */
  signup?: 'open' | 'invite';
  /** Roots the dashboard's attestation check accepts (default: the AWS Nitro root). */
  attestationRoots?: PinnedRoot[];
  /** The shareholders the dashboard enrolls to (the CLI pins its own; this list comes from the operator). */
  enrollment?: EnrollmentConfig;
  /** The built dashboard (dashboard/dist); served at /dashboard/. */
  dashboardDir?: string;
  /**
   * Let alert webhooks reach loopback, private, link-local and other internal addresses
   * (default: only in dev mode, whose test receivers are on loopback).
   */
  allowPrivateWebhooks?: boolean;
  /**
   * Bearer token for `GET /metrics` (kept only as a hash). Without it, and without a separate
   * metrics listener, the public listener refuses /metrics.
   */
  metricsToken?: string;
  /** A separate listener that serves only /metrics (e.g. on a private interface for Prometheus). */
  metricsListen?: { host: string; port: number };
  /** Request bodies must advance by minBytesPerSecond over every window (default 30 s, 512 B/s). */
  bodyTimeout?: { windowMs?: number; minBytesPerSecond?: number };
  /** Node's bounds on the client side: headers complete (default 30 s), whole request (default 1 h). */
  clientTimeouts?: { headersMs?: number; requestMs?: number };
}

const metricsAddresses = new WeakMap<FastifyInstance, AddressInfo>();

/** Where the separate metrics listener (`metricsListen`) is listening, once the app is built. */
export function metricsAddress(app: FastifyInstance): AddressInfo | undefined {
  return metricsAddresses.get(app);
}

export const LOG_REDACT = [
  'req.headers.authorization',
  'req.headers["x-api-key"]',
  'req.headers["api-key"]',
  'req.headers["x-device-fingerprint"]',
  'req.headers["x-sg-signature"]',
  'req.headers.cookie',
];

export async function buildHostApp(config: HostConfig): Promise<FastifyInstance> {
  const headersMs = config.clientTimeouts?.headersMs ?? 30_000;
  const app = Fastify({
    logger: config.logger ?? false,
    bodyLimit: 1024 * 1024,
    requestIdHeader: false,
    // Strict schemas: a number is not silently turned into a string (or the reverse).
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false } },
    genReqId: () => newId('req'),
    // One access line per request, written in onResponse below, instead of fastify's two.
    disableRequestLogging: true,
    trustProxy: false,
    // Client-side bounds: headers must be complete within headersTimeout and a whole request within
    // requestTimeout (Node checks both every connectionsCheckingInterval); body stalls are caught
    // sooner by the body timeout below. Fastify's default leaves requestTimeout off.
    requestTimeout: config.clientTimeouts?.requestMs ?? 3_600_000,
    http: { headersTimeout: headersMs, connectionsCheckingInterval: Math.min(5_000, Math.max(100, Math.floor(headersMs / 4))) },
    // A path the router cannot decode (`%zz`, overlong UTF-8) never reaches a hook: answer it in the
    // same shape as every other refusal instead of Fastify's own body.
    frameworkErrors: (error, req, reply) => {
      const path = (req.raw.url ?? '').split('?')[0]!;
      if (error.code === 'FST_ERR_BAD_URL') return refuse(reply, path, 'invalid_request', 'the request path has a malformed percent-escape');
      return refuse(reply, path, 'invalid_request', 'the request could not be routed');
    },
  });

  function refuse(reply: FastifyReply, path: string, code: string, message: string, retryAfter?: number, shape?: ErrorShape) {
    const spec = HOST_ERRORS[code] ?? HOST_ERRORS.gateway_error!;
    if (!spec.retry) reply.header('x-should-retry', 'false');
    reply.header('x-sg-code', code);
    if (retryAfter) reply.header('retry-after', String(retryAfter));
    return reply.status(spec.status).type('application/json').send(errorBody(shape ?? errorShapeForPath(path), code, spec.type, message));
  }

  app.setErrorHandler((error: Error & { statusCode?: number; validation?: unknown; code?: string }, req, reply) => {
    const path = req.url.split('?')[0]!;
    if (error instanceof HostError) return refuse(reply, path, error.code, error.message, error.retryAfter, error.shape);
    if (error.code === 'FST_ERR_CTP_BODY_TOO_LARGE') return refuse(reply, path, 'request_too_large', error.message);
    if (error.validation || (error.statusCode && error.statusCode < 500)) return refuse(reply, path, 'invalid_request', error.message);
    req.log.error({ err: { name: error.name, message: error.message } }, 'host internal error');
    return refuse(reply, path, 'gateway_error', 'the gateway could not complete the request');
  });

  // Before any route, hook or plugin: targets that could reach another route are refused, and a
  // body that stalls is cut off, on every route.
  registerRequestTargetGuard(app);
  registerBodyTimeout(app, config.bodyTimeout);

  const metrics = createHostMetrics();
  const ledger = new SpendLedger(config.store.db, { onError: (e) => app.log.warn({ err: e.message }, 'settlement not written yet; retrying') });
  const audit = new AuditWriter(config.store.db, (e) => app.log.error({ err: e.message }, 'audit write failed'));
  const alerts = new AlertDispatcher({
    db: config.store.db,
    ...(config.smtpUrl ? { smtpUrl: config.smtpUrl } : {}),
    ...(config.emailFrom ? { emailFrom: config.emailFrom } : {}),
    log: { warn: (o, m) => app.log.warn(o, m), error: (o, m) => app.log.error(o, m) },
    allowPrivateTargets: config.allowPrivateWebhooks ?? config.dev ?? false,
  });
  await alerts.start(config.alertPollMs ?? 1_000);
  app.addHook('onClose', async () => {
    await alerts.stop();
    // Queued settlements get a few seconds to be written; what is left, the sweep charges its bound.
    await ledger.close();
    await audit.close();
  });

  app.addHook('onResponse', async (req, reply) => {
    const route = req.routeOptions.url ?? 'unmatched';
    const code = reply.getHeader('x-sg-code');
    metrics.requests.inc({ route, status: String(reply.statusCode), code: String(code ?? '') });
    metrics.latency.observe({ route }, reply.elapsedTime / 1000);
    // The path only: a query string can carry credentials (`?key=…`), and bodies are never logged.
    req.log.info({ method: req.method, path: req.url.split('?')[0], status: reply.statusCode, ms: Math.round(reply.elapsedTime * 100) / 100, ...(code ? { code } : {}) }, 'request');
  });

  // Plugins registered after the onClose hook above stop (timers, the metrics listener) before it runs.
  await app.register(retentionPlugin, { store: config.store, ledger, auditRetentionDays: config.auditRetentionDays ?? 90 });
  await app.register(healthPlugin, { db: config.store.db, enclave: config.enclave });
  await app.register(metricsPlugin, {
    metrics,
    enclave: config.enclave,
    ...(config.metricsToken ? { metricsToken: config.metricsToken } : {}),
    ...(config.metricsListen ? { metricsListen: config.metricsListen } : {}),
    onListening: (address) => metricsAddresses.set(app, address),
  });
  await app.register(anomalyPollPlugin, { enclave: config.enclave, store: config.store, pollMs: config.anomalyPollMs ?? 5_000, shareholders: config.enrollment?.shareholders ?? [] });
  await app.register(attestationPlugin, { enclave: config.enclave, releaseManifest: config.releaseManifest });
  const receipts = new ReceiptCollector(config.store, config.enclave);
  await app.register(receiptCollectorPlugin, { collector: receipts, pollMs: config.anomalyPollMs ?? 5_000 });

  await registerDashboard(app, { dir: config.dashboardDir, enrollment: config.enrollment, dev: config.dev ?? false });
  const accounts = new AccountStore(config.store);
  const plans = config.plans ?? new PlanBook();
  await app.register((auth) => registerAuth(auth, { accounts, plans, signup: config.signup ?? 'invite', secureCookies: !config.dev }), { prefix: '/auth/v1' });
  await app.register((admin) => registerAdmin(admin, { store: config.store, ledger, audit, pepper: config.pepper, adminTokenHash: config.adminTokenHash, dev: config.dev ?? false, accounts, plans,
    attest: () => attestationReport(config.enclave, config.releaseManifest, config.attestationRoots ?? [awsNitroRoot()]),
    enrollment: config.enrollment ?? null, allowPrivateWebhooks: config.allowPrivateWebhooks ?? config.dev ?? false, receipts, enclave: config.enclave }), {
    prefix: '/admin/v1',
  });
  await app.register((proxy) =>
    registerProxy(proxy, {
      store: config.store,
      enclave: config.enclave,
      pepper: config.pepper,
      trustedProxies: new TrustedProxies(config.trustedProxies ?? []),
      geo: config.geo,
      velocity: new VelocityTracker(config.velocity),
      allowUnknownLocation: config.allowUnknownLocation ?? false,
      jsonBodyLimit: config.jsonBodyLimit ?? 10 * 1024 * 1024,
      keyCacheTtlMs: config.keyCacheTtlMs ?? 30_000,
      ledger,
      audit,
      metrics,
      timeouts: { headersMs: config.timeouts?.headersMs ?? 300_000, idleMs: config.timeouts?.idleMs ?? 300_000 },
    }),
  );

  return app;
}
