import { describe, expect, it } from 'vitest';
import { isNonceRefusal, NONCE_REFUSALS, SHAREHOLDER_ERRORS, shareholderErrorOf } from './shareholder-errors.ts';

describe('shareholder error registry', () => {
  it('reads a registered code from a shareholder answer', () => {
    expect(shareholderErrorOf(409, { error: { code: 'share_exists', message: 'already' } })).toEqual({ code: 'share_exists', message: 'already', status: 409 });
  });

  it('treats a code outside the registry as unrecognized, even when it looks like a known family', () => {
    expect(shareholderErrorOf(403, { error: { code: 'nonce_forged', message: 'x' } }).code).toBe('unrecognized');
    expect(shareholderErrorOf(403, { error: { code: 'toString', message: 'x' } }).code).toBe('unrecognized');
    expect(shareholderErrorOf(502, '<html>bad gateway</html>')).toEqual({ code: 'unrecognized', message: 'HTTP 502', status: 502 });
  });

  it('names the nonce refusals a fresh challenge cures, and each is registered', () => {
    for (const code of NONCE_REFUSALS) expect(SHAREHOLDER_ERRORS[code].status).toBe(403);
    expect([...NONCE_REFUSALS].sort()).toEqual(['nonce_expired', 'nonce_unknown', 'nonce_used']);
  });
});

describe('isNonceRefusal', () => {
  it('recognizes the registered nonce refusals only', () => {
    expect(isNonceRefusal('nonce_used')).toBe(true);
    expect(isNonceRefusal('nonce_forged')).toBe(false);
    expect(isNonceRefusal('attestation_expired')).toBe(false);
    expect(isNonceRefusal(null)).toBe(false);
  });
});
