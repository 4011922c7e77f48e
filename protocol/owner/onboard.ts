/**
 * Owner-side onboarding, shared by the CLI (Node) and the dashboard (browser): seal the upstream
 * key under a fresh DEK, split the DEK t-of-n, HPKE-seal each share to its shareholder and sign
 * the enrollment with the owner's Ed25519 key. Returns what goes on the wire; the plaintext key,
 * DEK and shares are wiped before it returns. Pure: no I/O, randomness from WebCrypto.
 */
import { sha256 } from '@noble/hashes/sha2.js';
import { fromHex, toHex } from '../bytes.ts';
import { wipe } from './wipe.ts';
import { canonicalShareholderSet, shareholderSetSha256, type KeyBinding, type ShareholderSetMember } from '../sealed-record.ts';
import { sealUpstreamKey } from './seal-upstream-key.ts';
import { encodeShare, splitSecret } from './shamir-split.ts';
import { sealShareEnvelope } from '../share-envelope-seal.ts';
import type { CanonicalValue, SignedOwnerMessage } from '../owner-signature.ts';
import { signOwnerMessage } from './owner-sign.ts';
import { connectionPolicySha256, DEFAULT_POLICY_OPERATIONS, type ConnectionPolicy } from '../connection-policy.ts';
import { leaseLimitFor } from '../lease-limits.ts';
import { signConnectionPolicy } from './connection-policy-sign.ts';
import { ProtocolError } from '../errors.ts';

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
  /**
   * The owner-signed connection policy the record is sealed with (record version 0x03): the host
   * stores it with the connection and sends it in every descriptor (`ConnectionDescriptor.policy`).
   */
  connectionPolicy?: SignedOwnerMessage;
  /**
   * The shareholder set the record is sealed with (version 0x04: ids and identity keys as pinned,
   * sorted by id): the host stores it with the connection and sends it in every descriptor
   * (`ConnectionDescriptor.shareholders`); the record's AAD binds it with the threshold.
   */
  shareholderSet: ShareholderSetMember[];
}

/** What the owner chooses at `connect`; operations default to inference only. */
export type ConnectionPolicyInput = Partial<Pick<ConnectionPolicy, 'operations' | 'models' | 'prices' | 'lease' | 'unmeteredTokens'>> & Pick<ConnectionPolicy, 'ceiling'>;

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
  /** The connection policy the enclave enforces (SPEC.md §9); omitted: a record without one (0x01/0x02). */
  connectionPolicy?: ConnectionPolicyInput;
  random?: (n: number) => Uint8Array;
}): Promise<PreparedConnection> {
  const random = input.random ?? randomBytesWeb;
  const n = input.shareholders.length;
  let signedPolicy: SignedOwnerMessage | undefined;
  let maxLeasesPerDay: number | undefined;
  if (input.connectionPolicy) {
    const { operations, ...rest } = input.connectionPolicy;
    signedPolicy = signConnectionPolicy(input.ownerSecretKey, {
      ...rest,
      connectionId: input.binding.connectionId,
      issuedAt: Date.now(),
      operations: operations ?? [...DEFAULT_POLICY_OPERATIONS],
    });
    // k per shareholder so that ⌊n·k/t⌋ leases cannot serve more than the ceiling (SPEC.md §9).
    maxLeasesPerDay = leaseLimitFor(input.connectionPolicy, n, input.threshold);
    if (maxLeasesPerDay === 0) {
      throw new ProtocolError('envelope_malformed', 'the lease quota is too large for the daily ceiling with this many shareholders: choose a smaller lease');
    }
  }
  // The set the owner pinned (and t) go into the AAD (version 0x04): the enclave then trusts these
  // identity keys for this record's releases, not the ones in its own configuration (SPEC.md §1, §3).
  const shareholderSet = canonicalShareholderSet(input.shareholders, input.threshold);
  const binding: KeyBinding = {
    ...input.binding,
    ...(signedPolicy ? { policySha256: connectionPolicySha256(signedPolicy) } : {}),
    shareholderSetSha256: shareholderSetSha256(shareholderSet, input.threshold),
  };
  const dek = random(32);
  try {
    const sealedRecord = sealUpstreamKey(input.apiKey, dek, binding, random);
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
          ...(maxLeasesPerDay !== undefined ? { maxLeasesPerDay } : {}),
        });
        return { shareholder: sh, body: { envelope: base64(envelope), signed } };
      }),
    );
    return { sealedRecord, enrollments, shareholderSet, ...(signedPolicy ? { connectionPolicy: signedPolicy } : {}) };
  } finally {
    wipe(dek);
    wipe(input.apiKey);
  }
}

export { base64 as toBase64 };
