/**
 * The HTTP status for a shareholder error code — the shareholders' side of
 * protocol/shareholder-errors.ts. The enclave reads codes, never answers with them, so its image
 * does not contain this.
 */
import { SHAREHOLDER_ERRORS, type ShareholderErrorCode } from './shareholder-errors.ts';

/** The status a shareholder answers with when it refused every connection of a release for `code`. */
export function shareholderStatus(code: ShareholderErrorCode): number {
  return SHAREHOLDER_ERRORS[code].status;
}
