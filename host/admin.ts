/**
 * Admin API (`/admin/v1`, bearer admin token) used by the CLI and dashboard: connections, keys
 * and their locks (kill, revoke, repin, IP lock, device binding, models, cities, expiry,
 * signatures, suspension), projects and model aliases, lock events. Never returns key hashes,
 * device salts or signing secrets (a signing secret is shown once, when it is created).
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import { canonicalOrigin, providerSpec, AUTH_SCHEMES, type AuthScheme } from '../protocol/index.ts';
import { normaliseIp } from './client-ip.ts';
import { HostError } from './errors.ts';
import { generateSgKey, hashSgKey, keyHint } from './keys.ts';
import { deviceHash, parseDuration } from './locks.ts';
import { DEFAULT_PROJECT, type ConnectionRecord, type HostStore, type KeyPatch, type KeyRecord } from './store.ts';

export interface AdminDeps {
  store: HostStore;
  pepper: Uint8Array;
  adminTokenHash: string;
  dev: boolean;
}

export function sha256Hex(text: string): string {
  return createHash('sha256').update(text).digest('hex');
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
} as const;

interface KeyOptionsBody {
  name?: string;
  projectId?: string;
  models?: string[];
  cities?: string[];
  inactiveExpiry?: string | null;
  requireSignature?: boolean;
}

function extractCredential(header: string | string[] | undefined): string | undefined {
  return typeof header === 'string' && /^Bearer\s+/i.test(header) ? header.replace(/^Bearer\s+/i, '').trim() : undefined;
}

export async function registerAdmin(app: FastifyInstance, deps: AdminDeps): Promise<void> {
  const { store } = deps;
  const expected = Buffer.from(deps.adminTokenHash, 'hex');

  app.addHook('onRequest', async (req) => {
    const token = extractCredential(req.headers.authorization);
    const got = Buffer.from(sha256Hex(token ?? ''), 'hex');
    if (!token || !timingSafeEqual(got, expected)) {
      throw new HostError('admin_unauthorized', 'admin token missing or wrong; run `securegate login`');
    }
  });

  async function mustGetKey(id: string): Promise<KeyRecord> {
    const key = await store.getKey(id);
    if (!key) throw new HostError('not_found', `no key ${id}`);
    return key;
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
        throw new HostError('invalid_request', (e as Error).message);
      }
    }
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
  app.post<{ Body: { id: string; name?: string; projectId?: string; provider: string; origin: string; authScheme: AuthScheme; sealedRecord: string; threshold: number; shareholders: string[] } }>(
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
            authScheme: { type: 'string', enum: [...AUTH_SCHEMES] },
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
      const projectId = b.projectId ?? DEFAULT_PROJECT;
      if (!(await store.projectExists(projectId))) throw new HostError('not_found', `no project ${projectId}`);
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
        createdAt: Date.now(),
      };
      if (!(await store.insertConnection(record))) throw new HostError('conflict', 'a connection with this id exists');
      return reply.status(201).send({ id: record.id, name: record.name, provider: record.provider, origin: record.origin, projectId });
    },
  );

  app.get<{ Querystring: { projectId?: string } }>('/connections', async (req) =>
    (await store.listConnections(req.query.projectId)).map((c) => ({
      id: c.id, name: c.name, provider: c.provider, origin: c.origin, projectId: c.projectId, threshold: c.threshold, createdAt: c.createdAt,
    })),
  );

  // ---- keys ----
  app.post<{ Body: KeyOptionsBody & { connectionId: string } }>(
    '/keys',
    { schema: { body: { type: 'object', required: ['connectionId'], additionalProperties: false, properties: { connectionId: { type: 'string', maxLength: 64 }, ...keyOptions } } } },
    async (req, reply) => {
      const connection = await store.getConnection(req.body.connectionId);
      if (!connection) throw new HostError('not_found', `no connection ${req.body.connectionId}`);
      const projectId = req.body.projectId ?? connection.projectId;
      if (projectId !== connection.projectId) throw new HostError('invalid_request', 'a key must belong to its connection\'s project');
      const { patch, signingSecret } = optionsToPatch(req.body);
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
        createdAt: now,
        updatedAt: now,
      };
      await store.insertKey(record);
      return reply.status(201).send({ ...publicKeyView(record), key, ...(signingSecret ? { signingSecret } : {}) });
    },
  );

  app.get<{ Querystring: { projectId?: string } }>('/keys', async (req) => (await store.listKeys(req.query.projectId)).map(publicKeyView));
  app.get<{ Params: { id: string } }>('/keys/:id', { schema: { params: idParam } }, async (req) => publicKeyView(await mustGetKey(req.params.id)));

  app.patch<{ Params: { id: string }; Body: KeyOptionsBody }>(
    '/keys/:id',
    { schema: { params: idParam, body: { type: 'object', additionalProperties: false, properties: keyOptions } } },
    async (req) => {
      const key = await mustGetKey(req.params.id);
      if (req.body.projectId && req.body.projectId !== key.projectId) {
        throw new HostError('invalid_request', 'a key stays in its connection\'s project; create a new key in the other project');
      }
      const { patch, signingSecret } = optionsToPatch(req.body);
      const updated = await store.updateKey(key.id, patch);
      return { ...publicKeyView(updated!), ...(signingSecret ? { signingSecret } : {}) };
    },
  );

  app.post<{ Params: { id: string }; Body: { ip: string } }>(
    '/keys/:id/lock',
    { schema: { params: idParam, body: { type: 'object', required: ['ip'], additionalProperties: false, properties: { ip: { type: 'string', maxLength: 64 } } } } },
    async (req) => {
      await mustGetKey(req.params.id);
      const ip = normaliseIp(req.body.ip);
      if (!ip) throw new HostError('invalid_request', `${req.body.ip} is not an IP address`);
      return publicKeyView((await store.updateKey(req.params.id, { boundIp: ip, boundAt: Date.now() }))!);
    },
  );

  app.post<{ Params: { id: string } }>('/keys/:id/repin', { schema: { params: idParam } }, async (req) => {
    await mustGetKey(req.params.id);
    return publicKeyView((await store.updateKey(req.params.id, { boundIp: null, boundAt: null }))!);
  });

  app.post<{ Params: { id: string }; Body: { fingerprint: string } }>(
    '/keys/:id/device',
    { schema: { params: idParam, body: { type: 'object', required: ['fingerprint'], additionalProperties: false, properties: { fingerprint: { type: 'string', minLength: 16, maxLength: 256 } } } } },
    async (req) => {
      await mustGetKey(req.params.id);
      const salt = randomBytes(16).toString('hex');
      return publicKeyView((await store.updateKey(req.params.id, { deviceSalt: salt, deviceHash: deviceHash(salt, req.body.fingerprint) }))!);
    },
  );

  app.delete<{ Params: { id: string } }>('/keys/:id/device', { schema: { params: idParam } }, async (req) => {
    await mustGetKey(req.params.id);
    return publicKeyView((await store.updateKey(req.params.id, { deviceHash: null, deviceSalt: null }))!);
  });

  const statusRoute = (path: string, from: KeyRecord['status'][], to: KeyRecord['status'], event: string) =>
    app.post<{ Params: { id: string } }>(path, { schema: { params: idParam } }, async (req) => {
      const key = await mustGetKey(req.params.id);
      if (!from.includes(key.status)) throw new HostError('conflict', `key is ${key.status}; cannot ${event}`);
      const updated = await store.updateKey(key.id, { status: to });
      await store.addEvent({ id: `evt_${randomBytes(10).toString('hex')}`, at: Date.now(), projectId: key.projectId, keyId: key.id, type: event, detail: { by: 'owner' } });
      return publicKeyView(updated!);
    });
  statusRoute('/keys/:id/kill', ['active'], 'killed', 'key_killed');
  statusRoute('/keys/:id/activate', ['killed', 'expired'], 'active', 'key_activated');
  statusRoute('/keys/:id/revoke', ['active', 'killed', 'expired'], 'revoked', 'key_revoked');

  app.post<{ Params: { id: string } }>('/keys/:id/unsuspend', { schema: { params: idParam } }, async (req) => {
    await mustGetKey(req.params.id);
    return publicKeyView((await store.updateKey(req.params.id, { suspendedUntil: null }))!);
  });

  // ---- projects and model aliases ----
  app.get('/projects', async () => store.listProjects());
  app.post<{ Body: { id: string; name: string } }>(
    '/projects',
    { schema: { body: { type: 'object', required: ['id', 'name'], additionalProperties: false, properties: { id: keyOptions.projectId, name: { type: 'string', minLength: 1, maxLength: 100 } } } } },
    async (req, reply) => {
      await store.ensureProject(req.body.id, req.body.name);
      return reply.status(201).send({ id: req.body.id, name: req.body.name });
    },
  );
  app.get<{ Params: { id: string } }>('/projects/:id/aliases', { schema: { params: idParam } }, async (req) => store.listAliases(req.params.id));
  app.put<{ Params: { id: string; alias: string }; Body: { target: string } }>(
    '/projects/:id/aliases/:alias',
    { schema: { body: { type: 'object', required: ['target'], additionalProperties: false, properties: { target: { type: 'string', minLength: 1, maxLength: 128 } } } } },
    async (req) => {
      if (!(await store.projectExists(req.params.id))) throw new HostError('not_found', `no project ${req.params.id}`);
      await store.setAlias(req.params.id, req.params.alias, req.body.target);
      return store.listAliases(req.params.id);
    },
  );
  app.delete<{ Params: { id: string; alias: string } }>('/projects/:id/aliases/:alias', async (req) => {
    await store.deleteAlias(req.params.id, req.params.alias);
    return store.listAliases(req.params.id);
  });

  // ---- events ----
  app.get<{ Querystring: { keyId?: string; type?: string; limit?: string } }>(
    '/events',
    { schema: { querystring: { type: 'object', properties: { keyId: { type: 'string', maxLength: 64 }, type: { type: 'string', maxLength: 64 }, limit: { type: 'string', pattern: '^[1-9][0-9]{0,3}$' } } } } },
    async (req) => store.listEvents({ ...req.query, limit: req.query.limit ? Number(req.query.limit) : 100 }),
  );
}
