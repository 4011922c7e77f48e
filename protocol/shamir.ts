/**
 * Shamir t-of-n secret sharing of a data key, wrapping `secrets.js-grempe` so the rest of the code
 * sees `Share` values (index + bytes) instead of the library's hex strings and global config.
 *
 * The library returns garbage, not an error, for too few or wrong shares, so combining is never
 * trusted on its own: `robustCombine` takes a `check` (the GCM tag of the sealed record) that
 * decides, and names shares that are inconsistent with the verified secret.
 * Splitting and the share wire encoding, which only owners run, are in owner/shamir-split.ts.
 */
import secrets from 'secrets.js-grempe';
import { abytes, fromHex, toHex } from './bytes.ts';
import { ProtocolError } from './errors.ts';

/** 8-bit field: share indices 1..255. */
const BITS = 8;
export const MAX_SHARES = 255;

export interface Share {
  /** 1-based x coordinate, 1..255. */
  index: number;
  /** The share's y values (opaque bytes). */
  data: Uint8Array;
}

/** Sets the library's field size (8 bits) if anything changed it; call before every use. */
export function configureShamir(): void {
  // The library keeps its field size in module state; check it on every call so nothing else
  // sharing the module can change what we compute.
  if (secrets.getConfig().bits !== BITS) {
    const rng = typeof process !== 'undefined' && process.versions?.node ? 'nodeCryptoRandomBytes' : 'browserCryptoGetRandomValues';
    secrets.init(BITS, rng);
  }
}

export function checkThreshold(threshold: number, shares: number): void {
  if (!Number.isInteger(threshold) || !Number.isInteger(shares) || threshold < 2 || shares < threshold || shares > MAX_SHARES) {
    throw new ProtocolError('shamir_invalid_parameters', 'need integers with 2 ≤ threshold ≤ shares ≤ 255');
  }
}

function toLibraryShare(share: Share): string {
  checkShare(share);
  // Layout of secrets.js-grempe: bits in base36, id in hex padded to the field's width, data hex.
  return BITS.toString(36) + share.index.toString(16).padStart(2, '0') + toHex(share.data);
}

export function checkShare(share: Share): Share {
  if (!Number.isInteger(share.index) || share.index < 1 || share.index > MAX_SHARES) {
    throw new ProtocolError('shamir_invalid_parameters', 'share index must be 1..255');
  }
  abytes(share.data, undefined, 'share data');
  if (share.data.length === 0) throw new ProtocolError('shamir_invalid_parameters', 'share data is empty');
  return share;
}

export function decodeShare(bytes: Uint8Array): Share {
  abytes(bytes, undefined, 'share');
  if (bytes.length < 2) throw new ProtocolError('shamir_invalid_parameters', 'share too short');
  return checkShare({ index: bytes[0]!, data: bytes.slice(1) });
}

/**
 * Lagrange-interpolates the secret from exactly the given shares. UNCHECKED: with too few or
 * bad shares this returns a wrong value without error. Use `robustCombine` unless the caller
 * verifies the result itself.
 */
export function combineSharesUnchecked(shares: readonly Share[]): Uint8Array {
  if (shares.length < 2) throw new ProtocolError('shamir_invalid_parameters', 'need at least 2 shares');
  const seen = new Set<number>();
  for (const s of shares) {
    checkShare(s);
    if (seen.has(s.index)) throw new ProtocolError('shamir_invalid_parameters', `share index ${s.index} given twice`);
    seen.add(s.index);
  }
  configureShamir();
  let hex: string;
  try {
    hex = secrets.combine(shares.map(toLibraryShare));
  } catch (cause) {
    throw new ProtocolError('shamir_invalid_parameters', 'shares could not be combined', { cause });
  }
  // The library may return an odd-length or empty string for inconsistent shares: that is a
  // wrong secret, reported as an empty result so the check fails.
  return /^(?:[0-9a-f]{2})+$/i.test(hex) ? fromHex(hex) : new Uint8Array(0);
}

export interface RobustCombineResult {
  secret: Uint8Array;
  /** Share indices (x coordinates) of the t shares that produced the verified secret. */
  usedIndices: number[];
  /** Share indices of shares inconsistent with the verified secret (bad or corrupted). */
  badIndices: number[];
  /** Positions in the input array of those bad shares, so callers can name who sent them. */
  badPositions: number[];
}

/** Upper bound on t-subsets tried, so a hostile share list cannot make us spin. */
const MAX_SUBSETS = 20_000;

function* subsets(count: number, size: number, start = 0, prefix: number[] = []): Generator<number[]> {
  if (prefix.length === size) {
    yield prefix.slice();
    return;
  }
  for (let i = start; i <= count - (size - prefix.length); i++) {
    prefix.push(i);
    yield* subsets(count, size, i + 1, prefix);
    prefix.pop();
  }
}

function tryCombine(shares: Share[]): Uint8Array | undefined {
  try {
    const secret = combineSharesUnchecked(shares);
    return secret.length === 0 ? undefined : secret;
  } catch {
    return undefined;
  }
}

/**
 * Finds a t-subset of `shares` whose combination passes `check`, then names every other share
 * that is inconsistent with it. Throws `shamir_combine_failed` when no subset verifies.
 */
export function robustCombine(
  shares: readonly Share[],
  threshold: number,
  check: (secret: Uint8Array) => boolean,
): RobustCombineResult {
  checkThreshold(threshold, Math.max(threshold, shares.length));
  if (shares.length < threshold) {
    throw new ProtocolError('shamir_combine_failed', `have ${shares.length} shares, need ${threshold}`);
  }
  let tried = 0;
  for (const positions of subsets(shares.length, threshold)) {
    if (++tried > MAX_SUBSETS) break;
    const subset = positions.map((p) => shares[p]!);
    const candidate = tryCombine(subset);
    if (!candidate || !check(candidate)) continue;
    // Any t consistent shares define the same polynomial: swap each other share in for the
    // last member of the verified subset and see whether the secret survives.
    const base = subset.slice(0, threshold - 1);
    const badPositions: number[] = [];
    shares.forEach((other, position) => {
      if (positions.includes(position)) return;
      const again = tryCombine([...base, other]);
      const agrees = again !== undefined && again.length === candidate.length && again.every((b, i) => b === candidate[i]);
      if (!agrees) badPositions.push(position);
    });
    return {
      secret: candidate,
      usedIndices: subset.map((s) => s.index).sort((a, b) => a - b),
      badIndices: badPositions.map((p) => shares[p]!.index),
      badPositions,
    };
  }
  throw new ProtocolError('shamir_combine_failed', 'no subset of the shares reconstructs a verifiable secret');
}
