/**
 * Adversarial review of the per-key rate limits (issue 20): a client holding a stolen SG key with a
 * tokens-per-minute limit tries to get more tokens per minute out of it than the owner allowed.
 *
 * Anthropic streams report usage twice: `message_start` carries the input tokens and an output
 * count of 1, and only the final `message_delta` carries the real output count. A client that
 * reads the generated text and hangs up before `message_delta` leaves the gateway holding the
 * partial usage of `message_start`. The money settlement charges the reservation's bound for an
 * incomplete answer; the token counter must do the same, or each such request counts as
 * input + 1 tokens however much was generated.
 *
 * Real stack (host, enclave process, shareholders); the upstream is a loopback server that streams
 * an Anthropic answer and stalls before its final usage, as a long generation does.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminApi, enrollConnection, readAnthropicStreamAndHangUp, startAnthropicStreamUpstream, startTestStack } from './helpers.ts';

let stack: Awaited<ReturnType<typeof startTestStack>>;
let upstream: Awaited<ReturnType<typeof startAnthropicStreamUpstream>>;
let origin: string;
const DELTAS = 300;

beforeAll(async () => {
  stack = await startTestStack();
  // The final message_delta (output_tokens: DELTAS) never comes before the client is gone.
  upstream = await startAnthropicStreamUpstream(DELTAS);
  origin = upstream.origin;
});
afterAll(async () => {
  upstream?.close();
  await stack?.cleanup();
});

let lastRefusal = '';

/** Streams a message, reads until the generated text has arrived, then hangs up. */
async function readAndHangUp(key: string): Promise<number> {
  const { status, text } = await readAnthropicStreamAndHangUp(stack.hostUrl, key, DELTAS);
  if (status !== 200) lastRefusal = text;
  else expect(text.split('text_delta').length - 1).toBe(DELTAS);
  return status;
}

describe('tokens per minute against a client that hangs up before the final usage', () => {
  // Found in review: the token counter was settled to the partial usage (message_start: output 1)
  // of a stream the client abandoned, while money was charged the bound.
  it('counts a stream abandoned before its final usage at its token bound, so the limit still refuses within the minute', async () => {
    const left = 60 - new Date().getUTCSeconds();
    if (left < 40) await new Promise((r) => setTimeout(r, left * 1000 + 200));
    const conn = await enrollConnection({ ...stack, mock: { ...stack.mock!, origin } }, { upstreamKey: 'sk-ant-rate', provider: 'anthropic' });
    const admin = adminApi(stack);
    // The token bound the gateway holds for one such request, as its refusal under a limit of 1 names it.
    expect((await admin('PATCH', `/keys/${conn.keyId}`, { tpm: 1 })).status).toBe(200);
    expect(await readAndHangUp(conn.key)).toBe(429);
    const bound = Number(/could use up to (\d+) tokens/.exec(lastRefusal)?.[1]);
    expect(bound).toBeGreaterThanOrEqual(DELTAS);
    // Room for three such requests a minute, each held (and, unfinished, charged) at its bound.
    const patched = await admin('PATCH', `/keys/${conn.keyId}`, { tpm: 3 * bound + 10 });
    expect(patched.status, JSON.stringify(patched.json)).toBe(200);

    const statuses: number[] = [];
    for (let i = 0; i < 8; i++) {
      statuses.push(await readAndHangUp(conn.key));
      await new Promise((r) => setTimeout(r, 150)); // let the disconnect settle before the next request
    }
    // Every 200 handed the client the DELTAS generated tokens; unfinished, each counts as its bound.
    expect(statuses, `statuses ${statuses.join(',')}; last refusal ${lastRefusal}`).toEqual([200, 200, 200, 429, 429, 429, 429, 429]);
    expect(JSON.parse(lastRefusal)).toMatchObject({ type: 'error', error: { type: 'rate_limit_error', code: 'rate_limit_exceeded' } });
    expect(lastRefusal).not.toContain('sk-ant-rate');
  }, 120_000);
});
