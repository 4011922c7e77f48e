/**
 * The shareholders' error registry: every `{ "error": { "code" } }` a shareholder service
 * answers, with its HTTP status. Codes are API — the enclave, the owner's CLI and `attest audit`
 * (release refusals are logged under the same codes) branch on them — so a client reads the code
 * with `shareholderErrorOf`, never by matching a message or a code's prefix.
 *
 * Attestation refusals are the attestation package's codes (attestation/errors.ts), repeated here
 * because protocol/ imports no other folder; shareholders/server.ts checks at compile time that
 * every AttestationErrorCode is listed.
 */

export const SHAREHOLDER_ERRORS = {
  bad_request: { status: 400, about: 'The request or owner message does not have the documented shape.' },
  message_stale: { status: 400, about: 'The owner message was issued outside the accepted window of now.' },
  message_replayed: { status: 409, about: 'A newer owner message for this connection was already applied (or the share was deleted after it).' },
  owner_signature_invalid: { status: 403, about: 'The owner signature does not verify, or is not by the owner pinned at enrollment.' },
  policy_weak: { status: 400, about: 'The PCR policy does not pin the image (PCR0–2) and, where required, an owner binding (PCR3/PCR8).' },
  share_exists: { status: 409, about: 'A share for this connection is already enrolled.' },
  share_not_found: { status: 404, about: 'No share is enrolled for this connection.' },
  envelope_invalid: { status: 400, about: 'The enrollment envelope does not open with this shareholder key.' },
  widening_not_pending: { status: 404, about: 'A cancel named a policy widening that is not pending (already in effect, cancelled or never made).' },
  nonce_unknown: { status: 403, about: 'The document carries no challenge nonce this shareholder issued.' },
  nonce_used: { status: 403, about: 'The challenge nonce was already used for a release.' },
  nonce_expired: { status: 403, about: 'The challenge nonce expired before the release request.' },
  public_key_invalid: { status: 400, about: 'The document public_key is not a 32-byte X25519 key.' },
  rate_limited: { status: 429, about: 'Too many challenges or releases from this address, or for this connection this minute.' },
  lease_limit_reached: { status: 429, about: "The connection's owner-signed daily lease limit is spent (SPEC.md §9)." },
  attestation_malformed: { status: 403, about: 'attestation/errors.ts' },
  attestation_signature_invalid: { status: 403, about: 'attestation/errors.ts' },
  attestation_chain_invalid: { status: 403, about: 'attestation/errors.ts' },
  attestation_expired: { status: 403, about: 'attestation/errors.ts' },
  attestation_nonce_mismatch: { status: 403, about: 'attestation/errors.ts' },
  attestation_pcr_mismatch: { status: 403, about: 'attestation/errors.ts' },
  attestation_policy_weak: { status: 403, about: 'attestation/errors.ts (a stored policy that no longer passes the strength rule)' },
  attestation_debug_mode: { status: 403, about: 'attestation/errors.ts' },
  nsm_unavailable: { status: 403, about: 'attestation/errors.ts' },
  internal_error: { status: 500, about: 'The shareholder failed; the detail is in its own log only.' },
} as const satisfies Record<string, { status: number; about: string }>;

export type ShareholderErrorCode = keyof typeof SHAREHOLDER_ERRORS;

export function isShareholderErrorCode(value: unknown): value is ShareholderErrorCode {
  return typeof value === 'string' && Object.hasOwn(SHAREHOLDER_ERRORS, value);
}

/** Refusals a fresh challenge can cure: the nonce was spent, expired or forgotten (a restart). */
export const NONCE_REFUSALS: ReadonlySet<ShareholderErrorCode> = new Set(['nonce_unknown', 'nonce_used', 'nonce_expired']);

/** True for the nonce refusals (by registered code, never by prefix: `nonce_forged` is not one). */
export function isNonceRefusal(code: string | null | undefined): boolean {
  return isShareholderErrorCode(code) && NONCE_REFUSALS.has(code);
}

/**
 * What a shareholder's answer says went wrong: its registered code, or `unrecognized` (with the
 * HTTP status) when the body carries no code of this registry — a proxy's error page, a newer
 * shareholder's code — which a client must treat as a plain failure, never as a known refusal.
 */
export type ShareholderRefusal =
  | { code: ShareholderErrorCode; message: string; status: number }
  | { code: 'unrecognized'; message: string; status: number };

export function shareholderErrorOf(status: number, body: unknown): ShareholderRefusal {
  const error = (body as { error?: { code?: unknown; message?: unknown } } | null | undefined)?.error;
  const message = typeof error?.message === 'string' ? error.message : `HTTP ${status}`;
  if (isShareholderErrorCode(error?.code)) return { code: error.code, message, status };
  return { code: 'unrecognized', message: typeof error?.code === 'string' ? `${error.code}: ${message}` : message, status };
}
