/**
 * The two pieces the CLI's `usage --verify` and the dashboard's usage page share: the checked head
 * (a missing, unattested, stale or partial head is a problem to report, never silence) and the
 * per connection-day table of host counts beside each enclave's newest receipt.
 */
import { ed25519 } from '@noble/curves/ed25519.js';
import { describe, expect, it } from 'vitest';
import { toHex } from '../bytes.ts';
import { signReceiptHead, signUsageReceipt, type UsageReceipt } from '../usage-receipt.ts';
import { checkedHead, usageRows } from './usage-verify.ts';

const secret = ed25519.utils.randomSecretKey();
const key = toHex(ed25519.getPublicKey(secret));
const nonce = 'ab'.repeat(16);
const head = (over: Partial<{ nonce: string; newest: Record<string, number> }> = {}) => signReceiptHead(secret, { seq: 3, nonce, at: 0, newest: { c1: 3 }, ...over });

describe('checkedHead', () => {
  it('accepts a head of an attested key over this nonce that names every connection asked for', () => {
    const r = checkedHead(head(), nonce, ['c1'], (k) => k === key);
    expect(r.problem).toBeUndefined();
    expect(r.heads.get(key)?.newest).toEqual({ c1: 3 });
  });

  it('reports a missing, unattested, stale or partial head instead of ignoring it', () => {
    expect(checkedHead(null, nonce, ['c1'], () => true).problem).toMatch(/sent none/);
    expect(checkedHead(head(), nonce, ['c1'], () => false).problem).toMatch(/not attested/);
    expect(checkedHead(head({ nonce: 'cd'.repeat(16) }), nonce, ['c1'], () => true).problem).toBeDefined();
    expect(checkedHead(head(), nonce, ['c1', 'hidden'], () => true).problem).toMatch(/every connection/);
    for (const bad of [null, head({ nonce: 'cd'.repeat(16) })]) expect(checkedHead(bad, nonce, ['c1'], () => true).heads.size).toBe(0);
  });
});

describe('usageRows', () => {
  const receipt = (r: Partial<UsageReceipt>) =>
    signUsageReceipt(secret, { connectionId: 'c1', policySha256: '00'.repeat(32), day: 20_000, requests: 1, tokens: 10, microUsd: 0, lease: 1, seq: 1, prevSeq: 0, at: 0, ...r } as UsageReceipt);

  it("puts the host's counts beside the newest receipt of each enclave, per connection-day", () => {
    const rows = usageRows(
      [{ connectionId: 'c1', day: 20_000, requests: 2, tokens: 25 }],
      [receipt({ seq: 1, requests: 1, tokens: 10 }), receipt({ seq: 2, prevSeq: 1, requests: 2, tokens: 25 }), receipt({ day: 20_001, seq: 3, requests: 1, tokens: 5 })],
    );
    expect([...rows.values()]).toEqual([
      { connectionId: 'c1', day: 20_000, hostRequests: 2, hostTokens: 25, receiptRequests: 2, receiptTokens: 25, releases: 0 },
      { connectionId: 'c1', day: 20_001, hostRequests: 0, hostTokens: 0, receiptRequests: 1, receiptTokens: 5, releases: 0 },
    ]);
  });

  it('leaves out what the filter drops (unattested keys, days out of range) and adds the releases logged', () => {
    const other = signUsageReceipt(ed25519.utils.randomSecretKey(), { connectionId: 'c1', policySha256: '00'.repeat(32), day: 20_000, requests: 7, tokens: 70, microUsd: 0, lease: 1, seq: 1, prevSeq: 0, at: 0 });
    const rows = usageRows(
      [{ connectionId: 'c1', day: 19_999, requests: 9, tokens: 9 }],
      [receipt({ requests: 4 }), other],
      { day: (day) => day === 20_000, enclaveKey: (k) => k === key },
      [{ connectionId: 'c1', day: 20_000, releases: 3 }, { connectionId: 'c1', day: 19_999, releases: 5 }],
    );
    expect([...rows.values()].map((r) => [r.day, r.receiptRequests, r.hostRequests, r.releases])).toEqual([[20_000, 4, 0, 3]]);
  });
});
