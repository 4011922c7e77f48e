/**
 * Signed usage receipts (SPEC.md §10): the enclave's running count of what it served for a
 * connection today, signed with an Ed25519 key made at boot whose public key is the `user_data`
 * of the enclave's attestation documents — so a receipt is as trustworthy as the attested code.
 * The host stores receipts; the owner compares them with what the host recorded. Pure.
 */
import { ed25519 } from '@noble/curves/ed25519.js';
import { concatBytes, fromHex, toHex, utf8 } from './bytes.ts';
import { ProtocolError } from './errors.ts';
import { canonicalJson } from './owner-signature.ts';

export const USAGE_RECEIPT_DOMAIN = 'securegate/usage-receipt/v1\n';
/** `user_data` of an enclave attestation document = this label ‖ the 32-byte receipt key. */
export const RECEIPT_KEY_LABEL = 'securegate/receipt-key/v1:';

export interface UsageReceipt {
  connectionId: string;
  /** The connection policy the counts were kept under. */
  policySha256: string;
  /** UTC day number (⌊unix ms / 86 400 000⌋). */
  day: number;
  /** Counts served by this enclave for this connection on `day`, so far. */
  requests: number;
  tokens: number;
  microUsd: number;
  /** The lease (DEK reconstruction) the latest request was served under. */
  lease: number;
  /** Increases with every receipt this enclave signs: a replayed older receipt has a smaller one. */
  seq: number;
  /** Unix ms. */
  at: number;
}

export interface SignedUsageReceipt {
  receipt: UsageReceipt;
  /** Ed25519 receipt key of the enclave, hex. */
  enclaveKey: string;
  signature: string;
}

function signedBytes(receipt: UsageReceipt): Uint8Array {
  return concatBytes(utf8(USAGE_RECEIPT_DOMAIN), utf8(canonicalJson(receipt as unknown as Record<string, never>)));
}

export function signUsageReceipt(secretKey: Uint8Array, receipt: UsageReceipt): SignedUsageReceipt {
  return { receipt, enclaveKey: toHex(ed25519.getPublicKey(secretKey)), signature: toHex(ed25519.sign(signedBytes(receipt), secretKey)) };
}

/** The attestation `user_data` that binds a receipt key to the attested enclave. */
export function receiptKeyUserData(publicKey: Uint8Array): Uint8Array {
  return concatBytes(utf8(RECEIPT_KEY_LABEL), publicKey);
}

/** The receipt key a verified attestation document vouches for; throws when it carries none. */
export function receiptKeyFromUserData(userData: Uint8Array | null): string {
  const label = utf8(RECEIPT_KEY_LABEL);
  if (!userData || userData.length !== label.length + 32 || toHex(userData.subarray(0, label.length)) !== toHex(label)) {
    throw new ProtocolError('envelope_malformed', 'attestation user_data carries no receipt key');
  }
  return toHex(userData.subarray(label.length));
}

/** Verifies a receipt against the receipt key taken from a verified attestation document. */
export function verifyUsageReceipt(signed: SignedUsageReceipt, enclaveKey: string): UsageReceipt {
  let ok = false;
  try {
    ok = signed.enclaveKey === enclaveKey && ed25519.verify(fromHex(signed.signature, 'signature'), signedBytes(signed.receipt), fromHex(enclaveKey, 'enclaveKey'));
  } catch (cause) {
    throw new ProtocolError('signature_invalid', 'usage receipt is malformed', { cause });
  }
  if (!ok) throw new ProtocolError('signature_invalid', 'usage receipt does not verify');
  return signed.receipt;
}

export type UsageDisagreement =
  | { kind: 'under_reported'; connectionId: string; day: number; field: 'requests' | 'tokens' | 'microUsd'; host: number; enclave: number }
  | { kind: 'receipt_regressed'; connectionId: string; day: number; seq: number };

/**
 * What `usage --verify` reports for one enclave key: receipts must only grow (a host replaying an
 * older receipt, or dropping counts, shows as a regression), and the host's recorded totals for a
 * connection and day must be at least what the enclave's newest receipt says it served.
 * `receipts` must already be verified.
 */
export function compareUsage(
  receipts: UsageReceipt[],
  host: Array<{ connectionId: string; day: number; requests: number; tokens: number; microUsd?: number }>,
): UsageDisagreement[] {
  const out: UsageDisagreement[] = [];
  const newest = new Map<string, UsageReceipt>();
  for (const r of [...receipts].sort((a, b) => a.seq - b.seq)) {
    const id = `${r.connectionId}\u0000${r.day}`;
    const prev = newest.get(id);
    if (prev && (r.requests < prev.requests || r.tokens < prev.tokens || r.microUsd < prev.microUsd)) {
      out.push({ kind: 'receipt_regressed', connectionId: r.connectionId, day: r.day, seq: r.seq });
      continue;
    }
    newest.set(id, r);
  }
  for (const r of newest.values()) {
    const h = host.find((x) => x.connectionId === r.connectionId && x.day === r.day) ?? { requests: 0, tokens: 0, microUsd: 0 };
    for (const field of ['requests', 'tokens', 'microUsd'] as const) {
      const recorded = h[field] ?? 0;
      if (recorded < r[field] && !(field === 'microUsd' && h.microUsd === undefined)) {
        out.push({ kind: 'under_reported', connectionId: r.connectionId, day: r.day, field, host: recorded, enclave: r[field] });
      }
    }
  }
  return out;
}
