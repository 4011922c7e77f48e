/**
 * The host gateway (untrusted with keys): one encapsulated Fastify plugin per concern —
 * attestation (public), admin API, and the proxy with its locks. It never sees an upstream key
 * or data key, and never logs a request body or a credential header. On any enclave failure it
 * returns one generic error in the provider's shape and logs the detail.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { createServer, type Server } from 'node:http';
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
  unknownModelPolicy?: 'refuse' | 'count';
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

const sha256 = (text: string) => createHash('sha256').update(text).digest();

/** Constant-time check of an `Authorization: Bearer …` header against a token's SHA-256. */
function bearerMatches(header: string | undefined, tokenHash: Buffer): boolean {
  const m = /^Bearer ([^\s]+)$/i.exec(header ?? '');
  return m !== null && timingSafeEqual(sha256(m[1]!), tokenHash);
}

/** Resolves with `work`'s value, or rejects when it takes longer than `ms` (a readiness probe must answer). */
function within<T>(work: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([work, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms)))]).finally(() => clearTimeout(timer));
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
  // Reservations of a crashed instance expire and are reclaimed; inactive keys expire.
  const sweep = setInterval(() => {
    ledger.reclaimExpired().catch((e: Error) => app.log.error({ err: e.message }, 'reservation sweep failed'));
    config.store.expireInactive().catch((e: Error) => app.log.error({ err: e.message }, 'inactivity sweep failed'));
    const cutoff = Date.now() - (config.auditRetentionDays ?? 90) * 86_400_000;
    Promise.all([
      config.store.db.query('DELETE FROM audit_log WHERE at < $1', [cutoff]),
      config.store.db.query('DELETE FROM events WHERE at < $1', [cutoff]),
    ]).catch((e: Error) => app.log.error({ err: e.message }, 'retention sweep failed'));
  }, 60_000);
  sweep.unref();
  const alerts = new AlertDispatcher({
    db: config.store.db,
    ...(config.smtpUrl ? { smtpUrl: config.smtpUrl } : {}),
    ...(config.emailFrom ? { emailFrom: config.emailFrom } : {}),
    log: { warn: (o, m) => app.log.warn(o, m), error: (o, m) => app.log.error(o, m) },
    allowPrivateTargets: config.allowPrivateWebhooks ?? config.dev ?? false,
  });
  await alerts.start(config.alertPollMs ?? 1_000);
  app.addHook('onClose', async () => {
    clearInterval(sweep);
    clearInterval(anomalyTimer);
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

  app.get('/healthz', async () => ({ ok: true }));
  // Public (load balancers probe it): fixed words only; the driver's or enclave's detail is logged.
  app.get('/readyz', async (req, reply) => {
    const checks: Record<string, string> = {};
    try {
      await within(config.store.db.query('SELECT 1 AS ok'), 2_000);
      checks.database = 'ok';
    } catch (e) {
      req.log.warn({ err: (e as Error).message }, 'readiness: database unavailable');
      checks.database = 'database unavailable';
    }
    try {
      const res = await config.enclave.request({ path: '/healthz', method: 'GET', headersTimeout: 2_000, bodyTimeout: 2_000 });
      const body = (await res.body.json()) as { phase?: string };
      if (res.statusCode !== 200) throw new Error(`enclave phase ${String(body.phase)}`);
      checks.enclave = 'ok';
    } catch (e) {
      req.log.warn({ err: (e as Error).message }, 'readiness: enclave unavailable');
      checks.enclave = 'enclave unavailable';
    }
    const ready = Object.values(checks).every((v) => v === 'ok');
    return reply.status(ready ? 200 : 503).send({ ready, checks });
  });

  // The enclave's own metrics (shareholder fetches, reconstruction, upstream latency, bad shares)
  // are appended: one scrape target per host+enclave pair. Metrics describe traffic and spend, so
  // they are served only with a token or on a separate listener — never to anyone who asks.
  const renderMetrics = async (): Promise<string> => {
    let enclaveText = '';
    try {
      const res = await config.enclave.request({ path: '/metrics', method: 'GET', headersTimeout: 2_000, bodyTimeout: 2_000 });
      enclaveText = res.statusCode === 200 ? await res.body.text() : (await res.body.dump(), '');
    } catch {
      enclaveText = '';
    }
    return `${await metrics.registry.metrics()}\n${enclaveText}`;
  };
  const metricsTokenHash = config.metricsToken ? sha256(config.metricsToken) : undefined;
  app.get('/metrics', async (req, reply) => {
    if (!metricsTokenHash) {
      throw new HostError('forbidden', config.metricsListen ? 'metrics are served on the metrics listener only' : 'metrics are not served without a metrics token (--metrics-token) or a metrics listener (--metrics-port)');
    }
    if (!bearerMatches(req.headers.authorization, metricsTokenHash)) throw new HostError('admin_unauthorized', 'a valid metrics token is required (Authorization: Bearer …)');
    return reply.type(metrics.registry.contentType).send(await renderMetrics());
  });

  // Bad shares the enclave detected become shareholder_anomaly alerts for the connection's project.
  let anomalyCursor = 0;
  const pollAnomalies = async () => {
    const res = await config.enclave.request({ path: `/anomalies?after=${anomalyCursor}`, method: 'GET', headersTimeout: 2000 });
    const body = (await res.body.json()) as { anomalies?: Array<{ seq: number; at: number; shareholder: string; connectionId: string }> };
    for (const a of body.anomalies ?? []) {
      anomalyCursor = Math.max(anomalyCursor, a.seq);
      const connection = await config.store.getConnection(a.connectionId);
      await config.store.addEvent({
        id: `evt_${randomBytes(10).toString('hex')}`, at: a.at, projectId: connection?.projectId ?? 'proj_default', keyId: null,
        type: 'shareholder_anomaly', detail: { shareholder: a.shareholder, connectionId: a.connectionId, problem: 'bad share' },
      });
    }
  };
  const anomalyTimer = setInterval(() => {
    pollAnomalies().catch(() => undefined);
  }, config.anomalyPollMs ?? 5_000);
  anomalyTimer.unref();

  // ---- attestation (public): a fresh document from the enclave for customers to verify ----
  app.get<{ Querystring: { nonce?: string } }>('/v1/attestation', async (req, reply) => {
    const nonce = req.query.nonce ?? '';
    // The NSM signs nonces up to 1024 bytes (attestation/nsm.ts); the host accepts what it signs.
    if (nonce && !/^(?:[0-9a-fA-F]{2}){1,1024}$/.test(nonce)) throw new HostError('invalid_request', 'nonce must be hex, at most 1024 bytes');
    let res;
    try {
      res = await config.enclave.request({ path: `/attestation${nonce ? `?nonce=${nonce}` : ''}`, method: 'GET' });
    } catch (e) {
      req.log.error({ err: (e as Error).message }, 'enclave unreachable');
      throw new HostError('enclave_unavailable', 'the enclave is unavailable');
    }
    const body = (await res.body.json()) as { document?: string; nsm?: string };
    if (res.statusCode !== 200 || !body.document) throw new HostError('enclave_unavailable', 'the enclave could not attest');
    return reply.send({ document: body.document, nsm: body.nsm, manifest: config.releaseManifest ?? null });
  });

  await registerDashboard(app, { dir: config.dashboardDir, enrollment: config.enrollment, dev: config.dev ?? false });
  const accounts = new AccountStore(config.store);
  const plans = config.plans ?? new PlanBook();
  await app.register((auth) => registerAuth(auth, { accounts, plans, signup: config.signup ?? 'invite', secureCookies: !config.dev }), { prefix: '/auth/v1' });
  await app.register((admin) => registerAdmin(admin, { store: config.store, ledger, audit, pepper: config.pepper, adminTokenHash: config.adminTokenHash, dev: config.dev ?? false, accounts, plans,
    attest: () => attestationReport(config.enclave, config.releaseManifest, config.attestationRoots ?? [awsNitroRoot()]),
    enrollment: config.enrollment ?? null, allowPrivateWebhooks: config.allowPrivateWebhooks ?? config.dev ?? false }), {
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
      unknownModelPolicy: config.unknownModelPolicy ?? 'refuse',
      timeouts: { headersMs: config.timeouts?.headersMs ?? 300_000, idleMs: config.timeouts?.idleMs ?? 300_000 },
    }),
  );

  if (config.metricsListen) {
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
      server.listen(config.metricsListen!.port, config.metricsListen!.host, () => resolve());
    });
    metricsAddresses.set(app, server.address() as AddressInfo);
    app.addHook('onClose', async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    });
  }
  return app;
}
