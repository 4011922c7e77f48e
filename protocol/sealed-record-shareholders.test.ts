/**
 * Sealed record version 0x04 (SPEC.md §1): the shareholder set the owner pinned — ids, identity
 * keys and the threshold — is bound into the AAD, so a host that swaps one key, drops or adds a
 * member, or changes t holds a record that does not open, and cannot strip the set by presenting
 * an older binding.
 */
import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { utf8 } from './bytes.ts';
import { decodeConnectionDescriptor } from './rpc.ts';
import { encodeConnectionDescriptor } from './rpc-encode.ts';
import { canonicalShareholderSet, openUpstreamKey, sealedRecordAad, shareholderSetSha256, type KeyBinding } from './sealed-record.ts';
import { sealUpstreamKey } from './owner/seal-upstream-key.ts';

const random = (n: number) => new Uint8Array(randomBytes(n));
const key = (b: number) => b.toString(16).padStart(2, '0').repeat(32);
const set = [1, 2, 3, 4, 5].map((i) => ({ id: `sh-${i}`, publicKey: key(i) }));
const base: KeyBinding = { connectionId: 'conn_01', provider: 'openai', origin: 'https://api.openai.com', authScheme: 'bearer' };
const binding: KeyBinding = { ...base, shareholderSetSha256: shareholderSetSha256(set, 3) };
const authFailed = expect.objectContaining({ code: 'envelope_auth_failed' });

describe('sealed record version 0x04 (shareholder set)', () => {
  it('round-trips any key under its binding, with version byte 0x04', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 1, maxLength: 300 }), (k) => {
        const dek = random(32);
        const record = sealUpstreamKey(k, dek, binding, random);
        expect(record[0]).toBe(0x04);
        expect(openUpstreamKey(record, dek, binding)).toEqual(k);
      }),
    );
  });

  it('hashes the canonical set: member order does not matter, everything else does', () => {
    expect(shareholderSetSha256([...set].reverse(), 3)).toBe(binding.shareholderSetSha256);
    expect(canonicalShareholderSet([...set].reverse(), 3).map((m) => m.id)).toEqual(['sh-1', 'sh-2', 'sh-3', 'sh-4', 'sh-5']);
    const others = [
      shareholderSetSha256(set, 2),
      shareholderSetSha256(set.slice(0, 4), 3),
      shareholderSetSha256([...set, { id: 'sh-6', publicKey: key(6) }], 3),
      shareholderSetSha256(set.map((m) => (m.id === 'sh-2' ? { ...m, publicKey: key(0xee) } : m)), 3),
      shareholderSetSha256(set.map((m) => (m.id === 'sh-2' ? { ...m, id: 'sh-9' } : m)), 3),
    ];
    expect(new Set([binding.shareholderSetSha256, ...others]).size).toBe(others.length + 1);
  });

  it('does not open when the host swaps a key, drops or adds a member, or changes the threshold', () => {
    const dek = random(32);
    const record = sealUpstreamKey(utf8('sk-test'), dek, binding, random);
    const swapped = [
      set.map((m) => (m.id === 'sh-2' ? { ...m, publicKey: key(0xee) } : m)),
      set.map((m) => ({ ...m, publicKey: key(0xa0) })),
    ];
    for (const s of swapped) expect(() => openUpstreamKey(record, dek, { ...base, shareholderSetSha256: shareholderSetSha256(s, 3) })).toThrow(authFailed);
    expect(() => openUpstreamKey(record, dek, { ...base, shareholderSetSha256: shareholderSetSha256(set.slice(1), 3) })).toThrow(authFailed);
    expect(() => openUpstreamKey(record, dek, { ...base, shareholderSetSha256: shareholderSetSha256(set, 2) })).toThrow(authFailed);
  });

  it('does not open without its set (an older binding), and an older record does not open with one', () => {
    const dek = random(32);
    const record = sealUpstreamKey(utf8('sk-test'), dek, binding, random);
    expect(() => openUpstreamKey(record, dek, base)).toThrow(authFailed);
    expect(() => openUpstreamKey(record, dek, { ...base, policySha256: 'ab'.repeat(32) })).toThrow(authFailed);
    const old = sealUpstreamKey(utf8('sk-test'), dek, base, random);
    expect(old[0]).toBe(0x01);
    expect(() => openUpstreamKey(old, dek, binding)).toThrow(authFailed);
    expect(openUpstreamKey(old, dek, base)).toEqual(utf8('sk-test'));
  });

  it('binds allow-list and policy hash like 0x03, and any change of either fails the tag', () => {
    const dek = random(32);
    const full: KeyBinding = { ...binding, provider: 'any', allow: '["GET /v1/x"]', policySha256: 'cd'.repeat(32) };
    const record = sealUpstreamKey(utf8('sk-test'), dek, full, random);
    expect(record[0]).toBe(0x04);
    expect(openUpstreamKey(record, dek, full)).toEqual(utf8('sk-test'));
    for (const other of [{ ...full, allow: '["GET /v1/*"]' }, { ...full, policySha256: 'ce'.repeat(32) }, { ...full, allow: undefined }, { ...full, policySha256: undefined }]) {
      expect(() => openUpstreamKey(record, dek, other as KeyBinding)).toThrow(authFailed);
    }
    // Absent allow-list and absent policy are distinct fields, each "" — still one decoding per AAD (length-prefixed).
    expect(sealedRecordAad({ ...binding, allow: 'x' })).not.toEqual(sealedRecordAad({ ...binding, policySha256: 'ab'.repeat(32) }));
  });

  it('fails when any byte of the record is flipped', () => {
    const dek = random(32);
    const record = sealUpstreamKey(utf8('sk-test-123'), dek, binding, random);
    fc.assert(
      fc.property(fc.integer({ min: 0, max: record.length - 1 }), fc.integer({ min: 1, max: 255 }), (i, x) => {
        const bad = record.slice();
        bad[i]! ^= x;
        expect(() => openUpstreamKey(bad, dek, binding)).toThrow(
          expect.objectContaining({ code: i === 0 && ![1, 2, 3, 4].includes(0x04 ^ x) ? 'envelope_version_unsupported' : 'envelope_auth_failed' }),
        );
      }),
    );
  });

  it('refuses malformed sets: duplicate ids, bad keys or ids, t outside 2..n, fewer than two members', () => {
    const malformed = expect.objectContaining({ code: 'envelope_malformed' });
    expect(() => shareholderSetSha256([...set, { id: 'sh-1', publicKey: key(9) }], 3)).toThrow(malformed);
    expect(() => shareholderSetSha256(set.map((m, i) => (i === 0 ? { ...m, publicKey: 'AB'.repeat(32) } : m)), 3)).toThrow(malformed);
    expect(() => shareholderSetSha256(set.map((m, i) => (i === 0 ? { ...m, id: 'Sh 1' } : m)), 3)).toThrow(malformed);
    expect(() => shareholderSetSha256(set, 6)).toThrow(malformed);
    expect(() => shareholderSetSha256(set, 1)).toThrow(malformed);
    expect(() => shareholderSetSha256(set.slice(0, 1), 2)).toThrow(malformed);
    expect(() => sealUpstreamKey(utf8('k'), random(32), { ...base, shareholderSetSha256: 'XY' }, random)).toThrow(malformed);
  });

  it('travels in the connection descriptor as [{ id, publicKey }], and a malformed set is refused there', () => {
    const d = { connectionId: 'conn_01', provider: 'openai', origin: 'https://api.openai.com', authScheme: 'bearer', sealedRecord: 'AAAA', threshold: 3 };
    expect(decodeConnectionDescriptor(encodeConnectionDescriptor({ ...d, shareholders: set })).shareholders).toEqual(set);
    expect(decodeConnectionDescriptor(encodeConnectionDescriptor(d)).shareholders).toBeUndefined();
    // Extra member fields are dropped, not carried into what the enclave hashes.
    const extra = Buffer.from(JSON.stringify({ ...d, shareholders: set.map((m) => ({ ...m, url: 'http://x' })) })).toString('base64url');
    expect(decodeConnectionDescriptor(extra).shareholders).toEqual(set);
    for (const bad of [{ shareholders: 'sh-1' }, { shareholders: [{ id: 'sh-1' }] }, { shareholders: [null] }]) {
      const header = Buffer.from(JSON.stringify({ ...d, ...bad })).toString('base64url');
      expect(() => decodeConnectionDescriptor(header)).toThrow(expect.objectContaining({ code: 'envelope_malformed' }));
    }
  });
});
