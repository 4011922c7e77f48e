/**
 * COSE_Sign1 (RFC 9052 §4.2) decoding and the Sig_structure (RFC 9052 §4.4) that ES384 signs,
 * restricted to what AWS Nitro documents use, on the CBOR decoder of `cbor.ts`. Used by `verify.ts`
 * and the dev NSM (`dev.ts`), not by the enclave. Pure; every failure is `attestation_malformed`.
 */
import { decodeCbor } from './cbor.ts';
import { AttestationError } from './errors.ts';

/** CBOR tag for COSE_Sign1 (RFC 9052 §2). Nitro emits untagged documents; both are accepted. */
const COSE_SIGN1_TAG = 18;
/** COSE algorithm id for ECDSA w/ SHA-384 (RFC 9053 §2.1). */
export const COSE_ALG_ES384 = -35;
const COSE_HEADER_ALG = 1;

export interface CoseSign1 {
  protectedBytes: Uint8Array;
  payload: Uint8Array;
  signature: Uint8Array;
}

function malformed(message: string): AttestationError {
  return new AttestationError('attestation_malformed', message);
}

function isBytes(v: unknown): v is Uint8Array {
  return v instanceof Uint8Array;
}

export function decodeCoseSign1(bytes: Uint8Array): CoseSign1 {
  if (!isBytes(bytes) || bytes.length < 4 || bytes.length > 64 * 1024) {
    throw malformed('attestation document must be 4..65536 bytes');
  }
  let value = decodeCbor(bytes, 'attestation document');
  if (value && typeof value === 'object' && 'tag' in value && 'value' in value) {
    if ((value as { tag: unknown }).tag !== COSE_SIGN1_TAG) throw malformed('unexpected CBOR tag (want 18, COSE_Sign1)');
    value = (value as { value: unknown }).value;
  }
  if (!Array.isArray(value) || value.length !== 4) throw malformed('COSE_Sign1 must be an array of 4 items');
  const [protectedBytes, unprotected, payload, signature] = value as unknown[];
  if (!isBytes(protectedBytes) || !isBytes(payload) || !isBytes(signature)) {
    throw malformed('COSE_Sign1 protected header, payload and signature must be byte strings');
  }
  // A map only (cbor-x gives a Map or a plain object): not a byte string, an array or a tag. The
  // unprotected header is outside the signature, so anything but a map must be refused here.
  const isMap = unprotected instanceof Map || (unprotected !== null && typeof unprotected === 'object' && Object.getPrototypeOf(unprotected) === Object.prototype);
  if (!isMap) throw malformed('COSE_Sign1 unprotected header must be a map');
  const header = decodeCbor(protectedBytes, 'protected header');
  if (!(header instanceof Map) || header.get(COSE_HEADER_ALG) !== COSE_ALG_ES384) {
    throw malformed('protected header must name alg ES384 (-35)');
  }
  if (signature.length !== 96) throw malformed('ES384 signature must be 96 bytes (r ‖ s)');
  return { protectedBytes: new Uint8Array(protectedBytes), payload: new Uint8Array(payload), signature: new Uint8Array(signature) };
}

function cborHead(major: number, length: number): Uint8Array {
  const m = major << 5;
  if (length < 24) return Uint8Array.of(m | length);
  if (length < 0x100) return Uint8Array.of(m | 24, length);
  if (length < 0x10000) return Uint8Array.of(m | 25, length >>> 8, length & 0xff);
  return Uint8Array.of(m | 26, length >>> 24, (length >>> 16) & 0xff, (length >>> 8) & 0xff, length & 0xff);
}

/**
 * Sig_structure = ["Signature1", body_protected, external_aad = h'', payload] (RFC 9052 §4.4),
 * encoded by hand so its bytes never depend on an encoder's options.
 */
export function sigStructure(protectedBytes: Uint8Array, payload: Uint8Array): Uint8Array {
  const context = new TextEncoder().encode('Signature1');
  const parts = [
    Uint8Array.of(0x84),
    cborHead(3, context.length),
    context,
    cborHead(2, protectedBytes.length),
    protectedBytes,
    cborHead(2, 0),
    cborHead(2, payload.length),
    payload,
  ];
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}
