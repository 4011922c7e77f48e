/**
 * Release flooding (issue 18) against the real stack — shareholder processes, the enclave process
 * and the host: a stranger who knows a connection id, asks the public endpoints for challenges and
 * asks the gateway's public `GET /v1/attestation?nonce=` for genuine documents over them, then
 * floods every shareholder with releases. Before, 12 requests listing the id 64 times used up a
 * minute's budget (600) and the cold enclave got `shareholders_unavailable`; now the repeats are
 * refused, releases to one enclave key count once, and the cold key is served.
 */
import OpenAI from 'openai';
import { Agent } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { enrollConnection, startTestStack } from './helpers.ts';

let stack: Awaited<ReturnType<typeof startTestStack>>;
/** The stranger calls from another address than the enclave (127.0.0.2 on loopback). */
const stranger = new Agent({ localAddress: '127.0.0.2' });

beforeAll(async () => {
  stack = await startTestStack();
});
afterAll(async () => {
  await stranger.close();
  await stack?.cleanup();
});

async function post(url: string, body: unknown): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body), dispatcher: stranger } as RequestInit);
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
}

/** One flood round at one shareholder: a challenge, the gateway's document over it, a release. */
async function floodOnce(shUrl: string, connectionIds: string[]): Promise<number> {
  const challenge = await post(`${shUrl}/v1/challenges`, {});
  if (challenge.status !== 200) return challenge.status;
  const attestation = (await (await fetch(`${stack.hostUrl}/v1/attestation?nonce=${String(challenge.json.nonce)}`)).json()) as { document: string };
  return (await post(`${shUrl}/v1/releases`, { document: attestation.document, connectionIds })).status;
}

describe('release budget under a flood', () => {
  it('serves a cold key to the enclave while a stranger floods every shareholder with releases of it', async () => {
    const conn = await enrollConnection(stack, { upstreamKey: stack.demo!.upstreamKey }); // 600 releases a minute
    const repeated = Array.from({ length: 64 }, () => conn.connectionId);
    const statuses = await Promise.all(
      stack.shareholders.map(async (sh) => {
        const out: number[] = [];
        for (let i = 0; i < 12; i++) out.push(await floodOnce(sh.url, repeated));
        for (let i = 0; i < 20; i++) out.push(await floodOnce(sh.url, [conn.connectionId]));
        return out;
      }),
    );
    for (const s of statuses) {
      expect(s.slice(0, 12).every((x) => x === 400)).toBe(true); // a repeated connection id is refused
      expect(s.slice(12).every((x) => x === 200)).toBe(true); // released to the gateway's own enclave key: counted once
    }
    const completion = await new OpenAI({ apiKey: conn.key, baseURL: `${stack.hostUrl}/v1`, maxRetries: 0 }).chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'hi' }],
    });
    expect(completion.choices[0]!.message.content).toContain('mock upstream');
  });
});
