/**
 * Owner-side onboarding, shared by the CLI (Node) and the dashboard (browser): seal the upstream
 * key under a fresh DEK, split the DEK t-of-n, HPKE-seal each share to its shareholder and sign
 * the enrollment with the owner's Ed25519 key. Returns what goes on the wire; the plaintext key,
 * DEK and shares are wiped before it returns. Pure: no I/O, randomness from WebCrypto.
 */
import { sha256 } from '@noble/hashes/sha2.js';
import { fromHex, toHex, wipe } from './bytes.ts';
import { sealUpstreamKey, type KeyBinding } from './sealed-record.ts';
import { encodeShare, splitSecret } from './shamir.ts';
import { sealShareEnvelope } from './share-envelope.ts';
import { signOwnerMessage, type CanonicalValue, type SignedOwnerMessage } from './owner-signature.ts';

export interface ShareholderPin {
  id: string;
  url: string;
  /** X25519 public key, hex. */
  publicKey: string;
}

export interface EnrollmentRequest {
  shareholder: ShareholderPin;
  /** The JSON body of `POST <shareholder>/v1/shares`. */
  body: { envelope: string; signed: SignedOwnerMessage };
}

export interface PreparedConnection {
  sealedRecord: Uint8Array;
  enrollments: EnrollmentRequest[];
}

export const randomBytesWeb = (n: number): Uint8Array => globalThis.crypto.getRandomValues(new Uint8Array(n));

function base64(bytes: Uint8Array): string {
  let s = '';
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s);
}

export async function prepareConnection(input: {
  apiKey: Uint8Array;
  binding: KeyBinding;
  shareholders: ShareholderPin[];
  threshold: number;
  ownerSecretKey: Uint8Array;
  pcrPolicy: { allow: Array<Record<string, string>>; allowDebug?: boolean };
  maxReleasesPerMinute?: number;
  random?: (n: number) => Uint8Array;
}): Promise<PreparedConnection> {
  const random = input.random ?? randomBytesWeb;
  const n = input.shareholders.length;
  const dek = random(32);
  try {
    const sealedRecord = sealUpstreamKey(input.apiKey, dek, input.binding, random);
    const shares = splitSecret(dek, input.threshold, n);
    const enrollments = await Promise.all(
      input.shareholders.map(async (sh, i) => {
        const plaintext = encodeShare(shares[i]!);
        const envelope = await sealShareEnvelope(fromHex(sh.publicKey), plaintext, { purpose: 'enroll', connectionId: input.binding.connectionId, shareholderId: sh.id });
        wipe(plaintext);
        wipe(shares[i]!.data);
        const signed = signOwnerMessage(input.ownerSecretKey, {
          type: 'enroll',
          connectionId: input.binding.connectionId,
          shareholderId: sh.id,
          issuedAt: Date.now(),
          envelopeSha256: toHex(sha256(envelope)),
          policy: input.pcrPolicy as unknown as CanonicalValue,
          maxReleasesPerMinute: input.maxReleasesPerMinute ?? 600,
        });
        return { shareholder: sh, body: { envelope: base64(envelope), signed } };
      }),
    );
    return { sealedRecord, enrollments };
  } finally {
    wipe(dek);
    wipe(input.apiKey);
  }
}

export { base64 as toBase64 };
