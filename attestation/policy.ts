/**
 * PCR policies: which enclave measurements may receive a secret. Pure decision logic.
 *
 * A policy is a list of allowed PCR sets (any one set matching is enough; every PCR a set names
 * must match exactly). Debug-mode documents — PCR0 all zeros, what Nitro reports for enclaves
 * started with --debug-mode — are refused unless the policy says `allowDebug: true`, which only
 * dev policies do.
 */
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

export function isDebugMode(pcrs: ReadonlyMap<number, Uint8Array>): boolean {
  const pcr0 = pcrs.get(0);
  return pcr0 !== undefined && pcr0.every((b) => b === 0);
}

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

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
