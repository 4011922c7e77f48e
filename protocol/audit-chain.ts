/**
 * Hash-chained audit logs (shareholders' transparency logs), pure: each entry's hash is
 * SHA-256(prevHash ‖ canonical_json({seq, at, event})), so deleting or editing any entry breaks
 * every later hash. Shareholders append with it; owners' CLIs recompute it rather than trusting a
 * shareholder's own verdict.
 */
import { ed25519 } from '@noble/curves/ed25519.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { abytes, concatBytes, fromHex, toHex, utf8 } from './bytes.ts';
import { ProtocolError } from './errors.ts';
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

/**
 * Signed log heads (SPEC.md §6): the shareholder signs (Ed25519, its log key) the newest entry's
 * seq and hash, so it cannot later serve a shorter or different history without contradicting a
 * head it signed. Owners' CLIs keep the last head they verified and check that every later log
 * extends it.
 */
export const LOG_HEAD_DOMAIN = 'securegate/log-head/v1\n';

export interface LogHead {
  shareholderId: string;
  /** Seq of the newest entry; 0 for an empty log. */
  seq: number;
  /** Its hash; GENESIS_HASH for an empty log. */
  hash: string;
  /** When the head was signed (ISO 8601). */
  at: string;
}

export interface SignedLogHead {
  head: LogHead;
  /** Ed25519 public key (the shareholder's log key), hex. */
  publicKey: string;
  /** Ed25519 signature, hex. */
  signature: string;
}

const headBytes = (head: LogHead) => concatBytes(utf8(LOG_HEAD_DOMAIN), utf8(canonicalJson(head as unknown as CanonicalValue)));

function checkHead(value: unknown): LogHead {
  const h = value as Record<string, unknown> | null;
  const bad = (m: string) => new ProtocolError('envelope_malformed', `log head: ${m}`);
  if (!h || typeof h !== 'object') throw bad('not an object');
  if (typeof h.shareholderId !== 'string' || h.shareholderId.length === 0) throw bad('shareholderId missing');
  if (typeof h.seq !== 'number' || !Number.isSafeInteger(h.seq) || h.seq < 0) throw bad('seq must be a non-negative integer');
  if (typeof h.hash !== 'string' || !/^[0-9a-f]{64}$/.test(h.hash)) throw bad('hash must be 64 hex digits');
  if (typeof h.at !== 'string') throw bad('at missing');
  return { shareholderId: h.shareholderId, seq: h.seq, hash: h.hash, at: h.at };
}

export function signLogHead(secretKey: Uint8Array, head: LogHead): SignedLogHead {
  abytes(secretKey, 32, 'secretKey');
  const checked = checkHead(head);
  return { head: checked, publicKey: toHex(ed25519.getPublicKey(secretKey)), signature: toHex(ed25519.sign(headBytes(checked), secretKey)) };
}

/** Verifies a signed head (by `expectedPublicKey` when given); returns the head or throws `signature_invalid`. */
export function verifyLogHead(value: unknown, expectedPublicKey?: Uint8Array): LogHead {
  const s = value as SignedLogHead | null;
  const head = checkHead(s?.head);
  let ok = false;
  try {
    const publicKey = fromHex(String(s!.publicKey), 'publicKey');
    ok =
      publicKey.length === 32 &&
      (expectedPublicKey === undefined || toHex(publicKey) === toHex(expectedPublicKey)) &&
      ed25519.verify(fromHex(String(s!.signature), 'signature'), headBytes(head), publicKey);
  } catch {
    ok = false;
  }
  if (!ok) throw new ProtocolError('signature_invalid', 'log head is not signed by the shareholder log key');
  return head;
}

export type LogProblem = 'chain_broken' | 'head_mismatch' | 'truncated' | 'rewritten';

export type LogCheck = { ok: true } | { ok: false; problem: LogProblem; seq: number; message: string };

/**
 * Checks `entries` (the log from seq 1, up to at least head.seq) against a signed `head` and the
 * last head this verifier accepted before (`previous`): the chain is intact up to the head, the
 * head names its newest entry, and the log extends `previous` — not shorter (truncated), and
 * with the same entry at previous.seq (otherwise rewritten, or forked).
 */
export function checkLogExtends(entries: readonly ChainedEntry[], head: LogHead, previous?: Pick<LogHead, 'seq' | 'hash'>): LogCheck {
  const upToHead = entries.filter((e) => e.seq <= head.seq);
  if (upToHead.length > 0 && upToHead[0]!.seq !== 1) return { ok: false, problem: 'chain_broken', seq: upToHead[0]!.seq, message: 'the log does not start at entry 1' };
  const broken = verifyAuditChain(upToHead);
  if (broken !== undefined) return { ok: false, problem: 'chain_broken', seq: broken, message: `the hash chain breaks at entry ${broken}` };
  const last = upToHead.at(-1);
  if ((last?.seq ?? 0) !== head.seq || (last?.hash ?? GENESIS_HASH) !== head.hash) {
    return { ok: false, problem: 'head_mismatch', seq: head.seq, message: `the signed head (entry ${head.seq}) is not the newest entry of the log served` };
  }
  if (!previous) return { ok: true };
  if (head.seq < previous.seq) {
    return { ok: false, problem: 'truncated', seq: previous.seq, message: `the log ends at entry ${head.seq}, but entry ${previous.seq} was signed and seen before` };
  }
  const then = previous.seq === 0 ? GENESIS_HASH : upToHead.find((e) => e.seq === previous.seq)?.hash;
  if (then !== previous.hash) {
    return { ok: false, problem: 'rewritten', seq: previous.seq, message: `entry ${previous.seq} differs from the one signed and seen before: history was rewritten` };
  }
  return { ok: true };
}
