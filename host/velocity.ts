/**
 * Abuse detection: a sliding window of per-minute request counts per key (this instance's view).
 * A key whose last-minute rate exceeds both an absolute floor and `spikeFactor` × its own
 * average over the preceding window is suspended (the suspension itself is stored, so every
 * instance enforces it). The same spike rule applies to estimated token volume; many distinct
 * client IPs or models within a minute also count as abuse.
 */
export interface VelocityConfig {
  /** Requests in the last 60 s below this never trigger (default 300). */
  floorPerMinute: number;
  /** Multiple of the key's normal per-minute rate that counts as a spike (default 10). */
  spikeFactor: number;
  /** Distinct client IPs within a minute that count as abuse (default 20). */
  maxDistinctIpsPerMinute: number;
  /** Distinct models within a minute that count as abuse (default 20): credential stuffing of model names. */
  maxDistinctModelsPerMinute: number;
  /** Estimated input tokens within a minute that count as abuse when also 10× the key's normal (default 2M). */
  tokenFloorPerMinute: number;
  /** History used for the "normal" rate, in minutes (default 10). */
  windowMinutes: number;
  /** How long a suspension lasts (default 15 min). */
  suspendForMs: number;
}

export const DEFAULT_VELOCITY: VelocityConfig = {
  floorPerMinute: 300,
  spikeFactor: 10,
  maxDistinctIpsPerMinute: 20,
  maxDistinctModelsPerMinute: 20,
  tokenFloorPerMinute: 2_000_000,
  windowMinutes: 10,
  suspendForMs: 15 * 60_000,
};

interface KeyWindow {
  /** minute index → count */
  counts: Map<number, number>;
  /** minute index → estimated tokens */
  tokens: Map<number, number>;
  ips: Map<number, Set<string>>;
  models: Map<number, Set<string>>;
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

  /**
   * Records one request (its client IP, model, and estimated tokens); returns a reason string
   * when the key should be suspended.
   */
  record(keyId: string, ip: string, now: number, model?: string, tokens = 0): string | undefined {
    const minute = Math.floor(now / 60_000);
    let w = this.#keys.get(keyId);
    if (!w) {
      w = { counts: new Map(), tokens: new Map(), ips: new Map(), models: new Map() };
      this.#keys.set(keyId, w);
    }
    for (const map of [w.counts, w.tokens]) for (const m of map.keys()) if (m < minute - this.#config.windowMinutes) map.delete(m);
    for (const map of [w.ips, w.models]) for (const m of map.keys()) if (m < minute - 1) map.delete(m);
    w.counts.set(minute, (w.counts.get(minute) ?? 0) + 1);
    w.tokens.set(minute, (w.tokens.get(minute) ?? 0) + tokens);
    const add = (map: Map<number, Set<string>>, value: string) => map.set(minute, (map.get(minute) ?? new Set<string>()).add(value));
    add(w.ips, ip);
    if (model !== undefined) add(w.models, model);

    // Last 60 s ≈ this minute plus the overlapping share of the previous one.
    const into = (now % 60_000) / 60_000;
    const recent = (w.counts.get(minute) ?? 0) + (w.counts.get(minute - 1) ?? 0) * (1 - into);
    let history = 0;
    for (let m = minute - this.#config.windowMinutes; m < minute - 1; m++) history += w.counts.get(m) ?? 0;
    const normal = history / Math.max(1, this.#config.windowMinutes - 1);
    if (recent > this.#config.floorPerMinute && recent > this.#config.spikeFactor * Math.max(normal, 1)) {
      return `rate ${Math.round(recent)}/min exceeds ${this.#config.spikeFactor}× the key's normal ${normal.toFixed(1)}/min`;
    }
    const recentTokens = (w.tokens.get(minute) ?? 0) + (w.tokens.get(minute - 1) ?? 0) * (1 - into);
    let tokenHistory = 0;
    for (let m = minute - this.#config.windowMinutes; m < minute - 1; m++) tokenHistory += w.tokens.get(m) ?? 0;
    const normalTokens = tokenHistory / Math.max(1, this.#config.windowMinutes - 1);
    if (recentTokens > this.#config.tokenFloorPerMinute && recentTokens > this.#config.spikeFactor * Math.max(normalTokens, 1)) {
      return `about ${Math.round(recentTokens)} tokens/min exceeds ${this.#config.spikeFactor}× the key's normal volume`;
    }
    const distinct = (map: Map<number, Set<string>>) => new Set([...(map.get(minute) ?? []), ...(map.get(minute - 1) ?? [])]).size;
    if (distinct(w.ips) > this.#config.maxDistinctIpsPerMinute) return `${distinct(w.ips)} distinct client IPs within a minute`;
    if (distinct(w.models) > this.#config.maxDistinctModelsPerMinute) return `${distinct(w.models)} distinct models within a minute`;
    return undefined;
  }

  forget(keyId: string): void {
    this.#keys.delete(keyId);
  }
}
