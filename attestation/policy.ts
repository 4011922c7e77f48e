/**
 * PCR policies: which enclave measurements may receive a secret. Pure decision logic.
 *
 * A policy is a list of allowed PCR sets (any one set matching is enough; every PCR a set names
 * must match exactly). Debug-mode documents — PCR0 all zeros, what Nitro reports for enclaves
 * started with --debug-mode — are refused unless the policy says `allowDebug: true`, which only
 * dev policies do.
 */
import { createHash } from 'node:crypto';
import { AttestationError } from './errors.ts';

/** PCRs with a defined meaning: 0 image, 1 kernel+bootstrap, 2 application, 3 IAM role, 4 instance id, 8 signing cert. */
export const POLICY_PCR_INDICES = [0, 1, 2, 3, 4, 8] as const;
export type PolicyPcrIndex = (typeof POLICY_PCR_INDICES)[number];
export const PCR_LENGTH = 48;

/** One allowed set: PCR index → lower-case hex of the 48-byte value. */
export type PcrSet = Partial<Record<`${PolicyPcrIndex}`, string>>;

export interface PcrPolicy {
  allow: PcrSet[];
  /** Accept debug-mode (all-zero PCR0) documents. Never set in production. */
  allowDebug?: boolean;
}

const PCR_HEX = /^[0-9a-f]{96}$/;
const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

/** Checks a policy's shape (for example one loaded from a file or an owner message). */
export function parsePcrPolicy(value: unknown): PcrPolicy {
  const bad = (m: string) => new AttestationError('attestation_malformed', `PCR policy: ${m}`);
  if (!value || typeof value !== 'object') throw bad('must be an object');
  const { allow, allowDebug } = value as Record<string, unknown>;
  if (!Array.isArray(allow)) throw bad('allow must be an array of PCR sets');
  if (allowDebug !== undefined && typeof allowDebug !== 'boolean') throw bad('allowDebug must be a boolean');
  const sets: PcrSet[] = allow.map((set, i) => {
    if (!set || typeof set !== 'object' || Array.isArray(set)) throw bad(`allow[${i}] must be an object`);
    const entries = Object.entries(set as Record<string, unknown>);
    if (entries.length === 0) throw bad(`allow[${i}] names no PCR`);
    const out: PcrSet = {};
    for (const [k, v] of entries) {
      if (!(POLICY_PCR_INDICES as readonly number[]).includes(Number(k)) || String(Number(k)) !== k) {
        throw bad(`allow[${i}] names PCR ${k}; allowed are ${POLICY_PCR_INDICES.join(', ')}`);
      }
      if (typeof v !== 'string' || !PCR_HEX.test(v.toLowerCase())) throw bad(`allow[${i}].${k} must be 96 hex digits`);
      out[k as `${PolicyPcrIndex}`] = v.toLowerCase();
    }
    return out;
  });
  return allowDebug ? { allow: sets, allowDebug } : { allow: sets };
}

/** PCRs that measure the image: 0 (whole EIF), 1 (kernel + bootstrap), 2 (application). */
export const IMAGE_PCR_INDICES = ['0', '1', '2'] as const;
/**
 * PCRs that say whose enclave it is rather than which code: 3 (the parent instance's IAM role)
 * and 8 (the certificate the EIF was signed with). The image is public, so anyone can run it;
 * only these keep a stranger's genuine enclave from receiving the owner's shares.
 */
export const OWNER_BINDING_PCR_INDICES = ['3', '8'] as const;

const ZERO_PCR = '0'.repeat(96);

export interface PolicyStrength {
  /**
   * `production`: every allowed set pins PCR0, PCR1 and PCR2, none of them all zeros, plus at least
   * one owner-controlled binding (PCR3 and/or PCR8, not all zeros); `allowDebug` is refused.
   * `dev`: the same sets (PCR0-2 plus an owner binding — the dev NSM reports realistic PCR1-3 and
   * PCR8, so the owner-binding code runs in development too); only debug documents and all-zero
   * PCRs stay possible, since dev documents are verified against a dev root pinned on purpose.
   */
  mode: 'production' | 'dev';
}

/**
 * Refuses a policy that does not say both *which code* and, in production, *whose enclave*
 * (issue 18: `{ "4": … }` admitted any non-debug image on that instance). Throws
 * `attestation_policy_weak` naming the first set and what it lacks.
 */
export function checkPolicyStrength(policy: PcrPolicy, strength: PolicyStrength): void {
  const weak = (m: string) => new AttestationError('attestation_policy_weak', `PCR policy: ${m}`);
  if (policy.allow.length === 0) throw weak('allows no enclave at all');
  const production = strength.mode === 'production';
  if (production && policy.allowDebug === true) throw weak('allowDebug is never accepted in production');
  policy.allow.forEach((set, i) => {
    const missing = IMAGE_PCR_INDICES.filter((k) => set[k] === undefined);
    if (missing.length > 0) {
      throw weak(`allow[${i}] does not pin the enclave image: PCR${missing.join(', PCR')} missing (PCR0, PCR1 and PCR2 are required)`);
    }
    if (production) {
      const zero = IMAGE_PCR_INDICES.filter((k) => set[k] === ZERO_PCR);
      if (zero.length > 0) throw weak(`allow[${i}] pins PCR${zero.join(', PCR')} to all zeros (a debug-mode enclave)`);
    }
    const bindings = OWNER_BINDING_PCR_INDICES.filter((k) => set[k] !== undefined && (!production || set[k] !== ZERO_PCR));
    if (bindings.length === 0) {
      throw weak(
        `allow[${i}] has no owner-controlled binding: the image is public and anyone can run it, so pin PCR3 (the parent instance's IAM role) and/or PCR8 (the EIF signing certificate)`,
      );
    }
  });
}

/**
 * PCR3 as Nitro computes it for a parent instance with IAM role `arn`: one extend of a zero
 * register with the ARN's UTF-8 bytes, SHA-384(0^48 ‖ arn) (AWS Nitro Enclaves User Guide, "Where
 * to get an enclave's measurements": PCR3). What an owner pins to bind shares to its own account.
 */
export function pcr3ForRoleArn(arn: string): Uint8Array {
  return new Uint8Array(createHash('sha384').update(new Uint8Array(48)).update(arn, 'utf8').digest());
}

/** Which owner-controlled bindings a document carries (non-zero PCR3 / PCR8), for reports. */
export function ownerBindings(pcrs: ReadonlyMap<number, Uint8Array>): { pcr3: string | null; pcr8: string | null } {
  const value = (i: number) => {
    const v = pcrs.get(i);
    return v === undefined || v.every((b) => b === 0) ? null : hex(v);
  };
  return { pcr3: value(3), pcr8: value(8) };
}

export function isDebugMode(pcrs: ReadonlyMap<number, Uint8Array>): boolean {
  const pcr0 = pcrs.get(0);
  return pcr0 !== undefined && pcr0.every((b) => b === 0);
}


/** Throws unless `pcrs` satisfy `policy`; returns the index of the matching set. */
export function checkPcrPolicy(pcrs: ReadonlyMap<number, Uint8Array>, policy: PcrPolicy): number {
  if (isDebugMode(pcrs) && policy.allowDebug !== true) {
    throw new AttestationError('attestation_debug_mode', 'document comes from a debug-mode enclave (PCR0 is all zeros)');
  }
  const index = policy.allow.findIndex((set) =>
    Object.entries(set).every(([k, want]) => {
      const got = pcrs.get(Number(k));
      return got !== undefined && hex(got) === want;
    }),
  );
  if (index < 0) throw new AttestationError('attestation_pcr_mismatch', 'PCRs match no allowed set of the policy');
  return index;
}

const setKey = (set: PcrSet) =>
  JSON.stringify(Object.entries(set).sort(([a], [b]) => Number(a) - Number(b)));

/**
 * What `next` admits that `current` did not: every allowed set not already in `current` (a set
 * compared by exactly the PCRs it names — a stricter copy of an allowed set counts as new, which
 * errs on the slow side), and debug mode if `next` newly allows it. Empty: `next` only keeps or
 * removes entries (a narrowing), which may take effect at once; anything else is a widening and
 * waits out the owner's delay (SPEC.md §8.3).
 */
export function policyWidening(current: PcrPolicy, next: PcrPolicy): { added: PcrSet[]; allowsDebug: boolean } {
  const have = new Set(current.allow.map(setKey));
  return { added: next.allow.filter((s) => !have.has(setKey(s))), allowsDebug: next.allowDebug === true && current.allowDebug !== true };
}

export function isPolicyWidening(current: PcrPolicy, next: PcrPolicy): boolean {
  const w = policyWidening(current, next);
  return w.added.length > 0 || w.allowsDebug;
}
