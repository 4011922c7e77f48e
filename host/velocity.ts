/**
 * Abuse detection: a sliding window of per-minute request counts per key (this instance's view).
 * A key whose last-minute rate exceeds both an absolute floor and `spikeFactor` × its own
 * average over the preceding window is suspended (the suspension itself is stored, so every
 * instance enforces it). Also flags many distinct IPs or models within a minute.
 */
export interface VelocityConfig {
  /** Requests in the last 60 s below this never trigger (default 300). */
  floorPerMinute: number;
  /** Multiple of the key's normal per-minute rate that counts as a spike (default 10). */
  spikeFactor: number;
  /** Distinct client IPs within a minute that count as abuse (default 20). */
  maxDistinctIpsPerMinute: number;
  /** History used for the "normal" rate, in minutes (default 10). */
  windowMinutes: number;
  /** How long a suspension lasts (default 15 min). */
  suspendForMs: number;
}

export const DEFAULT_VELOCITY: VelocityConfig = {
  floorPerMinute: 300,
  spikeFactor: 10,
  maxDistinctIpsPerMinute: 20,
  windowMinutes: 10,
  suspendForMs: 15 * 60_000,
};

interface KeyWindow {
  /** minute index → count */
  counts: Map<number, number>;
  ips: Map<number, Set<string>>;
}

export class VelocityTracker {
  readonly #config: VelocityConfig;
  readonly #keys = new Map<string, KeyWindow>();

  constructor(config: Partial<VelocityConfig> = {}) {
    this.#config = { ...DEFAULT_VELOCITY, ...config };
  }

  get config(): VelocityConfig {
    return this.#config;
  }

  /** Records one request; returns a reason string when the key should be suspended. */
  record(keyId: string, ip: string, now: number): string | undefined {
    const minute = Math.floor(now / 60_000);
    let w = this.#keys.get(keyId);
    if (!w) {
      w = { counts: new Map(), ips: new Map() };
      this.#keys.set(keyId, w);
    }
    for (const m of w.counts.keys()) if (m < minute - this.#config.windowMinutes) w.counts.delete(m);
    for (const m of w.ips.keys()) if (m < minute - 1) w.ips.delete(m);
    w.counts.set(minute, (w.counts.get(minute) ?? 0) + 1);
    const ips = w.ips.get(minute) ?? new Set<string>();
    ips.add(ip);
    w.ips.set(minute, ips);

    // Last 60 s ≈ this minute plus the overlapping share of the previous one.
    const into = (now % 60_000) / 60_000;
    const recent = (w.counts.get(minute) ?? 0) + (w.counts.get(minute - 1) ?? 0) * (1 - into);
    let history = 0;
    for (let m = minute - this.#config.windowMinutes; m < minute - 1; m++) history += w.counts.get(m) ?? 0;
    const normal = history / Math.max(1, this.#config.windowMinutes - 1);
    if (recent > this.#config.floorPerMinute && recent > this.#config.spikeFactor * Math.max(normal, 1)) {
      return `rate ${Math.round(recent)}/min exceeds ${this.#config.spikeFactor}× the key's normal ${normal.toFixed(1)}/min`;
    }
    const distinct = new Set([...(w.ips.get(minute) ?? []), ...(w.ips.get(minute - 1) ?? [])]);
    if (distinct.size > this.#config.maxDistinctIpsPerMinute) return `${distinct.size} distinct client IPs within a minute`;
    return undefined;
  }

  forget(keyId: string): void {
    this.#keys.delete(keyId);
  }
}
