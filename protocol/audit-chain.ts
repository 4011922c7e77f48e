/**
 * Hash-chained audit logs (shareholders' transparency logs), pure: each entry's hash is
 * SHA-256(prevHash ‖ canonical_json({seq, at, event})), so deleting or editing any entry breaks
 * every later hash. Shareholders append with it; owners' CLIs recompute it rather than trusting a
 * shareholder's own verdict.
 */
import { sha256 } from '@noble/hashes/sha2.js';
import { concatBytes, toHex, utf8 } from './bytes.ts';
import { canonicalJson, type CanonicalValue } from './owner-signature.ts';

export const GENESIS_HASH = '0'.repeat(64);

export interface ChainedEntry<E = unknown> {
  seq: number;
  at: string;
  event: E;
  prevHash: string;
  hash: string;
}

export function auditHash(seq: number, at: string, event: unknown, prevHash: string): string {
  return toHex(sha256(concatBytes(utf8(prevHash), utf8(canonicalJson({ seq, at, event: event as CanonicalValue })))));
}

/** Returns the seq of the first entry that breaks the chain, or undefined if it is intact. */
export function verifyAuditChain(entries: readonly ChainedEntry[]): number | undefined {
  let prev = GENESIS_HASH;
  let expectedSeq = entries[0]?.seq ?? 1;
  for (const e of entries) {
    if (e.seq !== expectedSeq || e.prevHash !== prev || auditHash(e.seq, e.at, e.event, e.prevHash) !== e.hash) return e.seq;
    prev = e.hash;
    expectedSeq++;
  }
  return undefined;
}
