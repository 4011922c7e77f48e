/**
 * The options a key (and a project's defaults) can be saved with: their route schema, the patch
 * they make, the plan features they need, and the names (cities, models) the server checks before
 * saving. A refused field is named in `error.param` (`KeyFieldError`), so a form can mark it.
 */
import { randomBytes } from 'node:crypto';
import type { FastifyError, FastifyInstance } from 'fastify';
import { parseDuration } from '../locks.ts';
import { dollarsToMicros, tokenRates } from '../pricing.ts';
import { normaliseScopes, ScopeError } from '../request/scopes.ts';
import type { ConnectionRecord, HostStore, KeyPatch } from '../store.ts';
import type { AdminGuard } from './guard.ts';

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

export const idParam = { type: 'object', properties: { id: { type: 'string', maxLength: 64 } }, required: ['id'] } as const;
const stringList = { type: 'array', maxItems: 100, items: { type: 'string', minLength: 1, maxLength: 128 } } as const;
export const keyOptions = {
  name: { type: 'string', maxLength: 100 },
  projectId: { type: 'string', pattern: '^proj_[A-Za-z0-9_-]{1,40}$' },
  models: stringList,
  cities: stringList,
  inactiveExpiry: { type: ['string', 'null'], maxLength: 20 },
  requireSignature: { type: 'boolean' },
  dailyLimit: { type: ['number', 'null'], minimum: 0, maximum: 1e9 },
  lifetimeLimit: { type: ['number', 'null'], minimum: 0, maximum: 1e9 },
  dailyRequests: { type: ['integer', 'null'], minimum: 0, maximum: 1e9 },
  weeklyLimit: { type: ['number', 'null'], minimum: 0, maximum: 1e9 },
  monthlyLimit: { type: ['number', 'null'], minimum: 0, maximum: 1e9 },
  expiresAt: { type: ['string', 'null'], maxLength: 40 },
  rpm: { type: ['integer', 'null'], minimum: 1, maximum: 1e9 },
  tpm: { type: ['integer', 'null'], minimum: 1, maximum: 1e12 },
  autoLock: { type: 'array', maxItems: 3, uniqueItems: true, items: { type: 'string', enum: ['ip', 'device', 'city'] } },
  scopes: { type: 'array', maxItems: 32, items: { type: 'string', minLength: 1, maxLength: 40 } },
  confirmUnknown: { type: 'boolean' },
} as const;

export interface KeyOptionsBody {
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
  /** Dollars per UTC week (Monday 00:00 to Monday) and per UTC calendar month; null removes the cap. */
  weeklyLimit?: number | null;
  monthlyLimit?: number | null;
  /** Absolute expiry: an ISO 8601 date (`2027-01-31`, 00:00 UTC) or date-time with a zone; null or `off` removes it. */
  expiresAt?: string | null;
  /** Requests and tokens (input + output) per UTC minute; null removes the limit. */
  rpm?: number | null;
  tpm?: number | null;
  /** What the key binds itself to on first use; `ip` is always included. */
  autoLock?: Array<'ip' | 'device' | 'city'>;
  /** What the key may be used for (host/request/scopes.ts); default `["inference"]`. */
  scopes?: string[];
  /** Save cities and models the server does not know (otherwise refused as unknown_city / unknown_model). */
  confirmUnknown?: boolean;
}

/** The body field a schema refusal is about ("/dailyLimit" → dailyLimit), when there is one. */
function fieldOfValidation(error: FastifyError): KeyFieldError | undefined {
  const first = error.validation?.[0];
  const param = first?.instancePath.split('/')[1] || (first?.params as { missingProperty?: string } | undefined)?.missingProperty;
  return param ? new KeyFieldError('invalid_request', param, error.message) : undefined;
}

/** Refusals of key fields name the field (`param`), as OpenAI's errors do; the rest goes to the app's handler. */
export function installKeyFieldErrors(app: FastifyInstance): void {
  app.setErrorHandler((error: FastifyError, _req, reply) => {
    const field = error instanceof KeyFieldError ? error : error.validation && error.validationContext === 'body' ? fieldOfValidation(error) : undefined;
    if (!field) throw error;
    reply.header('x-should-retry', 'false').header('x-sg-code', field.code);
    return reply.status(400).type('application/json').send({
      error: { message: field.message, type: 'invalid_request_error', param: field.param, code: field.code, ...(field.unknown.length ? { unknown: field.unknown } : {}) },
    });
  });
}

/** Features a key option would use: only setting a lock needs the plan; clearing one never does. */
export async function requireKeyFeatures(guard: AdminGuard, projectId: string, body: KeyOptionsBody): Promise<void> {
  if (body.cities && body.cities.length > 0) await guard.requireFeature(projectId, 'city_lock');
  if (body.autoLock?.includes('city')) await guard.requireFeature(projectId, 'city_lock');
  if (body.autoLock?.includes('device')) await guard.requireFeature(projectId, 'device_lock');
}

const ISO_DATE = /^\d{4}-\d{2}-\d{2}$/;
const ISO_DATE_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,3})?)?(Z|[+-]\d{2}:\d{2})$/;

/**
 * An absolute expiry as the API takes it: `off`/null clears it; otherwise an ISO 8601 date (the
 * start of that UTC day) or a date-time with an explicit zone — never local time, which would mean
 * something different on the owner's machine and the server. It must lie in the future.
 */
export function parseExpiresAt(value: string | null, now: number): number | null {
  if (value === null || value.trim().toLowerCase() === 'off') return null;
  const text = value.trim();
  const at = ISO_DATE.test(text) ? Date.parse(`${text}T00:00:00Z`) : ISO_DATE_TIME.test(text) ? Date.parse(text) : NaN;
  if (!Number.isFinite(at) || new Date(at).getUTCFullYear() > 9999) {
    throw new KeyFieldError('invalid_request', 'expiresAt', `expiresAt must be an ISO 8601 date (2027-01-31, meaning 00:00 UTC) or date-time with a zone (2027-01-31T18:00:00Z), or off; got "${text.slice(0, 40)}"`);
  }
  // A round trip catches dates that do not exist (2027-02-30 parses as March 2nd).
  if (ISO_DATE.test(text) && new Date(at).toISOString().slice(0, 10) !== text) throw new KeyFieldError('invalid_request', 'expiresAt', `expiresAt: ${text} is not a calendar date`);
  if (at <= now) throw new KeyFieldError('invalid_request', 'expiresAt', `expiresAt (${new Date(at).toISOString()}) is in the past: a key that expires now is a kill (\`securegate kill\`)`);
  return at;
}

/** The store patch a body asks for, and the signing secret it creates (shown once). */
export function optionsToPatch(body: KeyOptionsBody, now = Date.now()): { patch: KeyPatch; signingSecret?: string } {
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
  if (body.weeklyLimit !== undefined) patch.weeklyLimitMicros = body.weeklyLimit === null ? null : dollarsToMicros(body.weeklyLimit);
  if (body.monthlyLimit !== undefined) patch.monthlyLimitMicros = body.monthlyLimit === null ? null : dollarsToMicros(body.monthlyLimit);
  if (body.expiresAt !== undefined) patch.expiresAt = parseExpiresAt(body.expiresAt, now);
  if (body.rpm !== undefined) patch.rpmLimit = body.rpm;
  if (body.tpm !== undefined) patch.tpmLimit = body.tpm;
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

/**
 * Refuses city entries that are malformed, and cities and models the server does not know
 * unless the owner confirmed them: a typo must never silently lock a key out.
 */
export async function checkKeyNames(body: KeyOptionsBody, connection: ConnectionRecord, store: HostStore, knownCity: (entry: string) => Promise<boolean>): Promise<void> {
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
