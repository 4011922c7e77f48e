/**
 * Plans are operator configuration, not code: a JSON file (`--plans plans.json`, format in
 * docs/accounts.md) names each plan's limits and features; these defaults mirror the product
 * documents. The host enforces them on every admin request that would exceed a limit or use a
 * feature (never only in the CLI or dashboard): 403 `plan_limit` / `plan_feature`, naming the
 * plan and what would allow the request.
 *
 * Downgrade rule: changing an account's plan never deletes or disables anything. Connections
 * beyond a new limit keep serving; keys keep every lock they have (a lock only ever restricts, so
 * keeping it is the safe side). What is refused is new use: creating another connection while
 * at or over the limit, or setting a lock the plan lacks. Clearing a lock is always allowed.
 */
import { readFileSync } from 'node:fs';
import { HostError } from './errors.ts';

export const PLAN_FEATURES = ['ip_lock', 'city_lock', 'device_lock', 'any_api', 'attestation'] as const;
export type PlanFeature = (typeof PLAN_FEATURES)[number];
export const PLAN_LIMITS = ['connections', 'keys', 'members'] as const;
export type PlanLimit = (typeof PLAN_LIMITS)[number];

export interface Plan {
  id: string;
  name: string;
  /** A missing or null limit is unlimited. */
  limits: Partial<Record<PlanLimit, number | null>>;
  features: PlanFeature[];
}

export interface PlansConfig {
  /** The plan a self-service sign-up starts on. */
  signupPlan: string;
  plans: Plan[];
}

export const DEFAULT_PLANS: PlansConfig = {
  signupPlan: 'free',
  plans: [
    { id: 'free', name: 'Free', limits: { connections: 2 }, features: ['ip_lock'] },
    { id: 'pro', name: 'Pro', limits: {}, features: ['ip_lock', 'city_lock', 'device_lock'] },
    { id: 'enterprise', name: 'Enterprise', limits: {}, features: ['ip_lock', 'city_lock', 'device_lock', 'any_api', 'attestation'] },
  ],
};

/** What each feature is called in an error message. */
const FEATURE_TEXT: Record<PlanFeature, string> = {
  ip_lock: 'IP locks',
  city_lock: 'city locks',
  device_lock: 'device locks',
  any_api: 'any-API connections',
  attestation: 'attestation-verified enclave features',
};

export class PlanBook {
  readonly config: PlansConfig;
  private readonly byId: Map<string, Plan>;

  constructor(config: PlansConfig = DEFAULT_PLANS) {
    this.config = validatePlans(config);
    this.byId = new Map(this.config.plans.map((p) => [p.id, p]));
  }

  static fromFile(path: string): PlanBook {
    let parsed: unknown;
    try {
      parsed = JSON.parse(readFileSync(path, 'utf8'));
    } catch (e) {
      throw new Error(`plans file ${path}: ${(e as Error).message}`);
    }
    return new PlanBook(parsed as PlansConfig);
  }

  has(id: string): boolean {
    return this.byId.has(id);
  }

  get(id: string): Plan {
    const plan = this.byId.get(id);
    if (!plan) throw new HostError('plan_feature', `plan "${id}" is not configured on this server; ask the operator`);
    return plan;
  }

  /** Plans that have `feature`, cheapest (first listed) first — for "upgrade to …" hints. */
  private offering(feature: PlanFeature): string[] {
    return this.config.plans.filter((p) => p.features.includes(feature)).map((p) => p.name);
  }

  requireFeature(planId: string, feature: PlanFeature): void {
    const plan = this.get(planId);
    if (plan.features.includes(feature)) return;
    const upgrade = this.offering(feature);
    throw new HostError(
      'plan_feature',
      `the ${plan.name} plan does not include ${FEATURE_TEXT[feature]}${upgrade.length ? `; the ${upgrade.join(' or ')} plan does` : ''}`,
    );
  }

  /** Refuses when `current` already reaches the plan's limit (so one more would exceed it). */
  requireRoom(planId: string, limit: PlanLimit, current: number): void {
    const plan = this.get(planId);
    const max = plan.limits[limit];
    if (max === undefined || max === null || current < max) return;
    const bigger = this.config.plans.filter((p) => {
      const m = p.limits[limit];
      return m === undefined || m === null || m > max;
    }).map((p) => p.name);
    throw new HostError(
      'plan_limit',
      `the ${plan.name} plan allows at most ${max} ${limit}; this account has ${current}${bigger.length ? `. Upgrade to ${bigger.join(' or ')} for more` : ''}`,
    );
  }
}

function validatePlans(config: PlansConfig): PlansConfig {
  const fail = (why: string): never => {
    throw new Error(`invalid plans configuration: ${why}`);
  };
  if (typeof config !== 'object' || config === null || !Array.isArray(config.plans) || config.plans.length === 0) fail('expected {"signupPlan": "…", "plans": [ … ]}');
  const ids = new Set<string>();
  for (const p of config.plans) {
    if (typeof p.id !== 'string' || !/^[a-z0-9_-]{1,40}$/.test(p.id)) fail(`plan id ${JSON.stringify(p.id)} must match [a-z0-9_-]{1,40}`);
    if (ids.has(p.id)) fail(`plan ${p.id} is listed twice`);
    ids.add(p.id);
    if (typeof p.name !== 'string' || p.name.length === 0) fail(`plan ${p.id} needs a name`);
    if (!Array.isArray(p.features)) fail(`plan ${p.id}: features must be a list`);
    for (const f of p.features) if (!PLAN_FEATURES.includes(f)) fail(`plan ${p.id}: unknown feature ${JSON.stringify(f)} (known: ${PLAN_FEATURES.join(', ')})`);
    for (const [k, v] of Object.entries(p.limits ?? {})) {
      if (!PLAN_LIMITS.includes(k as PlanLimit)) fail(`plan ${p.id}: unknown limit ${JSON.stringify(k)} (known: ${PLAN_LIMITS.join(', ')})`);
      if (v !== null && (!Number.isInteger(v) || v < 0)) fail(`plan ${p.id}: limit ${k} must be a non-negative integer or null`);
    }
  }
  if (!ids.has(config.signupPlan)) fail(`signupPlan ${JSON.stringify(config.signupPlan)} is not one of the plans`);
  return { signupPlan: config.signupPlan, plans: config.plans.map((p) => ({ id: p.id, name: p.name, limits: { ...(p.limits ?? {}) }, features: [...p.features] })) };
}
