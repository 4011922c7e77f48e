/**
 * Enforcing the owner-signed connection policy (protocol/SPEC.md §9) inside the enclave: classify
 * the forwarded request from the provider's endpoint table (the same rows the host uses), read
 * its model where the policy needs it, and count requests, tokens and micro-dollars per
 * connection per UTC day. The counters live in enclave memory: they bound what one running
 * enclave serves; leases (SPEC.md §9) bound what restarts and many enclaves can. Policy updates
 * arrive with leases (SPEC.md §9.2); `PolicyVersions` keeps the newest per connection.
 * Never logs a body or a model's prompt.
 */
import { ceilingReached, costMicroUsd, policyRefusal, policyVersion, utcDay, verifyPolicyUpdate, type ConnectionPolicy, type DayUsage } from '../protocol/connection-policy.ts';
import { ProtocolError } from '../protocol/errors.ts';
import type { SignedOwnerMessage } from '../protocol/owner-signature.ts';
import { matchEndpoint, providerSpec, type Access, type EndpointSpec } from '../protocol/providers/index.ts';
import { EnclaveError } from './errors.ts';
import type { RelayedUsage } from './usage-meter.ts';

/** A JSON body read to find its model is held in memory up to this size; larger is refused under a model rule. */
export const MAX_POLICY_BODY = 16 * 1024 * 1024;

export interface PolicyClassification {
  kind: EndpointSpec['kind'];
  access: Access;
  /** Token-priced endpoints are charged `unmeteredTokens` when their usage cannot be read. */
  metered: boolean;
  /** Where the model is named (only what the policy check needs). */
  model: EndpointSpec['model'];
  /** Path capture groups (a model named in the path). */
  groups: string[];
}

const accessOf = (method: string): Access => (method === 'GET' || method === 'HEAD' ? 'read' : method === 'DELETE' ? 'delete' : 'write');

/** One typed value from the endpoint table; a request no row describes is outside every policy. */
export function classifyForPolicy(providerId: string, method: string, clientPathWithQuery: string): PolicyClassification {
  const path = clientPathWithQuery.split('?', 1)[0]!;
  if (providerId === 'any') return { kind: 'any', access: accessOf(method), metered: false, model: { in: 'none' }, groups: [] };
  const spec = providerSpec(providerId);
  const hit = spec ? matchEndpoint(spec, method, path) : undefined;
  if (!hit) throw new EnclaveError('policy_operation_denied', `${method} ${path} is not an operation this connection's policy can grant`);
  const unit = hit.endpoint.price.unit;
  return { kind: hit.endpoint.kind, access: hit.endpoint.access, metered: unit === 'tokens' || unit === 'input_tokens', model: hit.endpoint.model, groups: hit.groups };
}

/** Does the policy need to know the model before the request goes out? */
export function policyNeedsModel(policy: ConnectionPolicy): boolean {
  return policy.models !== undefined || policy.ceiling.microUsd !== undefined;
}

/**
 * The model a request names: `undefined` for endpoints that name none, `null` when it cannot be
 * told (multipart, uploads, a body that is not a JSON object or is too large).
 */
export function requestModel(c: PolicyClassification, body: Buffer | undefined): string | null | undefined {
  const m = c.model;
  if (m.in === 'none') return undefined;
  if (m.in === 'path') return c.groups[m.group - 1] || null;
  if (m.in !== 'json' || body === undefined) return null;
  try {
    const parsed = JSON.parse(body.toString('utf8')) as unknown;
    const value = parsed && typeof parsed === 'object' && !Array.isArray(parsed) ? (parsed as Record<string, unknown>)[m.field] : undefined;
    return typeof value === 'string' && value.length > 0 ? value : null;
  } catch {
    return null;
  }
}

/** Refuses, with the typed enclave error, a request outside the policy's operations or models. */
export function checkPolicy(policy: ConnectionPolicy, c: PolicyClassification, model: string | null | undefined): void {
  const refusal = policyRefusal(policy, { kind: c.kind, access: c.access }, model);
  if (refusal?.code === 'operation') throw new EnclaveError('policy_operation_denied', refusal.message);
  if (refusal?.code === 'model') throw new EnclaveError('policy_model_denied', refusal.message);
}

/** Per connection, per UTC day: what this enclave has served under the connection's policy. */
export class DailyUsageLedger {
  readonly #days = new Map<string, { day: number; used: DayUsage }>();
  readonly #now: () => number;

  constructor(now: () => number = Date.now) {
    this.#now = now;
  }

  #entry(connectionId: string, day: number): DayUsage {
    let e = this.#days.get(connectionId);
    if (!e || e.day !== day) {
      e = { day, used: { requests: 0, tokens: 0, microUsd: 0 } };
      this.#days.set(connectionId, e);
    }
    return e.used;
  }

  used(connectionId: string): DayUsage {
    return { ...this.#entry(connectionId, utcDay(this.#now())) };
  }

  /**
   * Counts the request against today's ceiling or refuses it (`policy_ceiling_reached`). Requests
   * are counted here, before forwarding, so concurrent requests cannot pass a request ceiling;
   * tokens and dollars are counted as answers end, so in-flight answers can pass those ceilings
   * by at most what they use (SPEC.md §9). Returns the day to settle into.
   */
  admit(connectionId: string, policy: ConnectionPolicy): number {
    const day = utcDay(this.#now());
    const used = this.#entry(connectionId, day);
    const reached = ceilingReached(policy, used);
    if (reached) throw new EnclaveError('policy_ceiling_reached', `this connection's daily ${reached} ceiling is used up until 00:00 UTC`);
    used.requests += 1;
    return day;
  }

  /** Adds an answer's usage (or the policy's flat charge when a metered answer had none readable). */
  /** Returns the tokens counted (for the lease). */
  settle(connectionId: string, day: number, policy: ConnectionPolicy, c: PolicyClassification, model: string | undefined, usage: RelayedUsage | undefined): number {
    // An answer cut off before its final usage (the client or the host hung up after the text)
    // counts at least what an unmetered one does: partial counts alone would let anyone who hangs
    // up before the last event spend far beyond the owner's ceiling.
    const unmetered = { inputTokens: c.metered ? policy.unmeteredTokens : 0, outputTokens: 0 };
    const counted = !usage ? unmetered : usage.complete === false && usage.inputTokens + usage.outputTokens < unmetered.inputTokens ? unmetered : usage;
    const tokens = counted.inputTokens + counted.outputTokens;
    const e = this.#days.get(connectionId);
    // Usage of an answer that began yesterday is still counted against yesterday (it is gone).
    if (!e || e.day !== day) return tokens;
    e.used.tokens += tokens;
    e.used.microUsd += costMicroUsd(policy, model, counted);
    return tokens;
  }
}

/**
 * What the connection's current lease (the cached DEK's reconstruction) has served. When its
 * request or token quota or its TTL runs out, the DEK is dropped and the next request must obtain
 * a new lease from the shareholders, who count leases per connection per UTC day. A restarted
 * enclave has no DEK: it starts over with a new lease, it never resets a shareholder's count.
 */
export class LeaseMeter {
  readonly #leases = new Map<string, { lease: number; startedAt: number; requests: number; tokens: number }>();
  readonly #now: () => number;

  constructor(now: () => number = Date.now) {
    this.#now = now;
  }

  /** True when the lease `lease` of `connectionId` cannot serve another request. */
  exhausted(connectionId: string, lease: number | undefined, policy: ConnectionPolicy): boolean {
    const terms = policy.lease;
    const e = this.#leases.get(connectionId);
    if (!terms || lease === undefined || !e || e.lease !== lease) return false;
    return (
      (terms.requests !== undefined && e.requests >= terms.requests) ||
      (terms.tokens !== undefined && e.tokens >= terms.tokens) ||
      (terms.ttlMs !== undefined && this.#now() - e.startedAt >= terms.ttlMs)
    );
  }

  /** Counts a request under `lease` (a new lease number starts a fresh count). */
  use(connectionId: string, lease: number): void {
    let e = this.#leases.get(connectionId);
    if (!e || e.lease !== lease) {
      e = { lease, startedAt: this.#now(), requests: 0, tokens: 0 };
      this.#leases.set(connectionId, e);
    }
    e.requests += 1;
  }

  /** Adds an answer's tokens to the lease it was served under (if that is still the current one). */
  settle(connectionId: string, lease: number, tokens: number): void {
    const e = this.#leases.get(connectionId);
    if (e && e.lease === lease) e.tokens += tokens;
  }
}

/** A verified policy: what the enclave enforces. */
export interface ActivePolicy {
  policy: ConnectionPolicy;
  sha256: string;
  version: number;
}

/**
 * The newest owner-signed policy version per connection (SPEC.md §9.2). The record binds version 1
 * (its hash is in the AAD, so it also binds the owner key); updates come only with leases, sealed
 * into the shareholders' release envelopes, and are accepted only when signed by that same owner
 * key, for that connection, and newer than what this enclave already enforces — so a host can
 * neither pair a record with another connection's policy nor bring back an older one, and a
 * withheld update cannot outlive the next lease. Memory only: a restarted enclave starts from the
 * record's policy and learns the newest one at its first lease, before serving under it.
 */
export class PolicyVersions {
  readonly #newest = new Map<string, ActivePolicy & { owner: string }>();

  /** What to enforce for `connectionId` whose record binds `base`. */
  effective(connectionId: string, base: { signed: SignedOwnerMessage; policy: ConnectionPolicy; sha256: string }): ActivePolicy {
    const n = this.#newest.get(connectionId);
    if (n && n.owner === base.signed.publicKey && n.version > policyVersion(base.policy)) return n;
    return { policy: base.policy, sha256: base.sha256, version: policyVersion(base.policy) };
  }

  /**
   * Takes the updates a lease carried. One that is not the owner's for this connection fails the
   * lease (`policy_invalid`, fail closed); one not newer than what is enforced is refused silently
   * (a rollback changes nothing). Returns the policy to enforce from now on.
   */
  adopt(connectionId: string, base: { signed: SignedOwnerMessage; policy: ConnectionPolicy; sha256: string }, updates: SignedOwnerMessage[]): ActivePolicy {
    for (const signed of updates) {
      const current = this.effective(connectionId, base);
      try {
        const next = verifyPolicyUpdate(signed, { signed: base.signed, connectionId }, current.version);
        this.#newest.set(connectionId, { ...next, owner: base.signed.publicKey });
      } catch (e) {
        if (e instanceof ProtocolError && e.code === 'policy_rollback') continue;
        throw new EnclaveError('policy_invalid', `a lease carried a policy update that is not this connection's owner's: ${(e as Error).message}`);
      }
    }
    return this.effective(connectionId, base);
  }

  /** The version enforced for `connectionId` (tests, receipts). */
  versionOf(connectionId: string): number | undefined {
    return this.#newest.get(connectionId)?.version;
  }
}
