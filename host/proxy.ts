/**
 * The proxy plugin: every client surface (`/v1/*` for all providers, `/openai/*` Azure deployment
 * URLs, `/v1beta/*` Gemini native, `/any/*` any-API). It runs the request path as named stages,
 * each a module under host/request/:
 *
 *   authenticate → classify → admit (locks, first-use binding) → reserve → forward → settle/audit
 *
 * Admission fails closed: a request that matches no declared endpoint, whose body the host cannot
 * read the way the upstream will, whose model a model-locked key cannot verify, whose scope the
 * key lacks, whose client IP cannot be determined, or whose cost a capped key cannot bound is
 * refused — with the provider's error shape and an audit row — and never reaches the enclave.
 * Never logs bodies or keys.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Pool } from 'undici';
import { providerHostData, providerSpec, verifyRequestSignature, SIGNATURE_HEADERS, type ErrorShape } from '../protocol/index.ts';
import type { AuditRow, AuditWriter } from './audit.ts';
import { clientIp, type TrustedProxies } from './client-ip.ts';
import { HostError } from './errors.ts';
import type { GeoLookup } from './geo.ts';
import { checkKeyStatus, resolveModel } from './locks.ts';
import type { HostMetrics } from './metrics.ts';
import { newId } from './keys.ts';
import { PRIORITY_TIER_FACTOR } from './price-tables.ts';
import type { SpendLedger } from './spend.ts';
import type { HostStore, KeyRecord } from './store.ts';
import type { VelocityTracker } from './velocity.ts';
import { admit, asHostError, LockRefused, settleBindings, type AdmitDeps } from './request/admit.ts';
import { KeyDirectory } from './request/authenticate.ts';
import type { ClassifiedRequest } from './request/classified.ts';
import { classify } from './request/classify.ts';
import { forward, type Accounting } from './request/forward.ts';
import { boundFor, reserveSpend } from './request/reserve.ts';

export { credentialFrom } from './request/authenticate.ts';

export interface ProxyDeps {
  store: HostStore;
  enclave: Pool;
  pepper: Uint8Array;
  trustedProxies: TrustedProxies;
  geo: GeoLookup | undefined;
  velocity: VelocityTracker;
  allowUnknownLocation: boolean;
  /** Largest JSON body read for model checks (bytes). */
  jsonBodyLimit: number;
  keyCacheTtlMs: number;
  ledger: SpendLedger;
  audit: AuditWriter;
  metrics: HostMetrics;
  /** Enclave (and so upstream) response-header timeout and idle timeout between body chunks. */
  timeouts: { headersMs: number; idleMs: number };
}

interface ProjectPolicy {
  aliases: Record<string, string>;
  dailyCap: number | null;
  until: number;
}

export async function registerProxy(app: FastifyInstance, deps: ProxyDeps): Promise<void> {
  const { store } = deps;
  const keys = new KeyDirectory(store, deps.pepper, deps.keyCacheTtlMs);
  const projectCache = new Map<string, ProjectPolicy>();
  const touched = new Map<string, number>();
  /** Budget-refusal alerts already raised by this instance (key + window). */
  const budgetAlerted = new Set<string>();

  // Any change to a key (on any instance) drops it here within one NOTIFY round trip.
  await store.onKeyChanged((id) => {
    if (id === '*') {
      // The notification channel was interrupted: anything may have changed.
      keys.forget('*');
      projectCache.clear();
      return;
    }
    if (id.startsWith('project:')) {
      projectCache.delete(id.slice('project:'.length));
      return;
    }
    keys.forget(id);
    deps.velocity.forget(id);
  });

  // Bodies are read by the classify stage, as streams, never by Fastify's parsers.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', (_req, _payload, done) => done(null));

  /**
   * Records an event (and, for alerts, its outbox rows). While the database is away the write is
   * retried with backoff for about ten minutes, with the same id, so an alert raised during an
   * outage is still delivered once the database is back. An id that already exists was recorded.
   */
  function event(key: KeyRecord, type: string, detail: Record<string, unknown>, id = newId('evt')): void {
    const record = { id, at: Date.now(), projectId: key.projectId, keyId: key.id, type, detail };
    const attempt = (n: number) => {
      store.addEvent(record).catch((e: Error) => {
        if (/unique|duplicate key/i.test(e.message)) return;
        if (n >= 10) {
          app.log.error({ err: e.message, type }, 'could not record event; giving up');
          return;
        }
        app.log.warn({ err: e.message, type }, 'could not record event; will retry');
        setTimeout(() => attempt(n + 1), Math.min(60_000, 1_000 * 2 ** n)).unref();
      });
    };
    attempt(0);
  }
  const admitDeps: AdmitDeps = { store, velocity: deps.velocity, event };

  function auditRow(req: FastifyRequest, key: KeyRecord | undefined, fields: Partial<AuditRow>): AuditRow {
    return {
      at: Date.now(), requestId: req.id, keyId: key?.id ?? null, projectId: key?.projectId ?? null, connectionId: key?.connectionId ?? null,
      provider: null, modelResolved: null, tokensIn: 0, tokensOut: 0, tokensCached: 0, costMicros: 0, status: 0,
      code: null, clientIp: null, city: null, deviceMatch: null, latencyMs: Math.round(performance.now() - startedAt(req)),
      endpoint: `${req.method} ${req.url.split('?')[0]!.slice(0, 256)}`, modelRequested: requestedModels.get(req) ?? null,
      ...fields,
    };
  }

  /** Audits a refusal (one row per request, allowed or refused) and throws it to the error handler. */
  function refuse(req: FastifyRequest, key: KeyRecord | undefined, error: HostError, ip: string | null, announce: Record<string, unknown> | false = false): never {
    req.log.warn({ keyId: key?.id, code: error.code, clientIp: ip }, 'request refused');
    deps.audit.write(auditRow(req, key, { status: error.status, code: error.code, clientIp: ip, provider: null }));
    if (key && announce !== false) event(key, error.code, { clientIp: ip, boundIp: key.boundIp, path: req.url.split('?')[0], ...announce });
    throw error;
  }

  async function project(projectId: string): Promise<ProjectPolicy> {
    const hit = projectCache.get(projectId);
    if (hit && hit.until > Date.now()) return hit;
    const entry = { aliases: await store.listAliases(projectId), dailyCap: await store.projectDailyLimit(projectId), until: Date.now() + deps.keyCacheTtlMs };
    projectCache.set(projectId, entry);
    return entry;
  }

  /** Refusals speak the key's provider's error shape once the key is known (else the path decides). */
  const handler = async (req: FastifyRequest, reply: FastifyReply) => {
    const context: { shape?: ErrorShape } = {};
    try {
      return await handle(req, reply, context);
    } catch (e) {
      if (e instanceof HostError && context.shape !== undefined) e.shape ??= context.shape;
      throw e;
    }
  };

  /** The model a request names, once classified: its audit row says so even when it is refused. */
  const requestedModels = new WeakMap<FastifyRequest, string>();

  const handle = async (req: FastifyRequest, reply: FastifyReply, context: { shape?: ErrorShape }) => {
    (req as unknown as { startedAt: number }).startedAt = performance.now();
    const now = Date.now();

    // ---- 1. authenticate ----
    let auth;
    try {
      auth = await keys.authenticate(req.headers);
    } catch (e) {
      if (e instanceof HostError && e.code === 'database_unavailable') refuse(req, undefined, e, null);
      throw e;
    }
    let key = auth.key;
    const connection = auth.connection;
    context.shape = providerHostData(connection.provider)?.errorShape;
    // The kill switch comes first: a killed key is refused whatever else is wrong with the request.
    const peerIp = clientIp(req.raw.socket.remoteAddress ?? '', req.headers, deps.trustedProxies);
    const status = checkKeyStatus(key, now);
    if (status) {
      if (status.code === 'key_expired' && key.status === 'active') await store.updateKey(key.id, { status: 'expired' });
      // A suspension was announced when it began; requests during it are not new alerts.
      refuse(req, key, new HostError(status.code, status.message, status.retryAfter), peerIp ?? null, status.code === 'key_suspended' ? false : {});
    }
    if (peerIp === undefined) {
      refuse(req, key, new HostError('client_ip_unknown', 'The gateway could not determine your IP address from its trusted proxy, so the IP and city locks cannot be applied.'), null);
    }
    const ip: string = peerIp;
    const provider = providerSpec(connection.provider);
    if (!provider) refuse(req, key, new HostError('endpoint_not_allowed', `This key's connection uses an unknown provider (${connection.provider}).`), ip);

    // ---- 2. classify ----
    let request: ClassifiedRequest;
    try {
      request = await classify({ method: req.method, url: req.url, headers: req.headers, rawHeaders: req.raw.rawHeaders, body: req.raw }, provider, connection.allow, {
        jsonBodyLimit: deps.jsonBodyLimit,
        bufferWhole: key.requireSignature,
      });
    } catch (e) {
      if (e instanceof HostError) refuse(req, key, e, ip);
      throw e;
    }

    if (key.requireSignature) {
      const body = request.body;
      const bytes = body.format === 'none' || body.format === 'stream' ? new Uint8Array(0) : body.bytes;
      const check = verifyRequestSignature(
        key.signingSecret ?? '', req.method, req.url, bytes,
        req.headers[SIGNATURE_HEADERS.timestamp] as string | undefined, req.headers[SIGNATURE_HEADERS.signature] as string | undefined, now,
      );
      if (!check.ok) refuse(req, key, new HostError('signature_invalid', `The request signature is missing or invalid: ${check.reason}.`), ip, {});
      if (!(await store.recordSignature(check.signature, check.expiresAt, now))) {
        refuse(req, key, new HostError('signature_replayed', 'This request signature was already used.'), ip, {});
      }
    }

    // ---- 3. admit ----
    const policy = await project(key.projectId);
    // Path-named models (Azure deployments, Gemini native) go upstream as named: no alias rewrite.
    const requested = request.requestedModel;
    if (typeof requested === 'string') requestedModels.set(req, requested.slice(0, 256));
    const model = request.endpoint.model.in === 'path' ? requested : resolveModel(requested, policy.aliases);
    const location = (key.allowedCities.length > 0 || key.autoLock.includes('city')) && deps.geo ? deps.geo.lookup(ip) : null;
    const device = req.headers['x-device-fingerprint'];
    let bindings;
    try {
      ({ key, bindings } = await admit(admitDeps, key, connection, {
        now, clientIp: ip, location, deviceFingerprint: typeof device === 'string' ? device : undefined, model,
        allowUnknownLocation: deps.allowUnknownLocation, scope: request.scope, extraScopes: request.extraScopes, toolModels: request.toolModels, jsonBytes: request.body.format === 'json' ? request.body.bytes.length : 0,
      }));
    } catch (e) {
      if (e instanceof LockRefused) refuse(req, key, asHostError(e), ip, e.announce);
      throw e;
    }
    // Last use is recorded at most once a minute per key and instance (the store also throttles).
    if ((touched.get(key.id) ?? 0) < now - 60_000) {
      touched.set(key.id, now);
      store.touchKey(key.id, now).catch(() => undefined);
    }

    // ---- 4. reserve ----
    // Any money cap, or a tokens-per-minute limit (it reserves the request's token bound): an unboundable request is refused with the pricing engine's reason.
    const moneyCapped = key.dailyLimitMicros !== null || key.weeklyLimitMicros !== null || key.monthlyLimitMicros !== null || key.lifetimeLimitMicros !== null || key.tpmLimit !== null || policy.dailyCap !== null;
    const modelName = typeof model === 'string' ? model : undefined;
    let held;
    try {
      const bound = boundFor(request, modelName, moneyCapped);
      const reserved = await reserveSpend(deps.ledger, key, policy.dailyCap, bound, now);
      if (!reserved.ok) {
        const r = reserved.refusal;
        if (r.code === 'budget_exceeded' && !budgetAlerted.has(`${key.id}\0${r.window}`)) {
          budgetAlerted.add(`${key.id}\0${r.window}`);
          if (budgetAlerted.size > 10_000) budgetAlerted.clear();
          // One alert per key and window across instances: the id is the key and the window.
          event(key, 'budget_refused', { window: r.window, message: r.message }, `evt_budget_${key.id}_${r.window.replace(/[^\w-]/g, '_')}`);
        }
        throw new HostError(r.code, r.message, r.retryAfter);
      }
      held = reserved.held;
    } catch (e) {
      await settleBindings(admitDeps, key, bindings, false).catch(() => undefined);
      if (e instanceof HostError) refuse(req, key, e, ip);
      // The spend database did not answer: nothing was held, nothing is forwarded.
      req.log.warn({ err: (e as Error).message }, 'could not reserve spend');
      refuse(req, key, new HostError('database_unavailable', 'The gateway cannot meter this request right now (its database is unavailable); retry shortly.'), ip);
    }
    deps.metrics.reservationsInFlight.inc();

    // ---- 5. forward, 6. settle and audit (host/request/forward.ts) ----
    const accounting: Accounting = {
      held, provider: connection.provider, requested: typeof requested === 'string' ? requested : undefined, model: modelName, ip, location,
      deviceMatch: key.deviceHash !== null ? true : null, aliases: policy.aliases,
      bindings,
      priceFactor: request.body.format === 'json' && request.body.value.service_tier === 'priority' ? PRIORITY_TIER_FACTOR : 1,
    };
    return forward(
      {
        enclave: deps.enclave, ledger: deps.ledger, audit: deps.audit, metrics: deps.metrics, timeouts: deps.timeouts, admit: admitDeps, log: app.log,
        auditRow, event,
      },
      req, reply, connection, key, request, accounting,
    );
  };
  for (const prefix of ['/v1/*', '/openai/*', '/v1beta/*', '/any/*']) app.all(prefix, handler);
}

function startedAt(req: FastifyRequest): number {
  return (req as unknown as { startedAt?: number }).startedAt ?? performance.now();
}

