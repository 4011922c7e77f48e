/**
 * Adversarial review of the owner-signed daily token ceiling the enclave enforces (issue 19): the
 * host is hostile and speaks the enclave RPC directly, with the connection's own descriptor read
 * from its database.
 *
 * Anthropic streams report usage twice: `message_start` carries the input tokens and an output
 * count of 1; only the final `message_delta` carries the real output count. The enclave counts
 * the largest usage it relayed when the relay ends. A host that reads the generated text and closes
 * the RPC connection before `message_delta` leaves the enclave counting input + 1 tokens per
 * answer, however much it generated — so the ceiling (and a lease's token quota) never binds.
 *
 * Real stack: the enclave process, shareholder services and host; the upstream is a loopback
 * server that streams an Anthropic answer and sends its final usage a moment after the text.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeConnectionDescriptor, RPC_CONNECTION_HEADER, RPC_ENCLAVE_ERROR_HEADER, type SignedOwnerMessage } from '../../protocol/index.ts';
import { openSqlite, type SqlDb } from '../../storage/db.ts';
import { createKey } from '../../cli/owner.ts';
import { connectTestProvider, enclaveRpc, readAnthropicStreamAndHangUp, startAnthropicStreamUpstream, startTestStack } from './helpers.ts';

let stack: Awaited<ReturnType<typeof startTestStack>>;
let db: SqlDb;
let upstream: Awaited<ReturnType<typeof startAnthropicStreamUpstream>>;
let origin: string;
const DELTAS = 300;

beforeAll(async () => {
  stack = await startTestStack();
  db = openSqlite(join(stack.dataDir, 'host', 'host.sqlite'));
  // The final usage follows the text a moment later, as at the end of a long generation.
  upstream = await startAnthropicStreamUpstream(DELTAS, 1500);
  origin = upstream.origin;
}, 120_000);
afterAll(async () => {
  upstream?.close();
  await db?.close();
  await stack?.cleanup();
});

/** The descriptor the host sends for a connection, built from its own database (as a hostile host can). */
async function descriptorOf(id: string): Promise<string> {
  const [c] = await db.query('SELECT * FROM connections WHERE id = $1', [id]);
  return encodeConnectionDescriptor({
    connectionId: id,
    provider: c!.provider as string,
    origin: c!.origin as string,
    authScheme: c!.auth_scheme as never,
    sealedRecord: c!.sealed_record as string,
    threshold: Number(c!.threshold),
    policy: JSON.parse(c!.connection_policy as string) as SignedOwnerMessage,
    // Records sealed with the shareholder set carry it in the descriptor too.
    ...(typeof c!.shareholder_set === 'string' ? { shareholders: JSON.parse(c!.shareholder_set) as never } : {}),
  } as Parameters<typeof encodeConnectionDescriptor>[0]);
}

/** One streamed message straight to the enclave; `hangUp`: close once the text has arrived, before the final usage. */
async function send(descriptor: string, hangUp: boolean): Promise<{ status: number; code: string | null }> {
  const pool = enclaveRpc(stack);
  try {
    const res = await pool.request({
      path: '/forward/v1/messages',
      method: 'POST',
      headers: { [RPC_CONNECTION_HEADER]: descriptor, 'content-type': 'application/json', 'anthropic-version': '2023-06-01' },
      body: JSON.stringify({ model: 'claude-sonnet-4-5', max_tokens: DELTAS, stream: true, messages: [{ role: 'user', content: 'hi' }] }),
    });
    const code = res.headers[RPC_ENCLAVE_ERROR_HEADER];
    if (res.statusCode !== 200 || !hangUp) {
      await res.body.text();
      return { status: res.statusCode, code: typeof code === 'string' ? code : null };
    }
    let text = '';
    for await (const chunk of res.body) {
      text += Buffer.from(chunk as Buffer).toString();
      if (text.includes('content_block_stop')) break; // leaving the loop destroys the body: the host hangs up
    }
    expect(text.split('text_delta').length - 1).toBe(DELTAS);
    return { status: res.statusCode, code: null };
  } finally {
    await pool.destroy();
    await new Promise((r) => setTimeout(r, 200)); // the enclave settles the relay it saw end
  }
}

describe("the enclave's daily token ceiling against a host that hangs up before the final usage", () => {
  // Room for three answers of DELTAS output tokens (plus input) a day, not for eight.
  const ceiling = 3 * (DELTAS + 10) + 5;

  it('an honest relay is counted in full: the fourth answer of the day is refused (control)', async () => {
    const id = await connectTestProvider(stack, 'anthropic', { origin, apiKey: 'sk-ant-ceiling-1', connectionPolicy: { ceiling: { tokens: ceiling } } });
    const d = await descriptorOf(id);
    const results = [];
    for (let i = 0; i < 5; i++) results.push(await send(d, false));
    expect(results.map((r) => r.status)).toEqual([200, 200, 200, 200, 429]);
    expect(results.at(-1)!.code).toBe('policy_ceiling_reached');
  }, 60_000);

  // Found in review: the enclave's settle took the usage seen so far even when the relay was cut
  // before the answer's final usage; a cut-off answer now counts at least an unmetered one.
  it('an answer the host cut off after its text counts at least as much as the text it carried', async () => {
    const id = await connectTestProvider(stack, 'anthropic', { origin, apiKey: 'sk-ant-ceiling-2', connectionPolicy: { ceiling: { tokens: ceiling } } });
    const d = await descriptorOf(id);
    const results = [];
    for (let i = 0; i < 8; i++) results.push(await send(d, true));
    // Every 200 handed the host DELTAS generated tokens: at most four fit the ceiling's check.
    const served = results.filter((r) => r.status === 200).length;
    expect(served, JSON.stringify(results)).toBeLessThanOrEqual(4);
    expect(results.at(-1)).toEqual({ status: 429, code: 'policy_ceiling_reached' });
  }, 60_000);

  // Same root cause, reached by a client: the honest host aborts its enclave request when the
  // client hangs up (host/request/forward.ts), so a stolen SG key without host-side caps got past
  // the owner's enclave-enforced ceiling the same way.
  it('a client with an SG key that hangs up after the text cannot pass the ceiling through an honest host', async () => {
    const id = await connectTestProvider(stack, 'anthropic', { origin, apiKey: 'sk-ant-ceiling-3', connectionPolicy: { ceiling: { tokens: ceiling } } });
    const { key } = await createKey(stack.hostUrl, stack.adminToken, id);
    const statuses: number[] = [];
    for (let i = 0; i < 8; i++) {
      const { status } = await readAnthropicStreamAndHangUp(stack.hostUrl, key, DELTAS);
      statuses.push(status);
      if (status === 200) await new Promise((r) => setTimeout(r, 200));
    }
    expect(statuses.filter((s) => s === 200).length, statuses.join(',')).toBeLessThanOrEqual(4);
    expect(statuses.at(-1)).toBe(429);
  }, 60_000);
});
