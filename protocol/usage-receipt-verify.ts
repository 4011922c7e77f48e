/**
 * Checking usage receipts and heads (SPEC.md §10) that an enclave signed: the receipt key an
 * attestation document's `user_data` vouches for, and the signatures over receipts and heads.
 * Run by whoever verifies — the owner's `usage --verify` and dashboard (`owner/usage-verify.ts`),
 * shareholders reading the receipt key of the enclave they release to — never by the enclave,
 * which only signs (`usage-receipt.ts`). Pure.
 */
import { ed25519 } from '@noble/curves/ed25519.js';
import { fromHex, toHex, utf8 } from './bytes.ts';
import { ProtocolError } from './errors.ts';
import { receiptHeadBytes, RECEIPT_KEY_LABEL, usageReceiptBytes, type ReceiptHead, type SignedReceiptHead, type SignedUsageReceipt, type UsageReceipt } from './usage-receipt.ts';

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
    ok = signed.enclaveKey === enclaveKey && ed25519.verify(fromHex(signed.signature, 'signature'), usageReceiptBytes(signed.receipt), fromHex(enclaveKey, 'enclaveKey'));
  } catch (cause) {
    throw new ProtocolError('signature_invalid', 'usage receipt is malformed', { cause });
  }
  if (!ok) throw new ProtocolError('signature_invalid', 'usage receipt does not verify');
  return signed.receipt;
}

/** Verifies a head for `nonce` against an attested receipt key. */
export function verifyReceiptHead(signed: SignedReceiptHead, enclaveKey: string, nonce: string): ReceiptHead {
  let ok = false;
  try {
    ok = signed.enclaveKey === enclaveKey && signed.head.nonce === nonce && ed25519.verify(fromHex(signed.signature, 'signature'), receiptHeadBytes(signed.head), fromHex(enclaveKey, 'enclaveKey'));
  } catch (cause) {
    throw new ProtocolError('signature_invalid', 'receipt head is malformed', { cause });
  }
  if (!ok) throw new ProtocolError('signature_invalid', 'receipt head does not verify for this nonce');
  return signed.head;
}
