/**
 * Owner signatures (SPEC.md §4): Ed25519 (RFC 8032) over a domain label and the canonical JSON
 * (RFC 8785 JCS restricted to strings, safe integers, booleans, null, arrays and plain objects —
 * no floats, so number formatting can never differ between signer and verifier).
 * Shareholders verify these themselves; the host only relays them. Making an owner key is
 * `owner/owner-keys.ts` and signing is `owner/owner-sign.ts` (the enclave image contains neither).
 */
import { ed25519 } from '@noble/curves/ed25519.js';
import { abytes, concatBytes, fromHex, toHex, utf8 } from './bytes.ts';
import { ProtocolError } from './errors.ts';

export const OWNER_SIGNATURE_DOMAIN = 'securegate/owner-signature/v1\n';

export type CanonicalValue = string | number | boolean | null | CanonicalValue[] | { [key: string]: CanonicalValue };

/** RFC 8785 canonical JSON for the restricted value set above. Throws on anything else. */
export function canonicalJson(value: unknown): string {
  if (value === null) return 'null';
  switch (typeof value) {
    case 'string':
      return JSON.stringify(value);
    case 'boolean':
      return value ? 'true' : 'false';
    case 'number':
      if (!Number.isSafeInteger(value)) {
        throw new ProtocolError('canonical_encoding_invalid', 'only safe integers are allowed in signed messages');
      }
      return String(value);
    case 'object': {
      if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
      const proto = Object.getPrototypeOf(value);
      if (proto !== Object.prototype && proto !== null) {
        throw new ProtocolError('canonical_encoding_invalid', 'only plain objects are allowed in signed messages');
      }
      // JCS sorts keys by UTF-16 code units, which is JavaScript's default string order.
      const keys = Object.keys(value).sort();
      const record = value as Record<string, unknown>;
      return `{${keys
        .filter((k) => record[k] !== undefined)
        .map((k) => `${JSON.stringify(k)}:${canonicalJson(record[k])}`)
        .join(',')}}`;
    }
    default:
      throw new ProtocolError('canonical_encoding_invalid', `cannot sign a value of type ${typeof value}`);
  }
}

/** Kinds of owner-signed messages; the `type` field is part of what is signed. */
/** `widening_cancel`: cancels a pending PCR policy widening by its hash (SPEC.md §8.3). */
export type OwnerMessageType = 'enroll' | 'policy_update' | 'widening_cancel' | 'revoke' | 'delete' | 'connection_policy';

export interface OwnerMessage {
  type: OwnerMessageType;
  connectionId: string;
  /** Unix milliseconds; verifiers bound its age so an old message cannot be replayed forever. */
  issuedAt: number;
  [field: string]: CanonicalValue;
}

export interface SignedOwnerMessage {
  message: OwnerMessage;
  /** Ed25519 public key, hex. */
  publicKey: string;
  /** Ed25519 signature, hex (64 bytes). */
  signature: string;
}

/** The bytes an owner signature covers: the domain label, then the canonical JSON of `message`. */
export function signedBytes(message: OwnerMessage): Uint8Array {
  return concatBytes(utf8(OWNER_SIGNATURE_DOMAIN), utf8(canonicalJson(message)));
}

/**
 * Verifies `signed` and that it was made by `expectedPublicKey` (the owner key the verifier
 * pinned, e.g. at enrollment). Returns the message; throws `signature_invalid` otherwise.
 */
export function verifyOwnerMessage(signed: SignedOwnerMessage, expectedPublicKey: Uint8Array): OwnerMessage {
  abytes(expectedPublicKey, 32, 'expectedPublicKey');
  let ok = false;
  try {
    const publicKey = fromHex(signed.publicKey, 'publicKey');
    const signature = fromHex(signed.signature, 'signature');
    ok =
      publicKey.length === 32 &&
      signature.length === 64 &&
      toHex(publicKey) === toHex(expectedPublicKey) &&
      ed25519.verify(signature, signedBytes(signed.message), publicKey);
  } catch (cause) {
    throw new ProtocolError('signature_invalid', 'owner signature is malformed', { cause });
  }
  if (!ok) throw new ProtocolError('signature_invalid', 'owner signature does not verify');
  return signed.message;
}
