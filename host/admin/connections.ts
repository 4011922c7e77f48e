/**
 * Admin routes for connections: register a sealed upstream credential (its sealed record, origin,
 * auth scheme and shareholders — for a 0x04 record the set of ids and keys it binds; the host
 * never sees the key), list them, and rotate every key of one connection onto another — after
 * which the enclave drops the old connection's data key at once (`POST /evict`) instead of at its
 * TTL. Only https origins, except loopback in dev mode.
 */
import type { FastifyInstance } from 'fastify';
import {
  canonicalAllowList,
  canonicalOrigin,
  canonicalShareholderSet,
  isLoopbackHost,
  providerSpec,
  verifyConnectionPolicy,
  AUTH_SCHEME_PATTERN,
  SEALED_RECORD_VERSION_SHAREHOLDERS,
  type AuthScheme,
  type ShareholderSetMember,
  type SignedOwnerMessage,
} from '../../protocol/index.ts';
import { enclaveEvict } from '../enclave-client.ts';
import { HostError } from '../errors.ts';
import type { ConnectionRecord } from '../store.ts';
import type { AdminDeps } from './deps.ts';
import type { AdminGuard } from './guard.ts';
import { idParam, keyOptions } from './key-options.ts';

export function registerConnectionRoutes(app: FastifyInstance, deps: AdminDeps, guard: AdminGuard): void {
  const { store, plans } = deps;

  app.post<{ Body: { id: string; name?: string; projectId?: string; provider: string; origin: string; authScheme: AuthScheme; sealedRecord: string; threshold: number; shareholders: string[]; shareholderSet?: ShareholderSetMember[]; allow?: string; policy?: SignedOwnerMessage } }>(
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
            // The owner-signed connection policy a 0x03 record is sealed under (protocol/SPEC.md §9).
            policy: {
              type: 'object',
              required: ['message', 'publicKey', 'signature'],
              properties: { message: { type: 'object' }, publicKey: { type: 'string', pattern: '^[0-9a-f]{64}$' }, signature: { type: 'string', pattern: '^[0-9a-f]{128}$' } },
            },
            sealedRecord: { type: 'string', maxLength: 16384, pattern: '^[A-Za-z0-9+/]+={0,2}$' },
            threshold: { type: 'integer', minimum: 2, maximum: 255 },
            shareholders: { type: 'array', minItems: 2, maxItems: 255, items: { type: 'string', maxLength: 128 } },
            // The set a 0x04 record is sealed with, as the owner pinned it (protocol/SPEC.md §1).
            shareholderSet: {
              type: 'array',
              minItems: 2,
              maxItems: 255,
              items: {
                type: 'object',
                required: ['id', 'publicKey'],
                additionalProperties: false,
                properties: { id: { type: 'string', maxLength: 64 }, publicKey: { type: 'string', pattern: '^[0-9a-f]{64}$' } },
              },
            },
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
      if (url.protocol !== 'https:' && !(deps.dev && isLoopbackHost(url.hostname))) {
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
      // Only a 0x04 record opens with a set: refuse now what the enclave would refuse on every request
      // (a 0x04 record sent without its set the enclave refuses too). The enclave, not the host,
      // decides whether the set is the owner's: the record's AAD binds it.
      let shareholderSet: ShareholderSetMember[] | undefined;
      if (b.shareholderSet !== undefined) {
        if (Buffer.from(b.sealedRecord, 'base64')[0] !== SEALED_RECORD_VERSION_SHAREHOLDERS) {
          throw new HostError('invalid_request', 'shareholderSet is only for records sealed with their shareholder set (version 0x04)');
        }
        try {
          shareholderSet = canonicalShareholderSet(b.shareholderSet, b.threshold);
        } catch (e) {
          throw new HostError('invalid_request', `shareholderSet: ${(e as Error).message}`);
        }
        const ids = shareholderSet.map((m) => m.id);
        if (ids.length !== b.shareholders.length || ids.some((id) => !b.shareholders.includes(id))) {
          throw new HostError('invalid_request', 'shareholderSet must name the same shareholders as shareholders');
        }
      }
      if (b.policy !== undefined) {
        // The enclave verifies it against the record; the host refuses a policy that is not even this connection's.
        try {
          verifyConnectionPolicy(b.policy, b.id);
        } catch {
          throw new HostError('invalid_request', 'policy must be the owner-signed connection policy of this connection');
        }
      }
      guard.requireOwner(req, 'add connections');
      const projectId = b.projectId ?? (await guard.defaultProject(req));
      const accountId = await guard.projectAccount(req, projectId);
      if (b.provider === 'any') await guard.requireFeature(projectId, 'any_api');
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
        policy: b.policy ? JSON.stringify(b.policy) : null,
        shareholderSet: shareholderSet ? JSON.stringify(shareholderSet) : null,
        createdAt: Date.now(),
      };
      // Counting and inserting under the account's row lock: concurrent creations cannot both fit.
      const inserted = await store.db.transaction(async (tx) => {
        await tx.query('UPDATE accounts SET plan = plan WHERE id = $1', [accountId]);
        const [n] = await tx.query('SELECT COUNT(*) AS n FROM connections c JOIN projects p ON p.id = c.project_id WHERE p.account_id = $1', [accountId]);
        plans.requireRoom(await guard.planOf(accountId), 'connections', Number(n!.n));
        return store.insertConnection(record, tx);
      });
      if (!inserted) throw new HostError('conflict', 'a connection with this id exists');
      return reply.status(201).send({ id: record.id, name: record.name, provider: record.provider, origin: record.origin, projectId });
    },
  );

  app.get<{ Querystring: { projectId?: string } }>('/connections', async (req) => {
    const visible = await guard.visibleProjects(req);
    return (await store.listConnections(req.query.projectId)).filter((c) => !visible || visible.includes(c.projectId)).map((c) => ({
      id: c.id, name: c.name, provider: c.provider, origin: c.origin, projectId: c.projectId, threshold: c.threshold, allow: c.allow ? (JSON.parse(c.allow) as string[]) : null, createdAt: c.createdAt,
    }));
  });

  // Key rotation: every key of `from` moves to `to` (same project, same provider) in one statement.
  app.post<{ Params: { id: string }; Body: { to: string } }>(
    '/connections/:id/rotate',
    { schema: { params: idParam, body: { type: 'object', required: ['to'], additionalProperties: false, properties: { to: { type: 'string', maxLength: 64 } } } } },
    async (req) => {
      guard.requireOwner(req, 'rotate connections');
      const from = await guard.mustGetConnection(req, req.params.id);
      const to = await guard.mustGetConnection(req, req.body.to);
      if (from.projectId !== to.projectId || from.provider !== to.provider) throw new HostError('invalid_request', 'rotation keeps the project and the provider');
      const moved = await store.moveKeys(from.id, to.id);
      // No key reaches the old connection any more; its data key leaves the enclave now, not at its
      // TTL. Best effort: an enclave that does not confirm drops it at the TTL or lease end anyway.
      const evicted = deps.enclave ? await enclaveEvict(deps.enclave, from.id, 5_000) : false;
      if (!evicted) req.log.warn({ connectionId: from.id }, 'the enclave did not confirm dropping the rotated connection\'s data key; it expires at its TTL');
      return { from: from.id, to: to.id, moved, evicted };
    },
  );
}
