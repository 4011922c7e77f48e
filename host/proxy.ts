/**
 * The proxy: every provider path under /v1. Authenticates the SG_ key, applies the locks in
 * DESIGN.md §4 order, binds the IP on first successful use (atomically), and forwards opaque
 * bytes to the enclave. JSON bodies (bounded) are read to find and alias-rewrite the model;
 * other bodies (multipart, audio, files) stream through untouched. Never logs bodies or keys.
 */
import { randomBytes } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Pool } from 'undici';
import {
  allowListPermits,
  encodeConnectionDescriptor,
  providerSpec,
  upstreamPathFor,
  verifyRequestSignature,
  RPC_CONNECTION_HEADER,
  RPC_ENCLAVE_ERROR_HEADER,
  RPC_FORWARD_PREFIX,
  SIGNATURE_HEADERS,
} from '../protocol/index.ts';
import { bodyLimitFor, ByteLimiter, findMultipartField, multipartBoundary, multipartCarriesModel, replaceField, type FieldLocation } from './bodies.ts';
import { clientIp, type TrustedProxies } from './client-ip.ts';
import { HostError } from './errors.ts';
import type { GeoLookup } from './geo.ts';
import { bearerToken, isWellFormedSgKey, hashSgKey, newId } from './keys.ts';
import { checkKeyStatus, checkRequestLocks, cityLabel, deviceHash, deviceMatches, resolveModel } from './locks.ts';
import type { AuditRow, AuditWriter } from './audit.ts';
import type { HostMetrics } from './metrics.ts';
import { maxCostMicros, priceUsage, requestedMaxOutput, tokenRates } from './pricing.ts';
import { utcDay, type SpendLedger } from './spend.ts';
import type { ConnectionRecord, HostStore, KeyRecord } from './store.ts';
import { jsonUsage, UsageTap, type StreamKind } from './usage.ts';

/** Non-streamed answers up to this size with a Content-Length are read whole and sent at once. */
const SMALL_RESPONSE = 256 * 1024;
import type { VelocityTracker } from './velocity.ts';

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
  /** For a capped key and a model without a known price: refuse, or count the request at $0. */
  unknownModelPolicy: 'refuse' | 'count';
  /** Enclave (and so upstream) response-header timeout and idle timeout between body chunks. */
  timeouts: { headersMs: number; idleMs: number };
}

const HOP_BY_HOP = new Set([
  'connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'host',
  'authorization', 'x-api-key', 'api-key', 'x-goog-api-key', 'proxy-authorization', 'cookie', 'content-length',
  'x-device-fingerprint', SIGNATURE_HEADERS.timestamp, SIGNATURE_HEADERS.signature, 'x-forwarded-for', 'forwarded', 'cf-connecting-ip',
]);
const RESPONSE_DROP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade', RPC_ENCLAVE_ERROR_HEADER]);

/** Extracts the SG_ key from `Authorization: Bearer`, `x-api-key` or `api-key`. */
export function credentialFrom(headers: FastifyRequest['headers']): string | undefined {
  const bearer = bearerToken(headers.authorization);
  if (bearer !== undefined) return bearer;
  for (const name of ['x-api-key', 'api-key', 'x-goog-api-key']) {
    const v = headers[name];
    if (typeof v === 'string' && v.length > 0) return v.trim();
  }
  return undefined;
}

interface CachedKey {
  key: KeyRecord;
  connection: ConnectionRecord;
  until: number;
}

async function readBody(req: FastifyRequest, limit: number): Promise<Buffer> {
  const declared = Number(req.headers['content-length']);
  if (!req.headers['transfer-encoding'] && Number.isFinite(declared) && declared > limit) {
    throw new HostError('request_too_large', `request body exceeds ${limit} bytes`);
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req.raw) {
    size += (chunk as Buffer).length;
    if (size > limit) throw new HostError('request_too_large', `request body exceeds ${limit} bytes`);
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

export async function registerProxy(app: FastifyInstance, deps: ProxyDeps): Promise<void> {
  const { store } = deps;
  const keyCache = new Map<string, CachedKey>();
  const projectCache = new Map<string, { aliases: Record<string, string>; dailyCap: number | null; until: number }>();
  const touched = new Map<string, number>();

  // Any change to a key (on any instance) drops it here within one NOTIFY round trip.
  await store.onKeyChanged((id) => {
    if (id === '*') {
      // The notification channel was interrupted: anything may have changed.
      keyCache.clear();
      projectCache.clear();
      return;
    }
    if (id.startsWith('project:')) {
      projectCache.delete(id.slice('project:'.length));
      return;
    }
    for (const [hash, entry] of keyCache) if (entry.key.id === id) keyCache.delete(hash);
    deps.velocity.forget(id);
  });

  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', (_req, _payload, done) => done(null));

  /**
   * Records an event (and, for alerts, its outbox rows). While the database is away the write is
   * retried with backoff for about ten minutes, with the same id, so an alert raised during an
   * outage is still delivered once the database is back.
   */
  function event(key: KeyRecord, type: string, detail: Record<string, unknown>): void {
    const record = { id: newId('evt'), at: Date.now(), projectId: key.projectId, keyId: key.id, type, detail };
    const attempt = (n: number) => {
      store.addEvent(record).catch((e: Error) => {
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

  function auditRow(req: FastifyRequest, key: KeyRecord | undefined, fields: Partial<AuditRow>): AuditRow {
    return {
      at: Date.now(), requestId: req.id, keyId: key?.id ?? null, projectId: key?.projectId ?? null, connectionId: key?.connectionId ?? null,
      provider: null, modelRequested: null, modelResolved: null, tokensIn: 0, tokensOut: 0, tokensCached: 0, costMicros: 0, status: 0,
      code: null, clientIp: null, city: null, deviceMatch: null, latencyMs: Math.round(performance.now() - ((req as unknown as { startedAt?: number }).startedAt ?? performance.now())),
      ...fields,
    };
  }

  function refuse(req: FastifyRequest, key: KeyRecord, refusal: { code: string; message: string; retryAfter?: number }, ip: string, detail: Record<string, unknown> | false = {}): never {
    req.log.warn({ keyId: key.id, code: refusal.code, clientIp: ip }, 'request refused by a lock');
    const error = new HostError(refusal.code as never, refusal.message, refusal.retryAfter);
    deps.audit.write(auditRow(req, key, { status: error.status, code: refusal.code, clientIp: ip }));
    if (detail !== false) event(key, refusal.code, { clientIp: ip, boundIp: key.boundIp, path: req.url.split('?')[0], ...detail });
    throw error;
  }

  async function authenticate(req: FastifyRequest): Promise<CachedKey> {
    const credential = credentialFrom(req.headers);
    if (!credential || !isWellFormedSgKey(credential)) {
      throw new HostError('invalid_api_key', 'Invalid SecureGate key. Use the SG_… key from `securegate keys create`.');
    }
    const hash = hashSgKey(deps.pepper, credential);
    const cached = keyCache.get(hash);
    if (cached && cached.until > Date.now()) return cached;
    const key = await store.findKeyByHash(hash);
    if (!key) throw new HostError('invalid_api_key', 'Invalid SecureGate key.');
    const connection = await store.getConnection(key.connectionId);
    if (!connection) throw new HostError('invalid_api_key', 'This key has no connection.');
    const entry = { key, connection, until: Date.now() + deps.keyCacheTtlMs };
    keyCache.set(hash, entry);
    return entry;
  }

  async function project(projectId: string): Promise<{ aliases: Record<string, string>; dailyCap: number | null }> {
    const hit = projectCache.get(projectId);
    if (hit && hit.until > Date.now()) return hit;
    const entry = { aliases: await store.listAliases(projectId), dailyCap: await store.projectDailyLimit(projectId), until: Date.now() + deps.keyCacheTtlMs };
    projectCache.set(projectId, entry);
    return entry;
  }
  const aliasesFor = async (projectId: string) => (await project(projectId)).aliases;

  /**
   * One handler for every client surface: `/v1/*` (OpenAI-style, all providers), provider-native
   * prefixes (`/openai/*` Azure deployments, `/v1beta/*` Gemini native) and `/any/*` (any-API).
   */
  const handler = async (req: FastifyRequest, reply: FastifyReply) => {
    (req as unknown as { startedAt: number }).startedAt = performance.now();
    const path = req.url.split('?')[0]!;
    const now = Date.now();
    const auth = await authenticate(req);
    let key = auth.key;
    const connection = auth.connection;
    const ip = clientIp(req.raw.socket.remoteAddress ?? '', req.headers, deps.trustedProxies);

    const status = checkKeyStatus(key, now);
    if (status) {
      if (status.code === 'key_expired' && key.status === 'active') {
        await store.updateKey(key.id, { status: 'expired' });
      }
      // A suspension was announced when it began; requests during it are not new alerts.
      refuse(req, key, status, ip, status.code === 'key_suspended' ? false : {});
    }
    const spec = providerSpec(connection.provider);
    const allowed =
      spec?.id === 'any'
        ? path.startsWith('/any/') && connection.allow !== null && allowListPermits(connection.allow, req.method, path.slice(4))
        : spec !== undefined && !path.startsWith('/any/') && upstreamPathFor(spec, req.url) !== undefined;
    if (!spec || !allowed) {
      throw new HostError('endpoint_not_allowed', `${req.method} ${path} is not an endpoint this key can call`);
    }

    const hasBody = req.method !== 'GET' && req.method !== 'HEAD';
    const contentType = String(req.headers['content-type'] ?? '');
    const isJson = contentType.includes('application/json');
    const boundary = multipartBoundary(contentType);
    const limit = bodyLimitFor(path, deps.jsonBodyLimit);
    let body: Buffer | undefined;
    if (hasBody && (isJson || key.requireSignature || (boundary !== undefined && multipartCarriesModel(path)))) body = await readBody(req, limit);
    else if (hasBody && !req.headers['transfer-encoding'] && Number(req.headers['content-length']) > limit) {
      throw new HostError('request_too_large', `request body exceeds ${limit} bytes`);
    }

    if (key.requireSignature) {
      const check = verifyRequestSignature(
        key.signingSecret ?? '',
        req.method,
        req.url,
        body ?? new Uint8Array(0),
        req.headers[SIGNATURE_HEADERS.timestamp] as string | undefined,
        req.headers[SIGNATURE_HEADERS.signature] as string | undefined,
        now,
      );
      if (!check.ok) refuse(req, key, { code: 'signature_invalid', message: `The request signature is missing or invalid: ${check.reason}.` }, ip);
      if (!(await store.recordSignature(check.signature, check.expiresAt, now))) {
        refuse(req, key, { code: 'signature_replayed', message: 'This request signature was already used.' }, ip);
      }
    }

    let json: Record<string, unknown> | undefined;
    if (body && isJson && body.length > 0) {
      try {
        const parsed: unknown = JSON.parse(body.toString('utf8'));
        if (parsed && typeof parsed === 'object' && !Array.isArray(parsed)) json = parsed as Record<string, unknown>;
      } catch {
        throw new HostError('invalid_request', 'We could not parse the JSON body of your request.');
      }
    }
    let multipartModel: FieldLocation | undefined;
    if (body && boundary !== undefined && multipartCarriesModel(path)) multipartModel = findMultipartField(body, boundary, 'model');
    const requested = typeof json?.model === 'string' ? json.model : multipartModel?.value;
    const aliases = requested !== undefined ? await aliasesFor(key.projectId) : {};
    const model = resolveModel(requested, aliases);
    const location = (key.allowedCities.length > 0 || key.autoLock.includes('city')) && deps.geo ? deps.geo.lookup(ip) : null;
    const device = req.headers['x-device-fingerprint'];
    const refusal = checkRequestLocks(key, connection, {
      now,
      clientIp: ip,
      location,
      deviceFingerprint: typeof device === 'string' ? device : undefined,
      model,
      allowUnknownLocation: deps.allowUnknownLocation,
    });
    if (refusal) refuse(req, key, refusal, ip);

    // Token volume is estimated from the JSON body (≈ 4 bytes a token), as the reservation does.
    const abuse = deps.velocity.record(key.id, ip, now, model, json ? Math.ceil((body?.length ?? 0) / 4) : 0);
    if (abuse) {
      const until = now + deps.velocity.config.suspendForMs;
      await store.updateKey(key.id, { suspendedUntil: until });
      refuse(
        req,
        key,
        { code: 'key_suspended', message: `This SecureGate key is suspended after unusual activity (${abuse}).`, retryAfter: Math.ceil((until - now) / 1000) },
        ip,
        { reason: abuse, until },
      );
    }

    // A first use that cannot bind what the key auto-locks to is refused before anything binds.
    const fingerprint = typeof device === 'string' && device.length >= 16 && device.length <= 256 ? device : undefined;
    if (key.autoLock.includes('device') && key.deviceHash === null && !fingerprint) {
      refuse(req, key, { code: 'device_mismatch', message: 'This key locks itself to a device on first use: send x-device-fingerprint (`securegate env --device`).' }, ip);
    }
    if (key.autoLock.includes('city') && key.boundCity === null && !cityLabel(location)) {
      refuse(req, key, { code: 'city_not_allowed', message: 'This key locks itself to a city on first use, and the location of this address is unknown.' }, ip);
    }
    if (key.boundIp === null) {
      // First successful use binds the key to this IP; of concurrent first requests from
      // different IPs exactly one wins, the others are refused.
      if (!(await store.bindIpIfUnbound(key.id, ip, now))) {
        key = (await store.getKey(key.id))!;
        if (key.boundIp !== ip) refuse(req, key, { code: 'ip_mismatch', message: 'This SecureGate key is locked to another IP address.' }, ip);
      } else {
        event(key, 'ip_bound', { clientIp: ip });
      }
    }
    // Self-healing identity: device and city auto-locks bind on first successful use, after the IP
    // (so one request's identity wins whole); of concurrent first requests one binds, the others are
    // judged against what it bound.
    if (key.autoLock.includes('device') && key.deviceHash === null && fingerprint) {
      const salt = randomBytes(16).toString('hex');
      if (await store.bindDeviceIfUnbound(key.id, salt, deviceHash(salt, fingerprint), now)) event(key, 'device_bound', { clientIp: ip });
      else {
        key = (await store.getKey(key.id))!;
        if (!deviceMatches(key, fingerprint)) refuse(req, key, { code: 'device_mismatch', message: 'This SecureGate key is bound to another device.' }, ip);
      }
    }
    const label = cityLabel(location);
    if (key.autoLock.includes('city') && key.boundCity === null && label) {
      if (await store.bindCityIfUnbound(key.id, label, now)) event(key, 'city_bound', { clientIp: ip, city: label });
      else {
        key = (await store.getKey(key.id))!;
        if (key.boundCity !== label) refuse(req, key, { code: 'city_not_allowed', message: `This key locked itself to ${key.boundCity} on first use.` }, ip);
      }
    }
    // Last use is recorded at most once a minute per key and instance (the store also throttles).
    if ((touched.get(key.id) ?? 0) < now - 60_000) {
      touched.set(key.id, now);
      store.touchKey(key.id, now).catch(() => undefined);
    }

    // ---- spend: reserve an upper bound before anything is forwarded ----
    const { dailyCap: projectDailyCap } = await project(key.projectId);
    const capped = key.dailyLimitMicros !== null || key.lifetimeLimitMicros !== null || projectDailyCap !== null;
    let amount = model !== undefined ? maxCostMicros(connection.provider, model, json ? (body?.length ?? 0) : 0, requestedMaxOutput(json)) : 0;
    if (amount === null) {
      if (capped && deps.unknownModelPolicy === 'refuse') {
        refuse(req, key, { code: 'model_unpriced', message: `No price is known for ${model}, and this key has a spend cap.` }, ip, false);
      }
      amount = 0;
    }
    // Only capped keys need a reservation; others are charged once, when the cost is known.
    const reservation = capped || key.dailyRequestLimit !== null
      ? await deps.ledger.reserve({
          keyId: key.id, projectId: key.projectId, amount, keyDailyCap: key.dailyLimitMicros, keyLifetimeCap: key.lifetimeLimitMicros, projectDailyCap,
          keyDailyRequestCap: key.dailyRequestLimit, now,
        })
      : ({ ok: true, reservationId: null, day: utcDay(now) } as const);
    if (!reservation.ok) {
      const which =
        reservation.scope === 'keyreq'
          ? 'this key\'s daily request cap'
          : `${reservation.scope === 'key' ? 'this key\'s' : 'the project\'s'} ${reservation.period === 'life' ? 'lifetime' : 'daily (UTC)'} spend cap`;
      refuse(req, key, { code: 'budget_exceeded', message: `This request could cost up to $${(amount / 1e6).toFixed(6)}, which does not fit ${which}.` }, ip, false);
    }
    deps.metrics.reservationsInFlight.inc();

    // Bodies not read above stream through, counted against the endpoint's limit.
    const limiter = hasBody && !body ? new ByteLimiter(limit) : undefined;
    let forwardBody: Buffer | NodeJS.ReadableStream | null = hasBody ? (body ?? req.raw.pipe(limiter!)) : null;
    if (multipartModel && model !== undefined && model !== requested) forwardBody = replaceField(body!, multipartModel, model);
    let stripInjectedUsage = false;
    if (json && json.stream === true && (path === '/v1/chat/completions' || path === '/v1/completions') && spec.errorShape === 'openai') {
      const options = (json.stream_options ?? {}) as Record<string, unknown>;
      if (options.include_usage !== true) {
        json.stream_options = { ...options, include_usage: true };
        stripInjectedUsage = true;
      }
    }
    if (json && (model !== requested || stripInjectedUsage)) {
      json.model = model;
      forwardBody = Buffer.from(JSON.stringify(json));
    }
    const accounting: Accounting = {
      reservationId: reservation.reservationId, day: reservation.day, provider: connection.provider, requested, model, ip, location, stripInjectedUsage,
      deviceMatch: key.deviceHash !== null ? true : null, limiter,
    };
    return forward(req, reply, connection, forwardBody, key, accounting);
  };
  for (const prefix of ['/v1/*', '/openai/*', '/v1beta/*', '/any/*']) app.all(prefix, handler);

  interface Accounting {
    /** null: the key has no caps and holds no reservation (charged on completion). */
    reservationId: string | null;
    day: string;
    provider: string;
    requested: string | undefined;
    model: string | undefined;
    ip: string;
    location: { city: string | null } | null;
    stripInjectedUsage: boolean;
    deviceMatch: boolean | null;
    limiter: ByteLimiter | undefined;
  }

  /** Settles the reservation with the real cost, writes the audit row, fires budget alerts. Once. */
  function finisher(req: FastifyRequest, key: KeyRecord, acc: Accounting) {
    let done = false;
    return (status: number, tap: Pick<UsageTap, 'result'> | undefined, code: string | null) => {
      if (done) return;
      done = true;
      deps.metrics.reservationsInFlight.dec();
      const usage = tap?.result.usage;
      const model = tap?.result.model ?? acc.model;
      let cost = 0;
      if (usage && model) cost = priceUsage(acc.provider, model, usage) ?? 0;
      else if (tap && tap.result.contentEvents > 0 && model) {
        // The stream ended without usage (client went away): charge what was produced, ~1 token per event.
        const rates = tokenRates(acc.provider, model);
        cost = rates ? Math.ceil(tap.result.contentEvents * rates.output) : 0;
      }
      (acc.reservationId ? deps.ledger.settle(acc.reservationId, cost) : deps.ledger.charge(key.id, key.projectId, acc.day, cost))
        .then((settled) => {
          const cap = key.dailyLimitMicros;
          if (cap === null || cap === 0) return;
          for (const pct of [50, 80, 100]) {
            const line = (cap * pct) / 100;
            if (settled.keyDay.before < line && settled.keyDay.after >= line) {
              event(key, `budget_${pct}`, { spentMicros: settled.keyDay.after, capMicros: cap });
            }
          }
        })
        .catch((e: Error) => req.log.error({ err: e.message }, 'settle failed'));
      if (cost > 0) deps.metrics.spend.inc({ provider: acc.provider }, cost / 1e6);
      deps.audit.write(
        auditRow(req, key, {
          provider: acc.provider, modelRequested: acc.requested ?? null, modelResolved: model ?? null, tokensIn: usage?.inputTokens ?? 0,
          tokensOut: usage?.outputTokens ?? (tap?.result.contentEvents ?? 0), tokensCached: usage?.cacheReadTokens ?? 0, costMicros: cost, status, code,
          clientIp: acc.ip, city: acc.location?.city ?? null, deviceMatch: acc.deviceMatch,
        }),
      );
    };
  }

  /** The enclave-bound connection descriptor, encoded once per cached connection record. */
  const descriptors = new WeakMap<ConnectionRecord, string>();
  function descriptorOf(connection: ConnectionRecord): string {
    let encoded = descriptors.get(connection);
    if (encoded === undefined) {
      encoded = encodeConnectionDescriptor({
        connectionId: connection.id,
        provider: connection.provider,
        origin: connection.origin,
        authScheme: connection.authScheme,
        sealedRecord: connection.sealedRecord,
        threshold: connection.threshold,
        ...(connection.allow !== null ? { allow: connection.allow } : {}),
      });
      descriptors.set(connection, encoded);
    }
    return encoded;
  }

  async function forward(req: FastifyRequest, reply: FastifyReply, connection: ConnectionRecord, body: Buffer | NodeJS.ReadableStream | null, key: KeyRecord, acc: Accounting) {
    const path = req.url.split('?')[0]!;
    const finish = finisher(req, key, acc);
    const headers: Record<string, string | string[]> = {};
    for (const [name, value] of Object.entries(req.headers)) {
      if (value !== undefined && !HOP_BY_HOP.has(name) && !name.startsWith('x-sg-')) headers[name] = value;
    }
    if (Buffer.isBuffer(body)) headers['content-length'] = String(body.length);
    else if (body && req.headers['content-length'] && !req.headers['transfer-encoding']) headers['content-length'] = req.headers['content-length'];
    headers[RPC_CONNECTION_HEADER] = descriptorOf(connection);
    const abort = new AbortController();
    // A client that goes away cancels the enclave call (and so the upstream call).
    reply.raw.on('close', () => {
      if (!reply.raw.writableFinished) abort.abort();
    });
    let res;
    try {
      res = await deps.enclave.request({
        path: RPC_FORWARD_PREFIX + req.url,
        method: req.method as 'POST',
        headers,
        body: body as Buffer | null,
        signal: abort.signal,
        headersTimeout: deps.timeouts.headersMs,
        bodyTimeout: deps.timeouts.idleMs,
      });
    } catch (e) {
      if (acc.limiter?.exceeded) {
        finish(413, undefined, 'request_too_large');
        throw new HostError('request_too_large', `request body exceeds ${acc.limiter.limit} bytes`);
      }
      req.log.error({ err: (e as Error).message }, 'enclave unreachable');
      finish(503, undefined, 'enclave_unavailable');
      throw new HostError('enclave_unavailable', 'the gateway could not reach its enclave');
    }
    deps.metrics.enclaveSeconds.observe((performance.now() - (req as unknown as { startedAt: number }).startedAt) / 1000);
    const enclaveError = res.headers[RPC_ENCLAVE_ERROR_HEADER];
    if (typeof enclaveError === 'string') {
      finish(res.statusCode, undefined, enclaveError);
      const detail = (await res.body.json().catch(() => ({}))) as { error?: { message?: string } };
      req.log.warn({ enclaveError, detail: detail.error?.message }, 'enclave refused');
      if (enclaveError === 'shareholders_unavailable') {
        throw new HostError('shareholders_unavailable', 'Not enough key shareholders are reachable to use this key right now.');
      }
      if (enclaveError === 'path_not_allowed') throw new HostError('endpoint_not_allowed', `${path} is not an allowed endpoint`);
      throw new HostError('gateway_error', 'the gateway could not complete the request');
    }
    const responseHeaders: Record<string, string | string[]> = {};
    for (const [name, value] of Object.entries(res.headers)) {
      if (value !== undefined && !RESPONSE_DROP.has(name)) responseHeaders[name] = value;
    }
    // /v1/models lists only what the key may call.
    if (req.method === 'GET' && path === '/v1/models' && key.allowedModels.length > 0 && res.statusCode === 200) {
      const list = (await res.body.json()) as { data?: Array<{ id: string }> };
      const aliases = await aliasesFor(key.projectId);
      const callable = new Set([...key.allowedModels, ...Object.keys(aliases).filter((a) => key.allowedModels.includes(aliases[a]!))]);
      const filtered = { ...list, data: (list.data ?? []).filter((m) => callable.has(m.id)) };
      delete responseHeaders['content-length'];
      delete responseHeaders['content-encoding'];
      finish(200, undefined, null);
      return reply.status(200).headers(responseHeaders).send(filtered);
    }
    const contentType = String(res.headers['content-type'] ?? '');
    const sse = contentType.includes('text/event-stream');
    const status0 = res.statusCode;
    // A small JSON answer of known length is read whole and sent in one write (no stream plumbing).
    const length = Number(res.headers['content-length']);
    if (!sse && !acc.stripInjectedUsage && Number.isInteger(length) && length <= SMALL_RESPONSE) {
      let data: Buffer;
      try {
        data = Buffer.from(await res.body.arrayBuffer());
      } catch {
        finish(status0, undefined, 'upstream_broken');
        throw new HostError('gateway_error', 'the upstream response broke off');
      }
      // The answer goes out first; pricing, the spend update and the audit row follow it.
      reply.status(status0).headers(responseHeaders).send(data);
      finish(status0, { result: jsonUsage(data) }, status0 >= 400 ? 'upstream_error' : null);
      return reply;
    }
    const kind: StreamKind = path.startsWith('/v1/messages') ? 'anthropic' : path.startsWith('/v1/responses') ? 'responses' : 'openai';
    const tap = new UsageTap({ sse, kind, stripInjectedUsage: acc.stripInjectedUsage });
    if (sse || acc.stripInjectedUsage) delete responseHeaders['content-length'];
    const status = res.statusCode;
    tap.once('end', () => finish(status, tap, status >= 400 ? 'upstream_error' : null));
    reply.raw.once('close', () => finish(status, tap, reply.raw.writableFinished ? null : 'client_disconnected'));
    // If the enclave (or upstream) dies mid-stream, end the client's response with an error
    // instead of leaving it hanging; what was produced so far is charged.
    res.body.once('error', (e) => {
      finish(status, tap, 'upstream_broken');
      tap.destroy(e);
    });
    res.body.pipe(tap);
    return reply.status(status).headers(responseHeaders).send(tap);
  }
}
