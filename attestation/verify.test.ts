import { readFileSync } from 'node:fs';
import { X509Certificate, createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { AttestationError } from './errors.ts';
import { awsNitroRoot, AWS_NITRO_ROOT_G1_SHA256, loadRoot } from './roots.ts';
import { ChainCache, verifyAttestation } from './verify.ts';
import { parsePcrPolicy } from './policy.ts';
import { createDevRoot, DevNsm } from './dev.ts';

const fixture = (name: string) => new Uint8Array(readFileSync(new URL(`../test/fixtures/nitro/${name}`, import.meta.url)));
const anjuna = fixture('anjuna-prod-pubkey-2021-03-24.cbor');
const evervault = new Uint8Array(Buffer.from(Buffer.from(fixture('evervault-debug-2023-09-18.b64')).toString('ascii'), 'base64'));
const ANJUNA_AT = new Date(1616602241 * 1000);
const ANJUNA_CHAIN_END = 1616612782;
const EVERVAULT_AT = new Date(1695050165 * 1000);

const ANJUNA_PCRS = {
  '0': '672cd3c91b7ac756037d260051169c70b1de59c7a3a9a8253322c98763697891c722fec043cbf72a824ae5d5ac41fc41',
  '1': 'c41252beb5b31e7684fe81da62db858ad02a9a8e32ebb8f1ec9c0ad7df160df3edfdf4889379e47985a539005f6ce67e',
  '2': '43386b9d36326b00423ab138f89aee03df275e5a7af7851e961b1e75a31e9ec63960b4aa2da45940e45c9decaca70443',
};

function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    if (e instanceof AttestationError) return e.code;
    throw e;
  }
  return 'no error';
}

describe('pinned AWS root', () => {
  it('embeds the AWS Nitro Enclaves Root-G1 with the published fingerprint', () => {
    const pem = readFileSync(new URL('../test/fixtures/nitro/aws-nitro-enclaves-root-g1.pem', import.meta.url));
    const fromFile = new X509Certificate(pem);
    expect(awsNitroRoot().certificate.raw.equals(fromFile.raw)).toBe(true);
    expect(createHash('sha256').update(fromFile.raw).digest('hex')).toBe(AWS_NITRO_ROOT_G1_SHA256);
  });

  it('refuses a root whose fingerprint differs from the pinned one', () => {
    const pem = readFileSync(new URL('../test/fixtures/nitro/aws-nitro-enclaves-root-g1.pem', import.meta.url));
    expect(codeOf(() => loadRoot('x', pem, '00'.repeat(32)))).toBe('attestation_chain_invalid');
  });
});

describe('real AWS-signed documents', () => {
  it('verifies the Anjuna production document at its time and returns its fields', () => {
    const result = verifyAttestation(anjuna, { now: ANJUNA_AT });
    expect(result.moduleId).toBe('i-0a6d65e7122308898-enc017846bcd2f820da');
    expect(result.timestamp).toBe(1616602241734);
    expect(result.digest).toBe('SHA384');
    expect(result.pcrs.size).toBe(16);
    expect(Buffer.from(result.pcrs.get(0)!).toString('hex')).toBe(ANJUNA_PCRS['0']);
    expect(result.publicKey?.length).toBe(294);
    expect(result.userData).toBeNull();
    expect(result.nonce).toBeNull();
    expect(result.root).toBe('aws-nitro-enclaves-root-g1');
  });

  it('verifies the Evervault debug document at its time, with user_data binding its TLS key', () => {
    const result = verifyAttestation(evervault, { now: EVERVAULT_AT });
    expect(result.moduleId).toBe('i-0918f6c55e3b61d89-enc018aa8b8e2285d13');
    expect(result.nonce?.length).toBe(256);
    const tls = new X509Certificate(fixture('evervault-debug-2023-09-18.tls-cert.der'));
    const spki = tls.publicKey.export({ type: 'spki', format: 'der' });
    expect(Buffer.from(result.userData!).equals(spki)).toBe(true);
  });

  it('accepts the document wrapped in CBOR tag 18 (tagged COSE_Sign1)', () => {
    const tagged = new Uint8Array([0xd2, ...anjuna]);
    expect(verifyAttestation(tagged, { now: ANJUNA_AT }).moduleId).toContain('i-0a6d65e7');
  });

  it('accepts the production PCRs under a matching policy', () => {
    const policy = parsePcrPolicy({ allow: [ANJUNA_PCRS] });
    expect(verifyAttestation(anjuna, { now: ANJUNA_AT, policy }).policySet).toBe(0);
  });

  it('fails one second after the chain stops being valid', () => {
    expect(codeOf(() => verifyAttestation(anjuna, { now: new Date((ANJUNA_CHAIN_END + 1) * 1000) }))).toBe('attestation_expired');
    expect(codeOf(() => verifyAttestation(anjuna, { now: new Date(ANJUNA_CHAIN_END * 1000) }))).toBe('no error');
  });

  it('fails before the leaf certificate is valid', () => {
    expect(codeOf(() => verifyAttestation(anjuna, { now: new Date(1616601981 * 1000) }))).toBe('attestation_expired');
  });

  it('fails the signature when one payload byte is flipped', () => {
    const pcr0 = Buffer.from(ANJUNA_PCRS['0'], 'hex');
    const at = Buffer.from(anjuna).indexOf(pcr0);
    expect(at).toBeGreaterThan(0);
    const bad = anjuna.slice();
    bad[at + 10]! ^= 0x01;
    expect(codeOf(() => verifyAttestation(bad, { now: ANJUNA_AT }))).toBe('attestation_signature_invalid');
  });

  it('fails the chain against a substituted root', async () => {
    const dev = await createDevRoot(ANJUNA_AT);
    const roots = [DevNsm.pinnedRoot(dev)];
    expect(codeOf(() => verifyAttestation(anjuna, { now: ANJUNA_AT, roots }))).toBe('attestation_chain_invalid');
  });

  it('refuses a PCR allow-list that differs from PCR0 by one byte', () => {
    const pcr0 = ANJUNA_PCRS['0'].slice(0, 94) + (ANJUNA_PCRS['0'].endsWith('41') ? '42' : '41');
    const policy = parsePcrPolicy({ allow: [{ ...ANJUNA_PCRS, '0': pcr0 }] });
    expect(codeOf(() => verifyAttestation(anjuna, { now: ANJUNA_AT, policy }))).toBe('attestation_pcr_mismatch');
  });

  it('refuses the debug-mode document under any production policy', () => {
    const zeros = '0'.repeat(96);
    for (const allow of [[], [{ '0': zeros, '1': zeros, '2': zeros }], [ANJUNA_PCRS]]) {
      const policy = parsePcrPolicy({ allow });
      expect(codeOf(() => verifyAttestation(evervault, { now: EVERVAULT_AT, policy }))).toBe('attestation_debug_mode');
    }
  });

  it('checks the expected nonce', () => {
    const doc = verifyAttestation(evervault, { now: EVERVAULT_AT });
    expect(codeOf(() => verifyAttestation(evervault, { now: EVERVAULT_AT, expectedNonce: doc.nonce! }))).toBe('no error');
    const other = doc.nonce!.slice();
    other[0]! ^= 1;
    expect(codeOf(() => verifyAttestation(evervault, { now: EVERVAULT_AT, expectedNonce: other }))).toBe('attestation_nonce_mismatch');
    expect(codeOf(() => verifyAttestation(anjuna, { now: ANJUNA_AT, expectedNonce: other }))).toBe('attestation_nonce_mismatch');
  });

  it('refuses a document older than maxAgeMs', () => {
    const now = new Date(1616602241734 + 60_000);
    expect(codeOf(() => verifyAttestation(anjuna, { now, maxAgeMs: 120_000 }))).toBe('no error');
    expect(codeOf(() => verifyAttestation(anjuna, { now, maxAgeMs: 30_000 }))).toBe('attestation_expired');
  });

  it('refuses an unprotected header that is not a map (it is outside the signature)', () => {
    // Byte 6 is the unprotected header's empty map (0xA0); 0xA0 ^ 0xE0 makes it an empty byte string.
    expect(anjuna[6]).toBe(0xa0);
    for (const replacement of [0x40, 0x80, 0x60, 0xf6]) {
      const bytes = anjuna.slice();
      bytes[6] = replacement;
      expect(codeOf(() => verifyAttestation(bytes, { now: ANJUNA_AT })), replacement.toString(16)).toBe('attestation_malformed');
    }
  });

  it('only ever throws typed errors for random truncations and byte flips', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.record({ kind: fc.constant('truncate' as const), at: fc.nat({ max: anjuna.length - 1 }) }),
          fc.record({ kind: fc.constant('flip' as const), at: fc.nat({ max: anjuna.length - 1 }), x: fc.integer({ min: 1, max: 255 }) }),
        ),
        (m) => {
          const bytes = m.kind === 'truncate' ? anjuna.slice(0, m.at) : anjuna.slice();
          if (m.kind === 'flip') bytes[m.at]! ^= m.x;
          try {
            verifyAttestation(bytes, { now: ANJUNA_AT });
          } catch (e) {
            expect(e).toBeInstanceOf(AttestationError);
            return;
          }
          // A flip may land in a byte the signature does not cover only if it is an unprotected
          // header map; the COSE structure has none, so every mutation must fail.
          expect.unreachable(`mutation ${JSON.stringify(m)} was accepted`);
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe('chain cache (a shareholder verifies the same enclave on every release)', () => {
  it('remembers the verified real AWS chain and gives the same result', () => {
    const chainCache = new ChainCache();
    const first = verifyAttestation(anjuna, { now: ANJUNA_AT, chainCache });
    expect(chainCache.size).toBe(1);
    const again = verifyAttestation(anjuna, { now: ANJUNA_AT, chainCache });
    expect(again).toEqual(first);
    expect(again).toEqual(verifyAttestation(anjuna, { now: ANJUNA_AT }));
    expect(chainCache.size).toBe(1);
    verifyAttestation(evervault, { now: EVERVAULT_AT, chainCache });
    expect(chainCache.size).toBe(2);
  });

  it('still checks validity times, the COSE signature and the pinned root on a warm cache', async () => {
    const chainCache = new ChainCache();
    verifyAttestation(anjuna, { now: ANJUNA_AT, chainCache });
    expect(codeOf(() => verifyAttestation(anjuna, { now: new Date((ANJUNA_CHAIN_END + 1) * 1000), chainCache }))).toBe('attestation_expired');
    const at = Buffer.from(anjuna).indexOf(Buffer.from(ANJUNA_PCRS['0'], 'hex'));
    const bad = anjuna.slice();
    bad[at + 10]! ^= 0x01;
    expect(codeOf(() => verifyAttestation(bad, { now: ANJUNA_AT, chainCache }))).toBe('attestation_signature_invalid');
    const dev = await createDevRoot(ANJUNA_AT);
    expect(codeOf(() => verifyAttestation(anjuna, { now: ANJUNA_AT, roots: [DevNsm.pinnedRoot(dev)], chainCache }))).toBe('attestation_chain_invalid');
  });

  it('does not carry a chain from one root to another', async () => {
    const chainCache = new ChainCache();
    const rootA = await createDevRoot();
    const rootB = await createDevRoot();
    const nsmA = await DevNsm.create({ root: rootA, pcr0: new Uint8Array(48).fill(1) });
    const nsmB = await DevNsm.create({ root: rootB, pcr0: new Uint8Array(48).fill(1) });
    const now = new Date();
    const docA = await nsmA.getAttestationDocument({ nonce: new Uint8Array(32).fill(1) });
    const docB = await nsmB.getAttestationDocument({ nonce: new Uint8Array(32).fill(2) });
    verifyAttestation(docA, { now, roots: [DevNsm.pinnedRoot(rootA)], chainCache });
    verifyAttestation(docB, { now, roots: [DevNsm.pinnedRoot(rootB)], chainCache });
    expect(chainCache.size).toBeGreaterThan(0);
    // Both chains are now cached: each document still leads only to its own root.
    expect(codeOf(() => verifyAttestation(docB, { now, roots: [DevNsm.pinnedRoot(rootA)], chainCache }))).toBe('attestation_chain_invalid');
    expect(codeOf(() => verifyAttestation(docA, { now, roots: [DevNsm.pinnedRoot(rootB)], chainCache }))).toBe('attestation_chain_invalid');
    expect(codeOf(() => verifyAttestation(docA, { now, chainCache }))).toBe('attestation_chain_invalid');
  });

  it('starts over when full', () => {
    const chainCache = new ChainCache(1);
    verifyAttestation(anjuna, { now: ANJUNA_AT, chainCache });
    verifyAttestation(evervault, { now: EVERVAULT_AT, chainCache });
    expect(chainCache.size).toBe(1);
    expect(codeOf(() => verifyAttestation(anjuna, { now: ANJUNA_AT, chainCache }))).toBe('no error');
  });

  it('refuses a cabundle certificate swapped for another (the cache key is every byte of the chain)', () => {
    const chainCache = new ChainCache();
    verifyAttestation(anjuna, { now: ANJUNA_AT, chainCache });
    // Re-encode the payload with an intermediate from the Evervault chain: a different chain, not
    // a cache hit — and it does not verify (and its COSE signature no longer matches either).
    const other = verifyAttestation(evervault, { now: EVERVAULT_AT });
    const doc = verifyAttestation(anjuna, { now: ANJUNA_AT });
    const swapped = { ...doc, cabundle: [doc.cabundle[0]!, other.cabundle[1]!, ...doc.cabundle.slice(2)] };
    expect(codeOf(() => chainCache.chainFor(swapped, [awsNitroRoot()]))).toBe('attestation_chain_invalid');
  });
});

describe('dev NSM documents', () => {
  it('have the real structure and verify against the dev root only', async () => {
    const root = await createDevRoot();
    const pcr0 = new Uint8Array(createHash('sha384').update('bundle').digest());
    const nsm = await DevNsm.create({ root, pcr0 });
    const nonce = new Uint8Array(32).fill(5);
    const publicKey = new Uint8Array(32).fill(9);
    const doc = await nsm.getAttestationDocument({ nonce, publicKey });
    expect(doc[0]).toBe(0x84); // untagged COSE_Sign1 array of 4
    const now = new Date();
    const verified = verifyAttestation(doc, { now, roots: [DevNsm.pinnedRoot(root)], expectedNonce: nonce });
    expect(verified.publicKey).toEqual(publicKey);
    expect(verified.userData).toBeNull();
    expect(verified.pcrs.size).toBe(16);
    expect(verified.pcrs.get(0)).toEqual(pcr0);
    expect(codeOf(() => verifyAttestation(doc, { now }))).toBe('attestation_chain_invalid');
  });

  it('verifies a document whose user_data, nonce and public_key are 1024 bytes each (what the real NSM signs)', async () => {
    const root = await createDevRoot();
    const nsm = await DevNsm.create({ root, pcr0: new Uint8Array(48).fill(1) });
    const fill = (b: number) => new Uint8Array(1024).fill(b);
    const doc = await nsm.getAttestationDocument({ userData: fill(1), nonce: fill(2), publicKey: fill(3) });
    const verified = verifyAttestation(doc, { now: new Date(), roots: [DevNsm.pinnedRoot(root)], expectedNonce: fill(2) });
    expect(verified.userData).toEqual(fill(1));
    expect(verified.nonce).toEqual(fill(2));
    expect(verified.publicKey).toEqual(fill(3));
  });

  it('still refuses a payload byte field of the wrong type (structure is checked, not size policy)', async () => {
    const { parseAttestationPayload } = await import('./verify.ts');
    const { Encoder } = await import('cbor-x');
    const doc = verifyAttestation(anjuna, { now: ANJUNA_AT });
    const enc = new Encoder({ useRecords: false, mapsAsObjects: false, tagUint8Array: false } as never);
    const payload = new Map<string, unknown>([
      ['module_id', doc.moduleId], ['digest', 'SHA384'], ['timestamp', doc.timestamp],
      ['pcrs', new Map([...doc.pcrs].map(([k, v]) => [k, Buffer.from(v)]))],
      ['certificate', Buffer.from(doc.certificate)], ['cabundle', doc.cabundle.map((c) => Buffer.from(c))],
      ['public_key', 'not bytes'], ['user_data', null], ['nonce', null],
    ]);
    expect(codeOf(() => parseAttestationPayload(new Uint8Array(enc.encode(payload))))).toBe('attestation_malformed');
  });

  it('encodes the payload as a definite 9-key map in NSM order', async () => {
    const root = await createDevRoot();
    const nsm = await DevNsm.create({ root, pcr0: new Uint8Array(48).fill(1) });
    const doc = await nsm.getAttestationDocument({});
    const { decodeCoseSign1 } = await import('./cose.ts');
    const { payload } = decodeCoseSign1(doc);
    expect(payload[0]).toBe(0xa9);
    const { Decoder } = await import('cbor-x');
    const map = new Decoder({ mapsAsObjects: false, useRecords: false } as never).decode(payload) as Map<string, unknown>;
    expect([...map.keys()]).toEqual(['module_id', 'digest', 'timestamp', 'pcrs', 'certificate', 'cabundle', 'public_key', 'user_data', 'nonce']);
    expect(map.get('nonce')).toBeNull();
    expect((map.get('cabundle') as unknown[]).length).toBe(4);
  });
});
