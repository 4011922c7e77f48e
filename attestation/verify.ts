/**
 * Verification of AWS Nitro Enclaves attestation documents, following AWS's
 * "Verifying the root of trust" process (aws-nitro-enclaves-nsm-api docs/attestation_process.md):
 * decode COSE_Sign1 → check payload field types and sizes → build the chain from `certificate`
 * through `cabundle` to a pinned root (cabundle[0] is never trusted for being there) → every
 * certificate valid at the injected `now` → ES384 signature over the Sig_structure with the leaf
 * key → optional nonce, freshness and PCR policy.
 *
 * Pure apart from node:crypto; time is always injected.
 */
import { createHash, X509Certificate, verify as cryptoVerify } from 'node:crypto';
import { equalBytes } from '../protocol/bytes.ts';
import { decodeCbor } from './cbor.ts';
import { decodeCoseSign1, sigStructure } from './cose.ts';
import { AttestationError } from './errors.ts';
import { checkPcrPolicy, PCR_LENGTH, POLICY_PCR_INDICES, type PcrPolicy } from './policy.ts';
import { awsNitroRoot, type PinnedRoot } from './roots.ts';
import { NSM_RESPONSE_MAX_SIZE } from './nsm.ts';

export interface AttestationDocument {
  moduleId: string;
  /** Milliseconds since the Unix epoch, as the NSM stamped it. */
  timestamp: number;
  digest: 'SHA384';
  pcrs: Map<number, Uint8Array>;
  /** DER of the leaf (enclave) certificate. */
  certificate: Uint8Array;
  cabundle: Uint8Array[];
  publicKey: Uint8Array | null;
  userData: Uint8Array | null;
  nonce: Uint8Array | null;
}

export interface VerifyOptions {
  /** Pinned roots; default: the embedded AWS Nitro Enclaves Root-G1 only. */
  roots?: readonly PinnedRoot[];
  /** Verification time. Required: attestation must never silently use the wall clock. */
  now: Date;
  /** When given, the document's nonce must equal it (constant-time compare). */
  expectedNonce?: Uint8Array;
  /** When given, the document's timestamp must be no older than this (and not in the future). */
  maxAgeMs?: number;
  /** When given, the PCRs must satisfy it. */
  policy?: PcrPolicy;
  /** When given, a certificate chain verified before is not parsed and verified again (see ChainCache). */
  chainCache?: ChainCache;
}

/**
 * Certificate chains already verified: "this leaf and this cabundle, byte for byte, form a chain
 * to this pinned root". That is a pure function of the exact bytes, so a hit is as good as the
 * parsing and signature checks it saves. A verifier that sees the same enclave again (a
 * shareholder releasing shares) then checks per document only what changes: the COSE signature,
 * validity at `now`, freshness, nonce and PCRs — validity is never cached, and a hit counts only
 * when its root is among the roots pinned for this call. Bounded; when full it starts over.
 */
export class ChainCache {
  readonly #chains = new Map<string, { path: X509Certificate[]; root: X509Certificate }>();
  readonly #max: number;

  constructor(maxChains = 256) {
    this.#max = maxChains;
  }

  get size(): number {
    return this.#chains.size;
  }

  static #id(doc: AttestationDocument): string {
    const h = createHash('sha256');
    for (const der of [doc.certificate, ...doc.cabundle]) h.update(`${der.length}:`).update(der);
    return h.digest('hex');
  }

  /** @internal */
  chainFor(doc: AttestationDocument, roots: readonly PinnedRoot[]): { path: X509Certificate[]; pinned: PinnedRoot } {
    const id = ChainCache.#id(doc);
    const hit = this.#chains.get(id);
    const pinned = hit && roots.find((r) => sameCertificate(r.certificate, hit.root));
    if (hit && pinned) return { path: hit.path, pinned };
    const built = buildChain(doc, roots);
    if (this.#chains.size >= this.#max) this.#chains.clear();
    this.#chains.set(id, { path: built.path, root: built.pinned.certificate });
    return built;
  }
}

export interface VerifiedAttestation extends AttestationDocument {
  /** Name of the pinned root the chain led to. */
  root: string;
  /** Index of the matching policy set, when a policy was given. */
  policySet?: number;
}

/**
 * Upper bound of any byte field of the payload. Not a policy: the signature covers every byte, so
 * a verifier must accept whatever the NSM signs. Nothing the NSM signs can exceed its whole
 * response (NSM_RESPONSE_MAX_SIZE, uapi/linux/nsm.h), so that is the structural bound; the real
 * NSM signs `user_data`, `nonce` and `public_key` of 1024 bytes each (issue 18).
 */
export const ATTESTATION_FIELD_MAX = NSM_RESPONSE_MAX_SIZE;

const PAYLOAD_KEYS = ['module_id', 'digest', 'timestamp', 'pcrs', 'certificate', 'cabundle', 'public_key', 'user_data', 'nonce'];
/** Allowed clock skew between the NSM's timestamp and the verifier, for freshness checks. */
const FUTURE_SKEW_MS = 5 * 60_000;

function malformed(message: string): AttestationError {
  return new AttestationError('attestation_malformed', message);
}

function bytesField(value: unknown, name: string, min: number, max: number): Uint8Array {
  if (!(value instanceof Uint8Array) || value.length < min || value.length > max) {
    throw malformed(`${name} must be a byte string of ${min}..${max} bytes`);
  }
  return new Uint8Array(value);
}

function optionalBytes(value: unknown, name: string): Uint8Array | null {
  return value === null || value === undefined ? null : bytesField(value, name, 0, ATTESTATION_FIELD_MAX);
}

/** Parses and type-checks the payload per the NSM API's AttestationDocument definition. */
export function parseAttestationPayload(payload: Uint8Array): AttestationDocument {
  const map = decodeCbor(payload, 'payload');
  if (!(map instanceof Map)) throw malformed('payload must be a CBOR map');
  for (const key of map.keys()) {
    if (typeof key !== 'string' || !PAYLOAD_KEYS.includes(key)) throw malformed(`unexpected payload key ${String(key)}`);
  }
  for (const key of PAYLOAD_KEYS) {
    if (!map.has(key)) throw malformed(`payload lacks ${key}`);
  }
  const moduleId = map.get('module_id');
  if (typeof moduleId !== 'string' || moduleId.length === 0 || moduleId.length > 256) throw malformed('module_id must be a non-empty text string');
  if (map.get('digest') !== 'SHA384') throw malformed('digest must be SHA384');
  const timestamp = map.get('timestamp');
  if (typeof timestamp !== 'number' || !Number.isSafeInteger(timestamp) || timestamp <= 0) throw malformed('timestamp must be a positive integer');
  const rawPcrs = map.get('pcrs');
  if (!(rawPcrs instanceof Map) || rawPcrs.size < 1 || rawPcrs.size > 32) throw malformed('pcrs must be a map of 1..32 entries');
  const pcrs = new Map<number, Uint8Array>();
  for (const [index, value] of rawPcrs) {
    if (typeof index !== 'number' || !Number.isInteger(index) || index < 0 || index > 31) throw malformed('PCR index must be 0..31');
    pcrs.set(index, bytesField(value, `PCR${index}`, PCR_LENGTH, PCR_LENGTH));
  }
  for (const index of POLICY_PCR_INDICES) {
    if (!pcrs.has(index)) throw malformed(`pcrs lacks PCR${index}`);
  }
  const certificate = bytesField(map.get('certificate'), 'certificate', 1, ATTESTATION_FIELD_MAX);
  const bundle = map.get('cabundle');
  if (!Array.isArray(bundle) || bundle.length < 1 || bundle.length > 16) throw malformed('cabundle must be an array of 1..16 certificates');
  const cabundle = bundle.map((c, i) => bytesField(c, `cabundle[${i}]`, 1, ATTESTATION_FIELD_MAX));
  return {
    moduleId,
    timestamp,
    digest: 'SHA384',
    pcrs,
    certificate,
    cabundle,
    publicKey: optionalBytes(map.get('public_key'), 'public_key'),
    userData: optionalBytes(map.get('user_data'), 'user_data'),
    nonce: optionalBytes(map.get('nonce'), 'nonce'),
  };
}

function parseCertificate(der: Uint8Array, name: string): X509Certificate {
  try {
    return new X509Certificate(der);
  } catch (cause) {
    throw new AttestationError('attestation_malformed', `${name} is not an X.509 certificate`, { cause });
  }
}

function sameCertificate(a: X509Certificate, b: X509Certificate): boolean {
  return a.raw.equals(b.raw);
}

function issuedBy(child: X509Certificate, parent: X509Certificate): boolean {
  try {
    return parent.ca && child.checkIssued(parent) && child.verify(parent.publicKey);
  } catch {
    return false;
  }
}

/**
 * Builds leaf → cabundle[n-1] → … → cabundle[0] and requires it to end in a pinned root: either
 * cabundle[0] is byte-identical to a pinned root, or it was issued by one. Returns the path
 * (leaf first, root last) and the pinned root it reached.
 */
function buildChain(doc: AttestationDocument, roots: readonly PinnedRoot[]): { path: X509Certificate[]; pinned: PinnedRoot } {
  const leaf = parseCertificate(doc.certificate, 'certificate');
  const bundle = doc.cabundle.map((der, i) => parseCertificate(der, `cabundle[${i}]`));
  const path = [leaf, ...bundle.slice().reverse()];
  for (let i = 0; i + 1 < path.length; i++) {
    if (!issuedBy(path[i]!, path[i + 1]!)) {
      throw new AttestationError('attestation_chain_invalid', `certificate ${i} of the chain is not issued by the next`);
    }
  }
  const top = path[path.length - 1]!;
  for (const root of roots) {
    if (sameCertificate(top, root.certificate)) return { path, pinned: root };
  }
  for (const root of roots) {
    if (issuedBy(top, root.certificate)) return { path: [...path, root.certificate], pinned: root };
  }
  throw new AttestationError('attestation_chain_invalid', 'the certificate chain does not lead to a pinned root');
}

function checkValidity(path: X509Certificate[], now: Date): void {
  const t = now.getTime();
  path.forEach((cert, i) => {
    if (t < cert.validFromDate.getTime() || t > cert.validToDate.getTime()) {
      throw new AttestationError('attestation_expired', `certificate ${i} of the chain is not valid at ${now.toISOString()}`);
    }
  });
}

function checkSignature(protectedBytes: Uint8Array, payload: Uint8Array, signature: Uint8Array, leaf: X509Certificate): void {
  const key = leaf.publicKey;
  if (key.asymmetricKeyType !== 'ec' || key.asymmetricKeyDetails?.namedCurve !== 'secp384r1') {
    throw new AttestationError('attestation_chain_invalid', 'leaf certificate key is not ECDSA P-384');
  }
  const ok = cryptoVerify('sha384', sigStructure(protectedBytes, payload), { key, dsaEncoding: 'ieee-p1363' }, signature);
  if (!ok) throw new AttestationError('attestation_signature_invalid', 'COSE ES384 signature does not verify');
}


/** Verifies a Nitro attestation document; throws a typed `AttestationError` on any failure. */
export function verifyAttestation(bytes: Uint8Array, options: VerifyOptions): VerifiedAttestation {
  if (!(options.now instanceof Date) || Number.isNaN(options.now.getTime())) {
    throw new TypeError('verifyAttestation needs an explicit `now` Date');
  }
  const cose = decodeCoseSign1(bytes);
  const doc = parseAttestationPayload(cose.payload);
  const roots = options.roots ?? [awsNitroRoot()];
  const { path, pinned } = options.chainCache ? options.chainCache.chainFor(doc, roots) : buildChain(doc, roots);
  const root = pinned.name;
  checkValidity(path, options.now);
  checkSignature(cose.protectedBytes, cose.payload, cose.signature, path[0]!);
  if (options.maxAgeMs !== undefined) {
    const age = options.now.getTime() - doc.timestamp;
    if (age > options.maxAgeMs || age < -FUTURE_SKEW_MS) {
      throw new AttestationError('attestation_expired', 'document timestamp is outside the accepted freshness window');
    }
  }
  if (options.expectedNonce !== undefined) {
    if (doc.nonce === null || !equalBytes(doc.nonce, options.expectedNonce)) {
      throw new AttestationError('attestation_nonce_mismatch', 'document nonce differs from the expected nonce');
    }
  }
  const result: VerifiedAttestation = { ...doc, root };
  if (options.policy) result.policySet = checkPcrPolicy(doc.pcrs, options.policy);
  return result;
}
