/**
 * The host gateway (untrusted with keys): authenticates SG_ keys, checks policy, and forwards
 * opaque request/response bytes to the enclave. It never sees an upstream key or data key, and
 * never logs a request body or a credential header. On any enclave failure it returns one
 * generic error in the provider's shape and logs the detail.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type { Pool } from 'undici';
import {
  canonicalOrigin,
  encodeConnectionDescriptor,
  isAllowedPath,
  providerSpec,
  AUTH_SCHEMES,
  RPC_CONNECTION_HEADER,
  RPC_ENCLAVE_ERROR_HEADER,
  RPC_FORWARD_PREFIX,
  type AuthScheme,
} from '../protocol/index.ts';
import { errorBody, errorShapeForPath, HOST_ERRORS, HostError, type HostErrorCode } from './errors.ts';
import { generateSgKey, hashSgKey, isWellFormedSgKey, keyHint, safeEqualHex } from './keys.ts';
import type { ConnectionRecord, HostStore, KeyRecord } from './store.ts';

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
}

const HOP_BY_HOP = new Set([
  'connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'host',
  'authorization', 'x-api-key', 'api-key', 'proxy-authorization', 'cookie',
]);
const RESPONSE_DROP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade', RPC_ENCLAVE_ERROR_HEADER]);

export const LOG_REDACT = [
  'req.headers.authorization',
  'req.headers["x-api-key"]',
  'req.headers["api-key"]',
  'req.headers.cookie',
  'headers.authorization',
];

/** Extracts the SG_ key from `Authorization: Bearer`, `x-api-key` or `api-key`. */
export function credentialFrom(headers: IncomingHttpHeaders): string | undefined {
  const auth = headers.authorization;
  if (typeof auth === 'string' && /^Bearer\s+/i.test(auth)) return auth.replace(/^Bearer\s+/i, '').trim();
  for (const name of ['x-api-key', 'api-key']) {
    const v = headers[name];
    if (typeof v === 'string' && v.length > 0) return v.trim();
  }
  return undefined;
}

export function sha256Hex(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

export async function buildHostApp(config: HostConfig): Promise<FastifyInstance> {
  const { store, enclave, pepper } = config;
  const keyCacheTtl = config.keyCacheTtlMs ?? 5_000;
  const keyCache = new Map<string, { key: KeyRecord; connection: ConnectionRecord; until: number }>();

  const app = Fastify({
    logger: config.logger ?? false,
    bodyLimit: 1024 * 1024,
    requestIdHeader: false,
    // Strict schemas: a number is not silently turned into a string (or the reverse).
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false } },
    genReqId: () => `req_${randomBytes(12).toString('hex')}`,
  });

  function refuse(reply: FastifyReply, path: string, code: HostErrorCode, message: string) {
    const spec = HOST_ERRORS[code];
    if (!spec.retry) reply.header('x-should-retry', 'false');
    return reply.status(spec.status).type('application/json').send(errorBody(errorShapeForPath(path), code, spec.type, message));
  }

  app.setErrorHandler((error: Error & { statusCode?: number; validation?: unknown }, req, reply) => {
    const path = req.url.split('?')[0]!;
    if (error instanceof HostError) return refuse(reply, path, error.code, error.message);
    if (error.validation || (error.statusCode && error.statusCode < 500)) {
      return refuse(reply, path, 'invalid_request', error.message);
    }
    req.log.error({ err: { name: error.name, message: error.message } }, 'host internal error');
    return refuse(reply, path, 'gateway_error', 'the gateway could not complete the request');
  });

  app.get('/healthz', async () => ({ ok: true }));

  // ---- attestation (public): a fresh document from the enclave for customers to verify ----
  app.get<{ Querystring: { nonce?: string } }>('/v1/attestation', async (req, reply) => {
    const nonce = req.query.nonce ?? '';
    if (nonce && !/^(?:[0-9a-fA-F]{2}){1,512}$/.test(nonce)) throw new HostError('invalid_request', 'nonce must be hex, at most 512 bytes');
    let res;
    try {
      res = await enclave.request({ path: `/attestation${nonce ? `?nonce=${nonce}` : ''}`, method: 'GET' });
    } catch (e) {
      req.log.error({ err: (e as Error).message }, 'enclave unreachable');
      throw new HostError('enclave_unavailable', 'the enclave is unavailable');
    }
    const body = (await res.body.json()) as { document?: string; nsm?: string };
    if (res.statusCode !== 200 || !body.document) throw new HostError('enclave_unavailable', 'the enclave could not attest');
    return reply.send({ document: body.document, nsm: body.nsm, manifest: null });
  });

  // ---- admin API (the CLI and dashboard) ----
  await app.register(async (admin) => {
    admin.addHook('onRequest', async (req) => {
      const token = credentialFrom(req.headers);
      if (!token || !safeEqualHex(sha256Hex(token), config.adminTokenHash)) {
        throw new HostError('admin_unauthorized', 'admin token missing or wrong; run `securegate login`');
      }
    });

    admin.post<{
      Body: { id: string; name?: string; provider: string; origin: string; authScheme: AuthScheme; sealedRecord: string; threshold: number; shareholders: string[] };
    }>(
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
        if (url.protocol !== 'https:' && !(config.dev && loopback)) {
          throw new HostError('invalid_request', 'origin must be https (plain http only for loopback in dev mode)');
        }
        if (b.threshold > b.shareholders.length) throw new HostError('invalid_request', 'threshold exceeds the number of shareholders');
        const record: ConnectionRecord = {
          id: b.id,
          name: b.name ?? b.provider,
          provider: b.provider,
          origin,
          authScheme: b.authScheme,
          sealedRecord: b.sealedRecord,
          threshold: b.threshold,
          shareholders: b.shareholders,
          createdAt: new Date().toISOString(),
        };
        if (!(await store.insertConnection(record))) throw new HostError('conflict', 'a connection with this id exists');
        return reply.status(201).send({ id: record.id, name: record.name, provider: record.provider, origin: record.origin });
      },
    );

    admin.get('/connections', async () =>
      (await store.listConnections()).map((c) => ({ id: c.id, name: c.name, provider: c.provider, origin: c.origin, threshold: c.threshold, createdAt: c.createdAt })),
    );

    admin.post<{ Body: { connectionId: string } }>(
      '/keys',
      { schema: { body: { type: 'object', required: ['connectionId'], additionalProperties: false, properties: { connectionId: { type: 'string', maxLength: 64 } } } } },
      async (req, reply) => {
        const connection = await store.getConnection(req.body.connectionId);
        if (!connection) throw new HostError('not_found', `no connection ${req.body.connectionId}`);
        const key = generateSgKey();
        const record: KeyRecord = {
          id: `key_${randomBytes(10).toString('hex')}`,
          hash: hashSgKey(pepper, key),
          hint: keyHint(key),
          connectionId: connection.id,
          status: 'active',
          createdAt: new Date().toISOString(),
        };
        await store.insertKey(record);
        return reply.status(201).send({ id: record.id, key, connectionId: connection.id });
      },
    );

    admin.get('/keys', async () => (await store.listKeys()).map(({ hash: _hash, ...k }) => k));
  }, { prefix: '/admin/v1' });

  // ---- the proxy: every provider path, bodies streamed to the enclave untouched ----
  await app.register(async (proxy) => {
    proxy.removeAllContentTypeParsers();
    proxy.addContentTypeParser('*', (_req, _payload, done) => done(null));

    async function authenticate(req: FastifyRequest) {
      const credential = credentialFrom(req.headers);
      if (!credential || !isWellFormedSgKey(credential)) {
        throw new HostError('invalid_api_key', 'Invalid SecureGate key. Use the SG_… key from `securegate keys create`.');
      }
      const hash = hashSgKey(pepper, credential);
      const cached = keyCache.get(hash);
      if (cached && cached.until > Date.now()) return cached;
      const key = await store.findKeyByHash(hash);
      if (!key) throw new HostError('invalid_api_key', 'Invalid SecureGate key.');
      if (key.status === 'revoked') throw new HostError('key_revoked', 'This SecureGate key was revoked.');
      const connection = await store.getConnection(key.connectionId);
      if (!connection) throw new HostError('invalid_api_key', 'This key has no connection.');
      const entry = { key, connection, until: Date.now() + keyCacheTtl };
      keyCache.set(hash, entry);
      return entry;
    }

    proxy.all('/v1/*', async (req, reply) => {
      const path = req.url.split('?')[0]!;
      const { connection } = await authenticate(req);
      const spec = providerSpec(connection.provider);
      if (!spec || !isAllowedPath(spec, path.slice(3))) {
        throw new HostError('endpoint_not_allowed', `${req.method} ${path} is not an inference endpoint this key can call`);
      }
      const headers: Record<string, string | string[]> = {};
      for (const [name, value] of Object.entries(req.headers)) {
        if (value !== undefined && !HOP_BY_HOP.has(name) && !name.startsWith('x-sg-')) headers[name] = value;
      }
      headers[RPC_CONNECTION_HEADER] = encodeConnectionDescriptor({
        connectionId: connection.id,
        provider: connection.provider,
        origin: connection.origin,
        authScheme: connection.authScheme,
        sealedRecord: connection.sealedRecord,
        threshold: connection.threshold,
      });
      const hasBody = req.method !== 'GET' && req.method !== 'HEAD';
      const abort = new AbortController();
      // A client that goes away cancels the enclave call (and so the upstream call).
      reply.raw.on('close', () => {
        if (!reply.raw.writableFinished) abort.abort();
      });
      let res;
      try {
        res = await enclave.request({
          path: RPC_FORWARD_PREFIX + req.url,
          method: req.method as 'POST',
          headers,
          body: hasBody ? req.raw : null,
          signal: abort.signal,
          headersTimeout: 300_000,
          bodyTimeout: 300_000,
        });
      } catch (e) {
        req.log.error({ err: (e as Error).message }, 'enclave unreachable');
        throw new HostError('enclave_unavailable', 'the gateway could not reach its enclave');
      }
      const enclaveError = res.headers[RPC_ENCLAVE_ERROR_HEADER];
      if (typeof enclaveError === 'string') {
        const detail = (await res.body.json().catch(() => ({}))) as { error?: { message?: string } };
        req.log.warn({ enclaveError, detail: detail.error?.message }, 'enclave refused');
        if (enclaveError === 'shareholders_unavailable') {
          throw new HostError('shareholders_unavailable', 'Not enough key shareholders are reachable to use this key right now.');
        }
        if (enclaveError === 'path_not_allowed') throw new HostError('endpoint_not_allowed', `${path} is not an allowed endpoint`);
        throw new HostError('gateway_error', 'the gateway could not complete the request');
      }
      reply.status(res.statusCode);
      for (const [name, value] of Object.entries(res.headers)) {
        if (value !== undefined && !RESPONSE_DROP.has(name)) reply.header(name, value);
      }
      return reply.send(res.body);
    });
  });

  return app;
}
