/**
 * Splitting a data key into Shamir shares and the share wire form (SPEC.md §2), on the owner's
 * machine at onboarding. The enclave only decodes and combines shares (../shamir.ts).
 */
import secrets from 'secrets.js-grempe';
import { abytes, fromHex, toHex } from '../bytes.ts';
import { ProtocolError } from '../errors.ts';
import { checkShare, checkThreshold, configureShamir, type Share } from '../shamir.ts';

/** Splits `secret` into `shares` shares, any `threshold` of which reconstruct it. */
export function splitSecret(secret: Uint8Array, threshold: number, shares: number): Share[] {
  abytes(secret, undefined, 'secret');
  if (secret.length === 0 || secret.length > 1024) {
    throw new ProtocolError('shamir_invalid_parameters', 'secret must be 1..1024 bytes');
  }
  checkThreshold(threshold, shares);
  configureShamir();
  return secrets.share(toHex(secret), shares, threshold).map(parseLibraryShare);
}

function parseLibraryShare(text: string): Share {
  const parts = secrets.extractShareComponents(text);
  return { index: parts.id, data: fromHex(parts.data, 'share data') };
}

/** Share wire form: index(1) ‖ data. */
export function encodeShare(share: Share): Uint8Array {
  checkShare(share);
  const out = new Uint8Array(1 + share.data.length);
  out[0] = share.index;
  out.set(share.data, 1);
  return out;
}
