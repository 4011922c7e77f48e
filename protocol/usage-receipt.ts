/**
 * Signed usage receipts (SPEC.md §10): the enclave's running count of what it served for a
 * connection today, signed with an Ed25519 key made at boot whose public key is the `user_data`
 * of the enclave's attestation documents — so a receipt is as trustworthy as the attested code.
 * The host stores receipts; the owner compares them with what the host recorded. This module is
 * the signing side the enclave runs: the formats, the signed bytes and `user_data`. Checking
 * receipts is `usage-receipt-verify.ts` (owner, shareholders) and the whole comparison
 * `owner/usage-verify.ts`, which the enclave image does not contain. Pure.
 */
import { ed25519 } from '@noble/curves/ed25519.js';
import { concatBytes, toHex, utf8 } from './bytes.ts';
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
  /**
   * `seq` of this enclave's previous receipt for the same connection and day (0: the first): the
   * receipts of a connection-day form a chain, so one the host drops leaves a visible gap.
   */
  prevSeq: number;
  /** Unix ms. */
  at: number;
}

export interface SignedUsageReceipt {
  receipt: UsageReceipt;
  /** Ed25519 receipt key of the enclave, hex. */
  enclaveKey: string;
  signature: string;
}

/** What the receipt key signs: the domain label and the receipt's canonical JSON. */
export function usageReceiptBytes(receipt: UsageReceipt): Uint8Array {
  return concatBytes(utf8(USAGE_RECEIPT_DOMAIN), utf8(canonicalJson(receipt as unknown as Record<string, never>)));
}

/**
 * Who signs receipts and heads: the raw Ed25519 public key and a signing function. The enclave signs
 * receipts and heads all day long, so it passes its runtime's native Ed25519 (its private key never
 * in the JS heap, ~30x faster than JS); a raw 32-byte secret key signs in JS.
 */
export interface ReceiptSigner {
  publicKey: Uint8Array;
  sign(message: Uint8Array): Uint8Array;
}

function signerOf(key: Uint8Array | ReceiptSigner): ReceiptSigner {
  return key instanceof Uint8Array ? { publicKey: ed25519.getPublicKey(key), sign: (m) => ed25519.sign(m, key) } : key;
}

export function signUsageReceipt(key: Uint8Array | ReceiptSigner, receipt: UsageReceipt): SignedUsageReceipt {
  const signer = signerOf(key);
  return { receipt, enclaveKey: toHex(signer.publicKey), signature: toHex(signer.sign(usageReceiptBytes(receipt))) };
}

/** The attestation `user_data` that binds a receipt key to the attested enclave. */
export function receiptKeyUserData(publicKey: Uint8Array): Uint8Array {
  return concatBytes(utf8(RECEIPT_KEY_LABEL), publicKey);
}

export const RECEIPT_HEAD_DOMAIN = 'securegate/receipt-head/v1\n';

/**
 * The enclave's statement "my newest receipt has sequence number `seq`", signed with the receipt
 * key over a verifier's fresh `nonce`: a host that hides the newest receipts (the tail of the
 * chain) cannot answer with an older head, because it cannot sign the verifier's nonce.
 */
export interface ReceiptHead {
  seq: number;
  nonce: string;
  at: number;
  /** For each connection the verifier named: `seq` of the enclave's newest receipt for it (0: none). */
  newest: Record<string, number>;
}

export interface SignedReceiptHead {
  head: ReceiptHead;
  enclaveKey: string;
  signature: string;
}

/** What the receipt key signs for a head: the domain label and the head's canonical JSON. */
export const receiptHeadBytes = (head: ReceiptHead) => concatBytes(utf8(RECEIPT_HEAD_DOMAIN), utf8(canonicalJson(head as unknown as Record<string, never>)));

export function signReceiptHead(key: Uint8Array | ReceiptSigner, head: ReceiptHead): SignedReceiptHead {
  const signer = signerOf(key);
  return { head, enclaveKey: toHex(signer.publicKey), signature: toHex(signer.sign(receiptHeadBytes(head))) };
}
