/**
 * CBOR decoding (RFC 8949) with the options attestation needs: maps as `Map`, no records, 64-bit
 * integers as numbers. The enclave uses it for NSM responses (`nsm.ts`); `cose.ts` builds
 * COSE_Sign1 decoding on it. Pure; every failure is `attestation_malformed`.
 */
import { Decoder } from 'cbor-x';
import { AttestationError } from './errors.ts';

export const cborDecoder = new Decoder({ mapsAsObjects: false, useRecords: false, int64AsNumber: true } as never);

export function decodeCbor(bytes: Uint8Array, what: string): unknown {
  try {
    return cborDecoder.decode(bytes);
  } catch (cause) {
    throw new AttestationError('attestation_malformed', `${what} is not valid CBOR`, { cause });
  }
}
