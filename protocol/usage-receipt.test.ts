/**
 * `verifyUsage` (SPEC.md §10.2) as a pure function over receipts signed here with fresh keys: each
 * finding it owes, and none for an honest chain. The same checks run against a real stack in
 * test/e2e/usage-verify.test.ts.
 */
import { ed25519 } from '@noble/curves/ed25519.js';
import { describe, expect, it } from 'vitest';
import { toHex } from './bytes.ts';
import { verifyUsage } from './owner/usage-verify.ts';
import { signReceiptHead, signUsageReceipt, type SignedUsageReceipt, type UsageReceipt } from './usage-receipt.ts';
import { verifyReceiptHead } from './usage-receipt-verify.ts';

const DAY = 20_000;

function enclave() {
  const secret = ed25519.utils.randomSecretKey();
  let seq = 0;
  const last = new Map<string, UsageReceipt>();
  return {
    key: toHex(ed25519.getPublicKey(secret)),
    secret,
    /** One settled answer on `connectionId`: the running count goes up by one request and `tokens`. */
    serve(connectionId: string, tokens: number, lease = 1): SignedUsageReceipt {
      const prev = last.get(connectionId);
      const r: UsageReceipt = { connectionId, policySha256: '00'.repeat(32), day: DAY, requests: (prev?.requests ?? 0) + 1, tokens: (prev?.tokens ?? 0) + tokens, microUsd: 0, lease, seq: ++seq, prevSeq: prev?.seq ?? 0, at: 0 };
      last.set(connectionId, r);
      return signUsageReceipt(secret, r);
    },
  };
}

describe('verifyUsage', () => {
  it('finds nothing when the host recorded at least what two enclaves signed and the leases fit the logs', () => {
    const a = enclave();
    const b = enclave();
    const receipts = [a.serve('c1', 10), b.serve('c1', 5), a.serve('c2', 1), a.serve('c1', 10, 2)];
    const findings = verifyUsage({
      receipts,
      attestedKeys: new Set([a.key, b.key]),
      host: [
        { connectionId: 'c1', day: DAY, requests: 3, tokens: 25 },
        { connectionId: 'c2', day: DAY, requests: 1, tokens: 1 },
      ],
      leaseLog: { threshold: 2, releases: [{ connectionId: 'c1', day: DAY, releases: 6 }, { connectionId: 'c2', day: DAY, releases: 2 }] },
    });
    expect(findings).toEqual([]);
  });

  it('sums the newest receipt of every enclave: a host below the sum under-reports', () => {
    const a = enclave();
    const b = enclave();
    const findings = verifyUsage({ receipts: [a.serve('c1', 10), b.serve('c1', 10)], attestedKeys: new Set([a.key, b.key]), host: [{ connectionId: 'c1', day: DAY, requests: 1, tokens: 20 }] });
    expect(findings).toEqual([{ kind: 'under_reported', connectionId: 'c1', day: DAY, field: 'requests', host: 1, enclave: 2 }]);
  });

  it('names a duplicate, a gap in a connection-day chain, and a tail past the signed head', () => {
    const a = enclave();
    const r = [a.serve('c1', 1), a.serve('c2', 1), a.serve('c1', 1), a.serve('c1', 1), a.serve('c1', 1)];
    const head = verifyReceiptHead(signReceiptHead(a.secret, { seq: 5, nonce: 'ab'.repeat(16), at: 0, newest: { c1: 5, c2: 2 } }), a.key, 'ab'.repeat(16));
    const stored = [r[0]!, r[0]!, r[1]!, r[3]!]; // #1 twice, #3 (c1) dropped, #5 (c1's newest) dropped
    const findings = verifyUsage({ receipts: stored, attestedKeys: new Set([a.key]), heads: new Map([[a.key, head]]), host: [{ connectionId: 'c1', day: DAY, requests: 9, tokens: 9 }, { connectionId: 'c2', day: DAY, requests: 9, tokens: 9 }] });
    expect(findings).toEqual([
      { kind: 'receipt_replayed', enclaveKey: a.key, seq: 1 },
      { kind: 'receipts_missing', enclaveKey: a.key, connectionId: 'c1', day: DAY, fromSeq: 2, toSeq: 3 },
      { kind: 'receipts_missing', enclaveKey: a.key, connectionId: 'c1', day: null, fromSeq: 5, toSeq: 5 },
    ]);
  });

  it('refuses edited receipts and receipts of keys no attestation vouches for', () => {
    const a = enclave();
    const stranger = enclave();
    const edited = a.serve('c1', 10);
    edited.receipt.tokens = 1;
    const findings = verifyUsage({ receipts: [edited, stranger.serve('c1', 5)], attestedKeys: new Set([a.key]), host: [] });
    expect(findings).toEqual([
      { kind: 'signature_invalid', enclaveKey: a.key, seq: 1 },
      { kind: 'enclave_key_unattested', enclaveKey: stranger.key },
    ]);
  });

  it('compares leases with the shareholders’ logs: more leases than logged, and logged leases nobody accounts for', () => {
    const a = enclave();
    const receipts = [a.serve('c1', 1, 1), a.serve('c1', 1, 2), a.serve('c1', 1, 3)];
    const findings = verifyUsage({
      receipts,
      attestedKeys: new Set([a.key]),
      host: [{ connectionId: 'c1', day: DAY, requests: 3, tokens: 3 }],
      // 3 leases need at least 6 releases at t = 2; the logs (today and yesterday) show 5.
      leaseLog: { threshold: 2, releases: [{ connectionId: 'c1', day: DAY, releases: 3 }, { connectionId: 'c1', day: DAY - 1, releases: 2 }, { connectionId: 'hidden', day: DAY, releases: 2 }] },
    });
    expect(findings).toEqual([
      { kind: 'leases_exceeded', connectionId: 'c1', day: DAY, enclaveLeases: 3, leasesLogged: 2 },
      { kind: 'leases_unaccounted', connectionId: 'hidden', day: DAY, releases: 2 },
    ]);
  });

  it('names releases to an enclave none of whose receipts for that connection-day the host kept', () => {
    const a = enclave();
    const b = enclave();
    const findings = verifyUsage({
      receipts: [b.serve('c1', 1)],
      attestedKeys: new Set([a.key, b.key]),
      host: [{ connectionId: 'c1', day: DAY, requests: 1, tokens: 1 }],
      leaseLog: { threshold: 2, releases: [{ connectionId: 'c1', day: DAY, releases: 2, enclaveKey: a.key }, { connectionId: 'c1', day: DAY, releases: 2, enclaveKey: b.key }] },
    });
    expect(findings).toEqual([{ kind: 'leases_unaccounted', connectionId: 'c1', day: DAY, releases: 2, enclaveKey: a.key }]);
  });

  it('a head signed over another nonce does not verify', () => {
    const a = enclave();
    const head = signReceiptHead(a.secret, { seq: 1, nonce: 'cd'.repeat(16), at: 0, newest: {} });
    expect(() => verifyReceiptHead(head, a.key, 'ab'.repeat(16))).toThrow(expect.objectContaining({ code: 'signature_invalid' }));
  });
});
