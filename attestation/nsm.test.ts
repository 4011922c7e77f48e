import { describe, expect, it } from 'vitest';
import { decodeNsmAttestationResponse, encodeNsmAttestationRequest } from './nsm.ts';
import { AttestationError } from './errors.ts';

// Expected bytes written out by hand from RFC 8949 and the NSM API's serde encoding of
// Request::Attestation { user_data, nonce, public_key } (aws-nitro-enclaves-nsm-api src/api/mod.rs).
const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ''), 'hex').toString('hex');

describe('NSM API encoding', () => {
  it('encodes an attestation request with nulls for absent fields', () => {
    const bytes = encodeNsmAttestationRequest({ nonce: Uint8Array.of(1, 2) });
    expect(Buffer.from(bytes).toString('hex')).toBe(
      hex(`a1 6b 4174746573746174696f6e a3
           69 757365725f64617461 f6
           65 6e6f6e6365 42 0102
           6a 7075626c69635f6b6579 f6`),
    );
  });

  it('encodes all three fields as byte strings', () => {
    const bytes = encodeNsmAttestationRequest({ userData: Uint8Array.of(0xaa), nonce: Uint8Array.of(0xbb), publicKey: Uint8Array.of(0xcc) });
    expect(Buffer.from(bytes).toString('hex')).toContain(hex('69 757365725f64617461 41 aa'));
    expect(Buffer.from(bytes).toString('hex')).toContain(hex('65 6e6f6e6365 41 bb'));
    expect(Buffer.from(bytes).toString('hex')).toContain(hex('6a 7075626c69635f6b6579 41 cc'));
  });

  it('refuses fields over the NSM limits', () => {
    expect(() => encodeNsmAttestationRequest({ nonce: new Uint8Array(1025) })).toThrow(AttestationError);
    expect(() => encodeNsmAttestationRequest({ userData: new Uint8Array(1025) })).toThrow(AttestationError);
    expect(() => encodeNsmAttestationRequest({ publicKey: new Uint8Array(1025) })).toThrow(AttestationError);
  });

  it('encodes a request with all three fields at the 1024 bytes the device signs, within the request size', () => {
    const bytes = encodeNsmAttestationRequest({ userData: new Uint8Array(1024), nonce: new Uint8Array(1024), publicKey: new Uint8Array(1024) });
    expect(bytes.length).toBeLessThanOrEqual(0x1000);
  });

  it('decodes an attestation response', () => {
    const response = Buffer.from(hex(`a1 6b 4174746573746174696f6e a1 68 646f63756d656e74 43 010203`), 'hex');
    expect(decodeNsmAttestationResponse(new Uint8Array(response))).toEqual(Uint8Array.of(1, 2, 3));
  });

  it('turns an NSM error response into nsm_unavailable', () => {
    // {"Error": "InvalidArgument"}
    const response = Buffer.from(hex(`a1 65 4572726f72 6f 496e76616c6964417267756d656e74`), 'hex');
    expect(() => decodeNsmAttestationResponse(new Uint8Array(response))).toThrow(expect.objectContaining({ code: 'nsm_unavailable' }));
    expect(() => decodeNsmAttestationResponse(Uint8Array.of(0xff))).toThrow(AttestationError);
  });
});
