/**
 * The measurements the dev NSM reports (attestation/dev.ts) besides PCR0, and the dev policy that
 * pins them: PCR0–2 (which image) plus PCR8 (whose image — the dev stand-in for the EIF signing
 * certificate), the same shape production requires, so the owner-binding code runs in
 * development. A test double's data: never part of attestation/index.ts.
 */
import { createHash } from 'node:crypto';
import { pcr3ForRoleArn } from './policy.ts';

const sha384 = (label: string) => new Uint8Array(createHash('sha384').update(label).digest());
const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

/** PCR1 (kernel + bootstrap) and PCR2 (application) the dev NSM reports unless told otherwise. */
export const DEV_PCR1 = sha384('securegate-dev-kernel');
export const DEV_PCR2 = sha384('securegate-dev-application');

/** The role the dev NSM pretends its parent instance has, so owner-binding policies run in dev. */
export const DEV_PARENT_ROLE_ARN = 'arn:aws:iam::000000000000:role/securegate-dev-parent';
export const DEV_PCR3 = pcr3ForRoleArn(DEV_PARENT_ROLE_ARN);
/** A stand-in for a signed EIF's PCR8 (non-zero, like any signed image's). */
export const DEV_PCR8 = sha384('securegate-dev-eif-signing-certificate');

/** The dev default policy for an enclave bundle measured as `pcr0` (hex): PCR0, 1, 2 and 8. */
export function devPcrPolicy(pcr0: string): { allow: Array<Record<string, string>> } {
  return { allow: [{ '0': pcr0.toLowerCase(), '1': hex(DEV_PCR1), '2': hex(DEV_PCR2), '8': hex(DEV_PCR8) }] };
}
