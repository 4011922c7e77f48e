/**
 * The protocol package's error registry. Codes are API: callers and tests match on `.code`.
 * Messages never contain key material, shares or plaintext.
 */
export const PROTOCOL_ERROR_CODES = {
  envelope_malformed: 'An envelope or field does not have the documented layout.',
  envelope_version_unsupported: 'The envelope carries a version byte this code does not know.',
  envelope_auth_failed: 'AEAD authentication failed: wrong key, wrong binding (AAD) or tampered bytes.',
  shamir_invalid_parameters: 'Threshold or share count outside 2 ≤ t ≤ n ≤ 255, or malformed shares.',
  shamir_combine_failed: 'No subset of the given shares reconstructs a secret that passes the check.',
  signature_invalid: 'An owner signature does not verify for the stated key and message.',
  policy_rollback: 'A connection-policy update is not newer than the newest version the verifier holds.',
  canonical_encoding_invalid: 'A value cannot be canonically encoded (floats, undefined, non-plain objects).',
} as const;

export type ProtocolErrorCode = keyof typeof PROTOCOL_ERROR_CODES;

export class ProtocolError extends Error {
  readonly code: ProtocolErrorCode;
  constructor(code: ProtocolErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ProtocolError';
    this.code = code;
  }
}
