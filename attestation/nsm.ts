/**
 * The Nitro Secure Module interface and its real implementation.
 *
 * The NSM is reached through one ioctl on /dev/nsm (NSM_IOCTL_RAW = _IOWR(0x0A, 0, struct nsm_raw),
 * request ≤ 0x1000 bytes, response ≤ 0x3000 bytes, uapi/linux/nsm.h) carrying CBOR messages of the
 * NSM API (aws-nitro-enclaves-nsm-api, src/api/mod.rs):
 *   request  {"Attestation": {"user_data": bstr|null, "nonce": bstr|null, "public_key": bstr|null}}
 *   response {"Attestation": {"document": bstr}}  or  {"Error": "<ErrorCode>"}
 * Node cannot issue ioctls, so the device call goes through a ~60-line static C helper built into
 * the enclave image (infra/enclave/nsm-helper/securegate-nsm.c): CBOR request on stdin, CBOR
 * response on stdout. The encoding below is pure and unit-tested; the device part runs only
 * inside an enclave.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { Encoder } from 'cbor-x';
import { decodeCbor } from './cbor.ts';
import { AttestationError } from './errors.ts';

export interface AttestationRequest {
  nonce?: Uint8Array;
  publicKey?: Uint8Array;
  userData?: Uint8Array;
}

/** What the enclave needs from the NSM: a signed attestation document binding these fields. */
export interface Nsm {
  readonly kind: 'nitro' | 'dev';
  getAttestationDocument(request: AttestationRequest): Promise<Uint8Array>;
}

/**
 * What the NSM signs: `user_data`, `nonce` and `public_key` of up to 1024 bytes each (the real
 * device signs all three at that size, issue 18), in a request of at most NSM_REQUEST_MAX_SIZE.
 */
export const NSM_LIMITS = { userData: 1024, nonce: 1024, publicKey: 1024 } as const;
export const NSM_REQUEST_MAX_SIZE = 0x1000;
export const NSM_RESPONSE_MAX_SIZE = 0x3000;

export function checkAttestationRequest(request: AttestationRequest): void {
  const check = (v: Uint8Array | undefined, name: string, max: number) => {
    if (v !== undefined && (!(v instanceof Uint8Array) || v.length > max)) {
      throw new AttestationError('nsm_unavailable', `${name} must be at most ${max} bytes`);
    }
  };
  check(request.userData, 'user_data', NSM_LIMITS.userData);
  check(request.nonce, 'nonce', NSM_LIMITS.nonce);
  check(request.publicKey, 'public_key', NSM_LIMITS.publicKey);
}

const encoder = new Encoder({ useRecords: false, mapsAsObjects: false, tagUint8Array: false, variableMapSize: true } as never);

const bstrOrNull = (v: Uint8Array | undefined) => (v === undefined ? null : Buffer.from(v));

/** Encodes the NSM API `Request::Attestation` (serde externally tagged enum → single-key map). */
export function encodeNsmAttestationRequest(request: AttestationRequest): Uint8Array {
  checkAttestationRequest(request);
  const body = new Map<string, Buffer | null>([
    ['user_data', bstrOrNull(request.userData)],
    ['nonce', bstrOrNull(request.nonce)],
    ['public_key', bstrOrNull(request.publicKey)],
  ]);
  const bytes = new Uint8Array(encoder.encode(new Map([['Attestation', body]])));
  if (bytes.length > NSM_REQUEST_MAX_SIZE) throw new AttestationError('nsm_unavailable', `NSM request must be at most ${NSM_REQUEST_MAX_SIZE} bytes`);
  return bytes;
}

/** Decodes the NSM API `Response::Attestation { document }`, or throws on `Response::Error`. */
export function decodeNsmAttestationResponse(bytes: Uint8Array): Uint8Array {
  if (bytes.length === 0 || bytes.length > NSM_RESPONSE_MAX_SIZE) {
    throw new AttestationError('nsm_unavailable', 'NSM response has an invalid size');
  }
  const value = decodeCbor(bytes, 'NSM response');
  if (value instanceof Map && value.size === 1) {
    const error = value.get('Error');
    if (typeof error === 'string') throw new AttestationError('nsm_unavailable', `NSM returned error ${error}`);
    const attestation = value.get('Attestation');
    if (attestation instanceof Map) {
      const document = attestation.get('document');
      if (document instanceof Uint8Array && document.length > 0) return new Uint8Array(document);
    }
  }
  throw new AttestationError('nsm_unavailable', 'NSM response is not an attestation response');
}

export const NSM_DEVICE = '/dev/nsm';
export const DEFAULT_NSM_HELPER = '/usr/local/bin/securegate-nsm';

/** The real device, through the helper binary. Only works inside a Nitro Enclave. */
export class NitroNsm implements Nsm {
  readonly kind = 'nitro' as const;
  readonly helperPath: string;
  constructor(helperPath = process.env.SECUREGATE_NSM_HELPER ?? DEFAULT_NSM_HELPER) {
    this.helperPath = helperPath;
  }

  getAttestationDocument(request: AttestationRequest): Promise<Uint8Array> {
    const input = encodeNsmAttestationRequest(request);
    return new Promise((resolve, reject) => {
      const child = execFile(this.helperPath, [], { encoding: 'buffer', maxBuffer: NSM_RESPONSE_MAX_SIZE, timeout: 10_000 }, (error, stdout) => {
        if (error) {
          reject(new AttestationError('nsm_unavailable', 'NSM helper failed', { cause: error }));
          return;
        }
        try {
          resolve(decodeNsmAttestationResponse(new Uint8Array(stdout)));
        } catch (e) {
          reject(e);
        }
      });
      child.stdin?.end(Buffer.from(input));
    });
  }
}

/** True when running inside a Nitro Enclave (the NSM device node exists). */
export function nitroDevicePresent(): boolean {
  return existsSync(NSM_DEVICE);
}
