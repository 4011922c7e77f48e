/**
 * Admission limits of the shareholder's public endpoints (challenges, releases), so that no one
 * caller can spend what another enclave needs (issue 18). Pure decision logic over an injected
 * time; the server keys them by the caller's address. Bounded memory: least recently seen callers
 * are forgotten first (a forgotten caller starts with a full bucket, never with more).
 */

export interface BucketLimit {
  /** Sustained rate. */
  perMinute: number;
  /** Largest burst (bucket size). */
  burst: number;
}

/** Token buckets per key (RFC 2697-style single rate). */
export class TokenBuckets {
  readonly #limit: BucketLimit;
  readonly #maxKeys: number;
  readonly #buckets = new Map<string, { tokens: number; at: number }>();

  constructor(limit: BucketLimit, maxKeys = 10_000) {
    if (!(limit.perMinute > 0) || !(limit.burst >= 1)) throw new RangeError('a bucket needs perMinute > 0 and burst >= 1');
    this.#limit = limit;
    this.#maxKeys = maxKeys;
  }

  /** Takes one token for `key` at `now` (ms); false when the bucket is empty. */
  take(key: string, now: number): boolean {
    const { perMinute, burst } = this.#limit;
    const b = this.#buckets.get(key) ?? { tokens: burst, at: now };
    this.#buckets.delete(key); // re-inserted below: Map order = least recently seen first
    const tokens = Math.min(burst, b.tokens + (Math.max(0, now - b.at) * perMinute) / 60_000);
    const ok = tokens >= 1;
    this.#buckets.set(key, { tokens: ok ? tokens - 1 : tokens, at: now });
    while (this.#buckets.size > this.#maxKeys) this.#buckets.delete(this.#buckets.keys().next().value!);
    return ok;
  }
}

/**
 * Challenge nonces issued and not yet used or expired, per caller and in total. Every nonce has
 * the same lifetime, so insertion order is expiry order and pruning is from the front.
 */
export class OutstandingNonces {
  readonly #byNonce = new Map<string, { source: string; expiresAt: number }>();
  readonly #bySource = new Map<string, number>();

  #prune(now: number): void {
    for (const [nonce, n] of this.#byNonce) {
      if (n.expiresAt > now) break;
      this.#drop(nonce);
    }
  }

  #drop(nonce: string): void {
    const n = this.#byNonce.get(nonce);
    if (!n) return;
    this.#byNonce.delete(nonce);
    const left = (this.#bySource.get(n.source) ?? 1) - 1;
    if (left <= 0) this.#bySource.delete(n.source);
    else this.#bySource.set(n.source, left);
  }

  /** How many unused, unexpired nonces `source` holds, and all callers together. */
  counts(source: string, now: number): { source: number; total: number } {
    this.#prune(now);
    return { source: this.#bySource.get(source) ?? 0, total: this.#byNonce.size };
  }

  add(nonce: string, source: string, expiresAt: number): void {
    this.#byNonce.set(nonce, { source, expiresAt });
    this.#bySource.set(source, (this.#bySource.get(source) ?? 0) + 1);
  }

  /** The nonce was presented (used or refused): it no longer counts against its caller. */
  settle(nonce: string): void {
    this.#drop(nonce);
  }
}

/**
 * A connection's release budget counts distinct enclave keys, not requests: releasing the same
 * share to the same attested enclave key again gives neither that enclave nor anyone else
 * anything new, so a caller replaying one enclave's attestation (anyone can ask a gateway for
 * one, `GET /v1/attestation?nonce=`) cannot use up the budget other enclaves need.
 */
export class ReleaseBudget {
  readonly #windows = new Map<string, Array<{ at: number; key: string }>>();
  readonly #windowMs: number;

  constructor(windowMs = 60_000) {
    this.#windowMs = windowMs;
  }

  /** Admits a release of `connectionId` to `enclaveKey` at `now` within `max` distinct keys per window. */
  admit(connectionId: string, enclaveKey: string, max: number, now: number): boolean {
    const window = (this.#windows.get(connectionId) ?? []).filter((r) => r.at > now - this.#windowMs);
    if (window.some((r) => r.key === enclaveKey)) {
      this.#windows.set(connectionId, window);
      return true;
    }
    if (window.length >= max) {
      this.#windows.set(connectionId, window);
      return false;
    }
    window.push({ at: now, key: enclaveKey });
    this.#windows.set(connectionId, window);
    return true;
  }
}
