/**
 * The shareholder's audit events; the chain itself (hashing and verification) is
 * protocol/audit-chain.ts, shared with the owners' CLI. Entries hold ids, PCRs, policies and
 * outcomes, never shares or keys.
 */
import type { CanonicalValue, ChainedEntry } from '../protocol/index.ts';

export { auditHash, GENESIS_HASH, verifyAuditChain } from '../protocol/index.ts';

/**
 * `widening_pending`: a policy update admitting new measurements was accepted and waits for its
 * `effectiveAt`; `policy_widened`: it took effect; `widening_cancelled`: the owner cancelled it.
 * `connection_policy_updated`: a connection-policy version was stored (never `policy_updated`, from
 * which `attest audit` replays PCR policies).
 */
export type AuditOutcome = 'enrolled' | 'released' | 'refused' | 'policy_updated' | 'deleted' | 'widening_pending' | 'policy_widened' | 'widening_cancelled' | 'connection_policy_updated';

export interface AuditEvent {
  action: 'enroll' | 'release' | 'policy_update' | 'connection_policy' | 'delete' | 'challenge';
  outcome: AuditOutcome;
  connectionId?: string;
  code?: string;
  moduleId?: string;
  pcrs?: Record<string, string>;
  [field: string]: CanonicalValue | undefined;
}

export type AuditEntry = ChainedEntry<AuditEvent>;
