/**
 * Admin routes for keys: create (the key itself is shown once), list with today's and lifetime
 * spend, change options, and the locks an owner drives by hand (IP lock, repin, device binding,
 * kill, activate, revoke, unsuspend). Never returns a key hash, a device salt or a signing
 * secret, except a signing secret once, when it is created.
 */
import { randomBytes } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import { normaliseIp } from '../client-ip.ts';
import { HostError } from '../errors.ts';
import { generateSgKey, hashSgKey, keyHint } from '../keys.ts';
import { deviceHash } from '../locks.ts';
import { MICROS } from '../pricing.ts';
import { DEFAULT_SCOPES } from '../request/scopes.ts';
import { periodOf } from '../spend-windows.ts';
import { utcDay } from '../spend.ts';
import type { KeyPatch, KeyRecord } from '../store.ts';
import { bundledCityDirectory } from './city-directory.ts';
import type { AdminDeps } from './deps.ts';
import type { AdminGuard } from './guard.ts';
import { checkKeyNames, idParam, keyOptions, optionsToPatch, requireKeyFeatures, type KeyOptionsBody } from './key-options.ts';

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
    weeklyLimit: k.weeklyLimitMicros === null ? null : k.weeklyLimitMicros / MICROS,
    monthlyLimit: k.monthlyLimitMicros === null ? null : k.monthlyLimitMicros / MICROS,
    expiresAt: k.expiresAt,
    rpm: k.rpmLimit,
    tpm: k.tpmLimit,
    autoLock: k.autoLock,
    scopes: k.scopes,
    boundCity: k.boundCity,
    boundCityAt: k.boundCityAt,
    deviceBoundAt: k.deviceBoundAt,
    createdAt: k.createdAt,
  };
}

export function registerKeyRoutes(app: FastifyInstance, deps: AdminDeps, guard: AdminGuard): void {
  const { store, accounts } = deps;
  const knownCity = deps.knownCity ?? bundledCityDirectory();

  app.post<{ Body: KeyOptionsBody & { connectionId: string } }>(
    '/keys',
    { schema: { body: { type: 'object', required: ['connectionId'], additionalProperties: false, properties: { connectionId: { type: 'string', maxLength: 64 }, ...keyOptions } } } },
    async (req, reply) => {
      const connection = await guard.mustGetConnection(req, req.body.connectionId);
      const projectId = req.body.projectId ?? connection.projectId;
      if (projectId !== connection.projectId) throw new HostError('invalid_request', 'a key must belong to its connection\'s project');
      // A key that says nothing about auto-lock takes its project's default (checked against the plan like its own).
      const inherited = req.body.autoLock ?? (await store.projectDefaultAutoLock(projectId)) ?? undefined;
      const body = inherited ? { ...req.body, autoLock: inherited } : req.body;
      await requireKeyFeatures(guard, projectId, body);
      await guard.requireRoom((await accounts.accountOfProject(projectId))!, 'keys');
      const { patch, signingSecret } = optionsToPatch(body);
      await checkKeyNames(body, connection, store, knownCity);
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
        weeklyLimitMicros: patch.weeklyLimitMicros ?? null,
        monthlyLimitMicros: patch.monthlyLimitMicros ?? null,
        expiresAt: patch.expiresAt ?? null,
        rpmLimit: patch.rpmLimit ?? null,
        tpmLimit: patch.tpmLimit ?? null,
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

  /** A key as listed: its settings and what it spent (settled) today, this week, this month and over its life, in dollars. */
  async function keyWithSpend(k: KeyRecord) {
    const day = utcDay(Date.now());
    const [today, week, month, life] = await Promise.all([
      deps.ledger.counter('key', k.id, periodOf.day(day)),
      deps.ledger.counter('key', k.id, periodOf.week(day)),
      deps.ledger.counter('key', k.id, periodOf.month(day)),
      deps.ledger.counter('key', k.id, 'life'),
    ]);
    return {
      ...publicKeyView(k),
      spentToday: today.spent / MICROS,
      // Kept only while the key has that cap (host/spend.ts): otherwise not known, so null.
      spentWeek: k.weeklyLimitMicros === null ? null : week.spent / MICROS,
      spentMonth: k.monthlyLimitMicros === null ? null : month.spent / MICROS,
      spentLifetime: life.spent / MICROS,
      requestsToday: today.requests,
    };
  }
  app.get<{ Querystring: { projectId?: string } }>('/keys', async (req) => {
    const visible = await guard.visibleProjects(req);
    return Promise.all((await store.listKeys(req.query.projectId)).filter((k) => !visible || visible.includes(k.projectId)).map(keyWithSpend));
  });
  app.get<{ Params: { id: string } }>('/keys/:id', { schema: { params: idParam } }, async (req) => keyWithSpend(await guard.mustGetKey(req, req.params.id)));

  app.patch<{ Params: { id: string }; Body: KeyOptionsBody }>(
    '/keys/:id',
    { schema: { params: idParam, body: { type: 'object', additionalProperties: false, properties: keyOptions } } },
    async (req) => {
      const key = await guard.mustGetKey(req, req.params.id);
      if (req.body.projectId && req.body.projectId !== key.projectId) {
        throw new HostError('invalid_request', 'a key stays in its connection\'s project; create a new key in the other project');
      }
      await requireKeyFeatures(guard, key.projectId, req.body);
      const { patch, signingSecret } = optionsToPatch(req.body);
      await checkKeyNames(req.body, (await store.getConnection(key.connectionId))!, store, knownCity);
      // A key marked expired by its expiry date comes back when the date moves later or goes away
      // (were it idle too long, the inactivity check expires it again at its next request).
      if (patch.expiresAt !== undefined && key.status === 'expired' && key.expiresAt !== null && key.expiresAt <= Date.now()) patch.status = 'active';
      const updated = await store.updateKey(key.id, patch);
      // Week and month counters are kept only while a key has such a cap: a cap set now starts from
      // the period's spend so far (after the key changed, so requests from now on count as well).
      const periods = [
        ...(patch.weeklyLimitMicros !== undefined && patch.weeklyLimitMicros !== null ? (['week'] as const) : []),
        ...(patch.monthlyLimitMicros !== undefined && patch.monthlyLimitMicros !== null ? (['month'] as const) : []),
      ];
      if (periods.length) await deps.ledger.startPeriodCounters(key.id, periods, Date.now());
      return { ...publicKeyView(updated!), ...(signingSecret ? { signingSecret } : {}) };
    },
  );

  app.post<{ Params: { id: string }; Body: { ip: string } }>(
    '/keys/:id/lock',
    { schema: { params: idParam, body: { type: 'object', required: ['ip'], additionalProperties: false, properties: { ip: { type: 'string', maxLength: 64 } } } } },
    async (req) => {
      const key = await guard.mustGetKey(req, req.params.id);
      await guard.requireFeature(key.projectId, 'ip_lock');
      const ip = normaliseIp(req.body.ip);
      if (!ip) throw new HostError('invalid_request', `${req.body.ip} is not an IP address`);
      return publicKeyView((await store.updateKey(req.params.id, { boundIp: ip, boundAt: Date.now() }))!);
    },
  );

  app.post<{ Params: { id: string } }>('/keys/:id/repin', { schema: { params: idParam } }, async (req) => {
    // Everything the key bound itself to on first use is released; the next request binds again.
    const key = await guard.mustGetKey(req, req.params.id);
    const patch: KeyPatch = { boundIp: null, boundAt: null, boundCity: null, boundCityAt: null };
    if (key.autoLock.includes('device')) Object.assign(patch, { deviceHash: null, deviceSalt: null, deviceBoundAt: null });
    return publicKeyView((await store.updateKey(req.params.id, patch))!);
  });

  app.post<{ Params: { id: string }; Body: { fingerprint: string } }>(
    '/keys/:id/device',
    { schema: { params: idParam, body: { type: 'object', required: ['fingerprint'], additionalProperties: false, properties: { fingerprint: { type: 'string', minLength: 16, maxLength: 256 } } } } },
    async (req) => {
      const key = await guard.mustGetKey(req, req.params.id);
      await guard.requireFeature(key.projectId, 'device_lock');
      const salt = randomBytes(16).toString('hex');
      return publicKeyView((await store.updateKey(req.params.id, { deviceSalt: salt, deviceHash: deviceHash(salt, req.body.fingerprint) }))!);
    },
  );

  app.delete<{ Params: { id: string } }>('/keys/:id/device', { schema: { params: idParam } }, async (req) => {
    await guard.mustGetKey(req, req.params.id);
    return publicKeyView((await store.updateKey(req.params.id, { deviceHash: null, deviceSalt: null }))!);
  });

  const statusRoute = (path: string, from: KeyRecord['status'][], to: KeyRecord['status'], event: string, blocked: (key: KeyRecord) => string | null = () => null) =>
    app.post<{ Params: { id: string } }>(path, { schema: { params: idParam } }, async (req) => {
      const key = await guard.mustGetKey(req, req.params.id);
      if (!from.includes(key.status)) throw new HostError('conflict', `key is ${key.status}; cannot ${event}`);
      const why = blocked(key);
      if (why) throw new HostError('conflict', why);
      const updated = await store.updateKey(key.id, { status: to });
      await store.addEvent({ id: `evt_${randomBytes(10).toString('hex')}`, at: Date.now(), projectId: key.projectId, keyId: key.id, type: event, detail: { by: 'owner' } });
      return publicKeyView(updated!);
    });
  statusRoute('/keys/:id/kill', ['active'], 'killed', 'key_killed');
  statusRoute('/keys/:id/activate', ['killed', 'expired'], 'active', 'key_activated', (key) =>
    key.expiresAt !== null && key.expiresAt <= Date.now() ? `key passed its expiry date (${new Date(key.expiresAt).toISOString()}): set a later one (\`keys update --expires-at\`) or remove it (\`--expires-at off\`)` : null);
  statusRoute('/keys/:id/revoke', ['active', 'killed', 'expired'], 'revoked', 'key_revoked');

  app.post<{ Params: { id: string } }>('/keys/:id/unsuspend', { schema: { params: idParam } }, async (req) => {
    await guard.mustGetKey(req, req.params.id);
    return publicKeyView((await store.updateKey(req.params.id, { suspendedUntil: null }))!);
  });
}
