/**
 * Attestation error registry. Codes are API (CLI `--json` output, shareholder refusals, tests).
 */
export const ATTESTATION_ERROR_CODES = {
  attestation_malformed: 'Not a COSE_Sign1 Nitro attestation document of the documented structure.',
  attestation_signature_invalid: 'The ES384 COSE signature does not verify with the leaf certificate key.',
  attestation_chain_invalid: 'The certificate chain does not lead to a pinned root.',
  attestation_expired: 'A certificate is not valid at the verification time, or the document is too old.',
  attestation_nonce_mismatch: 'The document does not carry the nonce the verifier expected.',
  attestation_pcr_mismatch: 'The PCRs match no allowed set of the policy.',
  attestation_policy_weak:
    'The PCR policy does not pin the enclave image (PCR0, PCR1, PCR2) or, for production, an owner-controlled binding (PCR3 parent IAM role and/or PCR8 EIF signing certificate).',
  attestation_debug_mode: 'The document comes from a debug-mode enclave (PCR0 all zeros), refused by this policy.',
  nsm_unavailable: 'The Nitro Secure Module could not be reached or returned an error.',
} as const;

export type AttestationErrorCode = keyof typeof ATTESTATION_ERROR_CODES;

export class AttestationError extends Error {
  readonly code: AttestationErrorCode;
  constructor(code: AttestationErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'AttestationError';
    this.code = code;
  }
}
