import { describe, expect, it } from 'vitest';
import { generateOwnerKeyPair } from './owner/owner-keys.ts';
import { auditHash, checkLogExtends, GENESIS_HASH, signLogHead, verifyLogHead, type ChainedEntry, type LogHead } from './audit-chain.ts';

function chain(events: string[], from: ChainedEntry[] = []): ChainedEntry[] {
  const out = [...from];
  for (const event of events) {
    const seq = out.length + 1;
    const prevHash = out.at(-1)?.hash ?? GENESIS_HASH;
    const at = `2026-12-01T00:00:${String(seq).padStart(2, '0')}.000Z`;
    out.push({ seq, at, event, prevHash, hash: auditHash(seq, at, event, prevHash) });
  }
  return out;
}
const headOf = (entries: ChainedEntry[]): LogHead => ({ shareholderId: 'sh-1', seq: entries.at(-1)?.seq ?? 0, hash: entries.at(-1)?.hash ?? GENESIS_HASH, at: '2026-12-01T01:00:00.000Z' });

describe('signed log heads', () => {
  it('verifies a head signed by the log key and refuses any edit or another key', () => {
    const key = generateOwnerKeyPair();
    const signed = signLogHead(key.secretKey, headOf(chain(['a', 'b'])));
    expect(verifyLogHead(signed, key.publicKey)).toEqual(signed.head);
    expect(() => verifyLogHead({ ...signed, head: { ...signed.head, seq: 1 } })).toThrow(expect.objectContaining({ code: 'signature_invalid' }));
    expect(() => verifyLogHead(signed, generateOwnerKeyPair().publicKey)).toThrow(expect.objectContaining({ code: 'signature_invalid' }));
    expect(() => verifyLogHead({ ...signed, head: { ...signed.head, hash: 'zz' } })).toThrow(expect.objectContaining({ code: 'envelope_malformed' }));
  });
});

describe('a log extends the head seen before', () => {
  const log = chain(['enroll', 'release', 'release']);

  it('accepts the same log and a log that grew', () => {
    expect(checkLogExtends(log, headOf(log), headOf(log))).toEqual({ ok: true });
    const grown = chain(['release'], log);
    expect(checkLogExtends(grown, headOf(grown), headOf(log))).toEqual({ ok: true });
    expect(checkLogExtends(log, headOf(log), { seq: 0, hash: GENESIS_HASH })).toEqual({ ok: true });
  });

  it('reports truncation: the log is shorter than a head seen before', () => {
    const cut = log.slice(0, 2);
    expect(checkLogExtends(cut, headOf(cut), headOf(log))).toMatchObject({ ok: false, problem: 'truncated', seq: 3 });
  });

  it('reports a rewrite from genesis, even when the new log is longer', () => {
    const other = chain(['enroll', 'release', 'refused', 'release']);
    expect(checkLogExtends(other, headOf(other), headOf(log))).toMatchObject({ ok: false, problem: 'rewritten', seq: 3 });
  });

  it('reports a head that is not the newest entry served, and a broken chain', () => {
    expect(checkLogExtends(log.slice(0, 2), headOf(log))).toMatchObject({ ok: false, problem: 'head_mismatch' });
    const edited = log.map((e, i) => (i === 1 ? { ...e, event: 'refused' } : e));
    expect(checkLogExtends(edited, headOf(log))).toMatchObject({ ok: false, problem: 'chain_broken', seq: 2 });
    expect(checkLogExtends(log.slice(1), headOf(log))).toMatchObject({ ok: false, problem: 'chain_broken' });
  });
});
