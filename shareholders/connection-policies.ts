/**
 * Connection-policy updates at the shareholder (protocol/SPEC.md §9.1): the owner signs a new
 * version of a connection's policy (operations, models, daily ceiling, lease quota) and sends it to
 * every shareholder; this service checks it against the owner key pinned at enrollment, refuses a
 * version that is not above the one it holds (rollback), stores it, logs it in the transparency
 * log, recomputes its daily lease limit k from the new ceiling, and from then on sends it with
 * every lease (server.ts, in the release envelope's AAD), so the enclave learns it at its next
 * lease whatever the host relays. Never logs shares.
 */
import type { FastifyInstance } from 'fastify';
import { connectionPolicySha256, leaseLimitFor, policyVersion, ProtocolError, shareholderStatus, verifyConnectionPolicy, type ShareholderErrorCode, type SignedOwnerMessage } from '../protocol/index.ts';
import type { AuditEvent } from './audit.ts';
import type { ShareStore } from './store.ts';

export interface ConnectionPolicyDeps {
  store: ShareStore;
  audit: (event: AuditEvent) => Promise<unknown>;
}

/** A refusal with a code of the shareholders' error registry (protocol/shareholder-errors.ts), which fixes its status. */
class PolicyRefusal extends Error {
  readonly code: ShareholderErrorCode;
  constructor(code: ShareholderErrorCode, message: string) {
    super(message);
    this.code = code;
  }
}

/** Checks an update and returns what to store; throws PolicyRefusal. Pure apart from the inputs. */
export function checkConnectionPolicyUpdate(connectionId: string, signed: SignedOwnerMessage, pinnedOwner: string, current: number) {
  if (signed?.message?.type !== 'connection_policy') throw new PolicyRefusal('bad_request', 'expected an owner message of type connection_policy');
  if (signed.message.connectionId !== connectionId) throw new PolicyRefusal('bad_request', 'the policy is for another connection');
  if (signed.publicKey !== pinnedOwner) throw new PolicyRefusal('owner_signature_invalid', 'the policy is not signed by the owner pinned at enrollment');
  let policy;
  try {
    ({ policy } = verifyConnectionPolicy(signed, connectionId));
  } catch (e) {
    if (e instanceof ProtocolError && e.code === 'signature_invalid') throw new PolicyRefusal('owner_signature_invalid', 'owner signature does not verify');
    throw new PolicyRefusal('bad_request', (e as Error).message);
  }
  const version = policyVersion(policy);
  // Version 1 is the policy sealed into the record at connect; updates start at 2.
  if (version < 2 || version <= current) {
    throw new PolicyRefusal('message_replayed', `policy version ${version} is not newer than version ${Math.max(current, 1)} (rollback refused)`);
  }
  const bounded = (policy.ceiling.requests !== undefined && policy.lease?.requests !== undefined) || (policy.ceiling.tokens !== undefined && policy.lease?.tokens !== undefined);
  if (bounded && !policy.quorum) throw new PolicyRefusal('bad_request', 'a policy with a ceiling and a lease quota must name its quorum { n, t } so the lease limit can be computed');
  const k = policy.quorum ? leaseLimitFor(policy, policy.quorum.n, policy.quorum.t) : undefined;
  if (k === 0) throw new PolicyRefusal('bad_request', 'the lease quota is too large for the daily ceiling with this many shareholders');
  return { version, sha256: connectionPolicySha256(signed), maxLeasesPerDay: k ?? null };
}

export function registerConnectionPolicyRoutes(app: FastifyInstance, deps: ConnectionPolicyDeps): void {
  const { store, audit } = deps;
  const refuse = (reply: { status(n: number): { send(b: unknown): unknown } }, e: PolicyRefusal) => reply.status(shareholderStatus(e.code)).send({ error: { code: e.code, message: e.message } });

  app.get<{ Params: { id: string } }>('/v1/shares/:id/connection-policy', async (req, reply) => {
    const share = await store.getShare(req.params.id);
    if (!share) return refuse(reply, new PolicyRefusal('share_not_found', 'no share enrolled for this connection'));
    const current = await store.getConnectionPolicy(req.params.id);
    return { connectionId: req.params.id, version: current?.version ?? null, sha256: current?.sha256 ?? null, signed: current ? (JSON.parse(current.signed) as SignedOwnerMessage) : null, maxLeasesPerDay: share.maxLeasesPerDay ?? null };
  });

  app.put<{ Params: { id: string }; Body: { signed: SignedOwnerMessage } }>(
    '/v1/shares/:id/connection-policy',
    {
      schema: {
        body: {
          type: 'object',
          required: ['signed'],
          properties: {
            signed: {
              type: 'object',
              required: ['message', 'publicKey', 'signature'],
              properties: { message: { type: 'object' }, publicKey: { type: 'string', pattern: '^[0-9a-f]{64}$' }, signature: { type: 'string', pattern: '^[0-9a-f]{128}$' } },
            },
          },
        },
      },
    },
    async (req, reply) => {
      const connectionId = req.params.id;
      const { signed } = req.body;
      const share = await store.getShare(connectionId);
      if (!share) return refuse(reply, new PolicyRefusal('share_not_found', 'no share enrolled for this connection'));
      const current = (await store.getConnectionPolicy(connectionId))?.version ?? 0;
      let checked;
      try {
        checked = checkConnectionPolicyUpdate(connectionId, signed, share.ownerPublicKey, current);
        if (!(await store.setConnectionPolicy(connectionId, { version: checked.version, sha256: checked.sha256, signed: JSON.stringify(signed) }, checked.maxLeasesPerDay))) {
          throw new PolicyRefusal('message_replayed', 'a newer policy version was applied concurrently (rollback refused)');
        }
      } catch (e) {
        if (!(e instanceof PolicyRefusal)) throw e;
        await audit({ action: 'connection_policy', outcome: 'refused', connectionId, code: e.code });
        return refuse(reply, e);
      }
      await audit({ action: 'connection_policy', outcome: 'connection_policy_updated', connectionId, version: checked.version, policySha256: checked.sha256, maxLeasesPerDay: checked.maxLeasesPerDay, owner: signed.publicKey });
      return { connectionId, version: checked.version, sha256: checked.sha256, maxLeasesPerDay: checked.maxLeasesPerDay };
    },
  );
}
