/**
 * Helpers for the `usage --verify` end-to-end tests: a policy connection with answered traffic
 * whose receipts and audit rows the host holds, and the owner's verifier run against a stack.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'vitest';
import { loadRoot } from '../../attestation/index.ts';
import { createKey } from '../../cli/owner.ts';
import { verifyUsageReport } from '../../cli/usage-verify.ts';
import type { SignedUsageReceipt } from '../../protocol/index.ts';
import type { Stack } from '../../scripts/stack.ts';
import { adminApi, connectTestProvider, eventually } from './helpers.ts';

const DAY = 86_400_000;
export const today = () => Math.floor(Date.now() / DAY);

/**
 * A policy connection with `n` answered requests, once the host has both its audit rows and the
 * receipts. `eachCollected`: each answer's receipt collected before the next request, so every
 * answer has its own receipt (answers between two collections share one).
 */
export async function connectionWithTraffic(stack: Stack, n: number, eachCollected = false): Promise<string> {
  const id = await connectTestProvider(stack, 'openai', { connectionPolicy: { ceiling: { requests: 1000 } } });
  const { key } = await createKey(stack.hostUrl, stack.adminToken, id);
  const collected = (requests: number) => collectedThrough(stack, id, (receipts) => receipts.at(-1)?.receipt.requests === requests, requests);
  for (let i = 0; i < n; i++) {
    const r = await fetch(`${stack.hostUrl}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] }),
    });
    expect(r.status).toBe(200);
    await r.text();
    if (eachCollected) await collected(i + 1);
  }
  await collected(n);
  return id;
}

/**
 * Waits until the host holds receipts that satisfy `receiptsDone` and has recorded `hostRequests`
 * answers for the connection today: a receipt can reach the host before the answer's audit row is
 * committed, and a verify between the two sees an under-report that is only a moment old.
 */
export const collectedThrough = (stack: Stack, id: string, receiptsDone: (receipts: SignedUsageReceipt[]) => boolean, hostRequests: number) =>
  eventually(async () => {
    const e = (await adminApi(stack)<{ receipts: SignedUsageReceipt[]; host: Array<{ requests: number }> }>('GET', `/receipts?connection=${id}`)).json;
    return receiptsDone(e.receipts) && e.host[0]?.requests === hostRequests ? true : undefined;
  });

/** The owner's `usage --verify` for today and one connection, through `serverUrl` (the stack's host unless a test puts a front before it). */
export const verifyUsage = (stack: Stack, connection: string, serverUrl = stack.hostUrl) =>
  verifyUsageReport({
    serverUrl,
    adminToken: stack.adminToken,
    shareholders: stack.shareholders.map(({ id, url, publicKey }) => ({ id, url, publicKey })),
    threshold: stack.threshold,
    roots: [loadRoot('securegate-dev-root', readFileSync(join(stack.dataDir, 'dev-root', 'root.pem')))],
    expectPcrs: { '0': stack.pcr0 },
    from: today(),
    to: today(),
    connection,
  });
