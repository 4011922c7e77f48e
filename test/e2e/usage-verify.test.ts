/**
 * `securegate usage --verify` against a real stack (host, enclave process with the dev NSM, five
 * shareholder services, 3-of-5): the host collects the enclave's signed usage receipts beside its
 * audit trail, and the owner's verifier compares them — signatures checked against the receipt
 * key an attestation document (verified to the dev root, PCR0 pinned) vouches for — with the
 * host's recorded totals and the shareholders' lease logs. The test then plays a host that edits
 * its own database, as a compromised host can, and shows each kind of tampering is named.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createKey } from '../../cli/owner.ts';
import type { SignedUsageReceipt } from '../../protocol/index.ts';
import { openSqlite, type SqlDb } from '../../storage/db.ts';
import { startTestStack } from './helpers.ts';
import { collectedThrough, connectionWithTraffic as usageTraffic, today, verifyUsage } from './usage-helpers.ts';

let stack: Awaited<ReturnType<typeof startTestStack>>;
let db: SqlDb;

beforeAll(async () => {
  stack = await startTestStack();
  db = openSqlite(join(stack.dataDir, 'host', 'host.sqlite'));
}, 120_000);
afterAll(async () => {
  await db?.close();
  await stack?.cleanup();
});

const connectionWithTraffic = (n: number, eachCollected = false) => usageTraffic(stack, n, eachCollected);
const verify = (connection: string) => verifyUsage(stack, connection);

const receiptRows = async (id: string) =>
  (await db.query('SELECT id, seq, signed FROM usage_receipts WHERE connection_id = $1 ORDER BY seq', [id])).map((r) => ({ id: r.id as string, seq: Number(r.seq), signed: JSON.parse(r.signed as string) as SignedUsageReceipt }));

describe('usage --verify', () => {
  it('agrees when the host recorded what the enclave signed and the shareholders leased', async () => {
    const id = await connectionWithTraffic(3);
    const report = await verify(id);
    expect(report.findings).toEqual([]);
    expect(report.enclaveKeys.every((k) => k.attested)).toBe(true);
    const row = report.rows.find((r) => r.connectionId === id)!;
    expect(row).toMatchObject({ day: today(), hostRequests: 3, receiptRequests: 3 });
    expect(row.hostTokens).toBe(row.receiptTokens);
    expect(row.releases).toBeGreaterThanOrEqual(stack.threshold);
  });

  it('catches a host that under-reports by editing or deleting its audit rows', async () => {
    const id = await connectionWithTraffic(3);
    const rows = await db.query('SELECT id FROM audit_log WHERE connection_id = $1 ORDER BY at', [id]);
    await db.query('UPDATE audit_log SET tokens_in = 0, tokens_out = 0 WHERE id = $1', [rows[0]!.id as string]);
    await db.query('DELETE FROM audit_log WHERE id = $1', [rows[1]!.id as string]);
    const kinds = (await verify(id)).findings.map((f) => [f.kind, 'field' in f ? f.field : null, 'host' in f ? f.host : null, 'enclave' in f ? f.enclave : null]);
    expect(kinds).toContainEqual(['under_reported', 'requests', 2, 3]);
    expect(kinds.some(([k, field]) => k === 'under_reported' && field === 'tokens')).toBe(true);
  });

  it('catches a replayed receipt (stored twice)', async () => {
    const id = await connectionWithTraffic(2);
    const [first] = await receiptRows(id);
    await db.query('INSERT INTO usage_receipts (id, enclave_key, seq, connection_id, day, signed, received_at) VALUES ($1, $2, $3, $4, $5, $6, $7)', [
      'rcp_replayed', first!.signed.enclaveKey, first!.seq, id, first!.signed.receipt.day, JSON.stringify(first!.signed), Date.now(),
    ]);
    const findings = (await verify(id)).findings;
    expect(findings).toContainEqual(expect.objectContaining({ kind: 'receipt_replayed', seq: first!.seq }));
  });

  it('catches a dropped receipt, in the middle of the chain and at its tail', async () => {
    const id = await connectionWithTraffic(3, true);
    const receipts = await receiptRows(id);
    // The lease's receipt and one per answer.
    expect(receipts.map((r) => r.signed.receipt.requests)).toEqual([0, 1, 2, 3]);
    await db.query('DELETE FROM usage_receipts WHERE id = $1', [receipts[1]!.id]);
    let findings = (await verify(id)).findings;
    expect(findings).toContainEqual(expect.objectContaining({ kind: 'receipts_missing', connectionId: id, day: today(), toSeq: receipts[1]!.seq }));
    // The newest one: no gap left behind, but the running enclave's head over our nonce names it.
    await db.query('DELETE FROM usage_receipts WHERE id = $1', [receipts.at(-1)!.id]);
    findings = (await verify(id)).findings;
    expect(findings).toContainEqual(expect.objectContaining({ kind: 'receipts_missing', connectionId: id, day: null, toSeq: receipts.at(-1)!.seq }));
  });

  it('catches a host that drops every receipt of an enclave it restarted: the shareholders logged leases to that enclave', async () => {
    const id = await connectionWithTraffic(2);
    const [first] = await receiptRows(id);
    await stack.restartEnclave();
    const { key } = await createKey(stack.hostUrl, stack.adminToken, id);
    const r = await fetch(`${stack.hostUrl}/v1/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: JSON.stringify({ model: 'gpt-4o-mini', messages: [] }) });
    expect(r.status).toBe(200);
    await r.text();
    await collectedThrough(stack, id, (receipts) => receipts.some((x) => x.enclaveKey !== first!.signed.enclaveKey), 3);
    expect((await verify(id)).findings).toEqual([]);
    // The old enclave's receipts go; its head is gone with it, and the new enclave's chain is whole.
    await db.query('DELETE FROM usage_receipts WHERE connection_id = $1 AND enclave_key = $2', [id, first!.signed.enclaveKey]);
    expect((await verify(id)).findings).toContainEqual(expect.objectContaining({ kind: 'leases_unaccounted', connectionId: id, day: today(), enclaveKey: first!.signed.enclaveKey }));
  });

  it('catches a receipt the host edited (its signature no longer verifies)', async () => {
    const id = await connectionWithTraffic(2);
    const newest = (await receiptRows(id)).at(-1);
    const edited = { ...newest!.signed, receipt: { ...newest!.signed.receipt, requests: 1 } };
    await db.query('UPDATE usage_receipts SET signed = $1 WHERE id = $2', [JSON.stringify(edited), newest!.id]);
    expect((await verify(id)).findings).toContainEqual(expect.objectContaining({ kind: 'signature_invalid', seq: newest!.seq }));
  });

  it('catches a host that hides a connection entirely: the shareholders logged leases nobody accounts for', async () => {
    const id = await connectionWithTraffic(2);
    await db.query('DELETE FROM usage_receipts WHERE connection_id = $1', [id]);
    await db.query('DELETE FROM audit_log WHERE connection_id = $1', [id]);
    const kinds = (await verify(id)).findings.map((f) => f.kind);
    expect(kinds).toContain('leases_unaccounted');
    expect(kinds).toContain('receipts_missing');
  });

  it('refuses receipts whose key no verified attestation document vouches for', async () => {
    const id = await connectionWithTraffic(1);
    const [r] = await receiptRows(id);
    const [doc] = await db.query('SELECT document, first_seen FROM receipt_keys WHERE enclave_key = $1', [r!.signed.enclaveKey]);
    await db.query('DELETE FROM receipt_keys WHERE enclave_key = $1', [r!.signed.enclaveKey]);
    try {
      const report = await verify(id);
      expect(report.findings).toContainEqual({ kind: 'enclave_key_unattested', enclaveKey: r!.signed.enclaveKey, text: expect.any(String) });
      expect(report.enclaveKeys).toContainEqual(expect.objectContaining({ enclaveKey: r!.signed.enclaveKey, attested: false }));
    } finally {
      await db.query('INSERT INTO receipt_keys (enclave_key, document, first_seen) VALUES ($1, $2, $3)', [r!.signed.enclaveKey, doc!.document as string, Number(doc!.first_seen)]);
    }
  });
});
