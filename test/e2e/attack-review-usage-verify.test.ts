/**
 * Adversarial review of `securegate usage --verify` (issue 19, SPEC §10.2): the host is hostile.
 * It drops the newest of the running enclave's receipts from its store and deletes the matching
 * audit row, so its records and the receipts it still holds agree — and then, when the owner's
 * verifier asks for the enclave's head over a fresh nonce (the one thing that would name the
 * dropped tail), it answers without one, or with a head signed over an older nonce. A verifier
 * that takes "no head" as "nothing to compare" lets the host decide whether the tail is checked.
 *
 * Real stack (host, enclave process with the dev NSM, shareholder services); the hostile host is
 * its own database edited by the test plus an HTTP front on loopback that relays the admin API and
 * rewrites only the `head` of `GET /admin/v1/receipts`, as a host that controls its own code can.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openSqlite, type SqlDb } from '../../storage/db.ts';
import { startTestStack } from './helpers.ts';
import { connectionWithTraffic as usageTraffic, verifyUsage } from './usage-helpers.ts';

let stack: Awaited<ReturnType<typeof startTestStack>>;
let db: SqlDb;
let front: Server;
let frontUrl: string;
/** What the hostile front does to the head: pass it on, drop it, or answer with one it kept from an earlier run. */
let headMode: 'pass' | 'drop' | 'stale' = 'pass';
let keptHead: unknown = null;

beforeAll(async () => {
  stack = await startTestStack();
  db = openSqlite(join(stack.dataDir, 'host', 'host.sqlite'));
  front = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', async () => {
      const headers = Object.fromEntries(Object.entries(req.headers).filter(([k]) => k !== 'host' && k !== 'content-length')) as Record<string, string>;
      const upstream = await fetch(`${stack.hostUrl}${req.url}`, { method: req.method!, headers, ...(chunks.length ? { body: Buffer.concat(chunks) } : {}) });
      let body = Buffer.from(await upstream.arrayBuffer());
      if (req.url!.startsWith('/admin/v1/receipts') && upstream.status === 200) {
        const evidence = JSON.parse(body.toString()) as { head: unknown };
        if (evidence.head && headMode === 'pass') keptHead = evidence.head;
        if (headMode === 'drop') evidence.head = null;
        if (headMode === 'stale') evidence.head = keptHead;
        body = Buffer.from(JSON.stringify(evidence));
      }
      res.writeHead(upstream.status, { 'content-type': upstream.headers.get('content-type') ?? 'application/json' });
      res.end(body);
    });
  });
  await new Promise<void>((r) => front.listen(0, '127.0.0.1', r));
  frontUrl = `http://127.0.0.1:${(front.address() as AddressInfo).port}`;
}, 120_000);
afterAll(async () => {
  front?.close();
  await db?.close();
  await stack?.cleanup();
});

// Each answer's receipt collected before the next request: every answer has its own receipt, so
// dropping the newest drops exactly one request.
const connectionWithTraffic = (n: number) => usageTraffic(stack, n, true);
const verify = (connection: string) => verifyUsage(stack, connection, frontUrl);

/** Drops the newest receipt and the newest audit row of `id`: the host's books and its receipts agree, one request short. */
async function hideLastRequest(id: string): Promise<number> {
  const [receipt] = await db.query('SELECT id, seq FROM usage_receipts WHERE connection_id = $1 ORDER BY seq DESC LIMIT 1', [id]);
  await db.query('DELETE FROM usage_receipts WHERE id = $1', [receipt!.id as string]);
  const [row] = await db.query('SELECT id FROM audit_log WHERE connection_id = $1 ORDER BY at DESC LIMIT 1', [id]);
  await db.query('DELETE FROM audit_log WHERE id = $1', [row!.id as string]);
  return Number(receipt!.seq);
}

describe('usage --verify against a host that withholds the enclave head', () => {
  it('with the head relayed, the dropped tail is named (control)', async () => {
    headMode = 'pass';
    const id = await connectionWithTraffic(3);
    expect((await verify(id)).findings).toEqual([]);
    const seq = await hideLastRequest(id);
    expect((await verify(id)).findings).toContainEqual(expect.objectContaining({ kind: 'receipts_missing', connectionId: id, toSeq: seq }));
  });

  // cli/usage-verify.ts used to ignore a missing or unverifiable head (`if (evidence.head) … catch {}`),
  // so a host that dropped its newest receipts and answered without a head passed with no finding.
  it.each(['drop', 'stale'] as const)('does not pass a host that hid its tail and answered with head mode %s', async (mode) => {
    headMode = 'pass';
    const id = await connectionWithTraffic(3);
    await verify(id); // the front keeps the head of this run (a stale one for the next)
    await hideLastRequest(id);
    headMode = mode;
    const report = await verify(id);
    headMode = 'pass';
    expect(report.findings).toContainEqual(expect.objectContaining({ kind: 'head_unverified' }));
    expect(report.findings.find((f) => f.kind === 'head_unverified')!.text).toMatch(/cannot be ruled out/);
  });
});
