/**
 * Append-only, hash-chained audit log (pure part): each entry's hash covers the previous hash,
 * so deleting or editing any entry breaks every later hash. Entries hold ids, PCRs and outcomes,
 * never shares or keys.
 */
import { createHash } from 'node:crypto';
import { canonicalJson, type CanonicalValue } from '../protocol/index.ts';

export type AuditOutcome = 'enrolled' | 'released' | 'refused' | 'policy_updated' | 'deleted';

export interface AuditEvent {
  action: 'enroll' | 'release' | 'policy_update' | 'delete' | 'challenge';
  outcome: AuditOutcome;
  connectionId?: string;
  code?: string;
  moduleId?: string;
  pcrs?: Record<string, string>;
  [field: string]: CanonicalValue | undefined;
}

export interface AuditEntry {
  seq: number;
  at: string;
  event: AuditEvent;
  prevHash: string;
  hash: string;
}

export const GENESIS_HASH = '0'.repeat(64);

export function auditHash(seq: number, at: string, event: AuditEvent, prevHash: string): string {
  return createHash('sha256')
    .update(prevHash)
    .update(canonicalJson({ seq, at, event: event as Record<string, CanonicalValue> }))
    .digest('hex');
}

/** Returns the seq of the first entry that breaks the chain, or undefined if it is intact. */
export function verifyAuditChain(entries: readonly AuditEntry[]): number | undefined {
  let prev = GENESIS_HASH;
  let expectedSeq = entries[0]?.seq ?? 1;
  for (const e of entries) {
    if (e.seq !== expectedSeq || e.prevHash !== prev || auditHash(e.seq, e.at, e.event, e.prevHash) !== e.hash) return e.seq;
    prev = e.hash;
    expectedSeq++;
  }
  return undefined;
}
