/**
 * DESIGN.md §8.1: the plaintext upstream key never appears on the host — not in its memory
 * (V8 heap snapshot after traffic), its database files, or its logs — and an upstream error
 * that echoes the key reaches the client scrubbed.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { enrollConnection, eventually, startTestStack } from './helpers.ts';

let stack: Awaited<ReturnType<typeof startTestStack>>;

beforeAll(async () => {
  stack = await startTestStack({ hostNodeArgs: ['--heapsnapshot-signal=SIGUSR2'] });
});
afterAll(async () => {
  await stack?.cleanup();
});

describe('the host never holds the upstream key', () => {
  it('is absent from the host heap, database files and logs after traffic', async () => {
    const client = new OpenAI({ apiKey: stack.demo!.key, baseURL: `${stack.hostUrl}/v1`, maxRetries: 0 });
    for (let i = 0; i < 3; i++) {
      await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] });
      const stream = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }], stream: true });
      for await (const _ of stream) void _;
    }
    const upstreamKey = stack.demo!.upstreamKey;
    const hostDir = join(stack.dataDir, 'host');
    stack.host.child.kill('SIGUSR2');
    const snapshot = await eventually(async () => {
      const file = readdirSync(hostDir).find((f) => f.endsWith('.heapsnapshot'));
      if (!file) return undefined;
      const text = readFileSync(join(hostDir, file), 'utf8');
      return text.trimEnd().endsWith('}') ? text : undefined;
    }, 30_000);
    expect(snapshot.length).toBeGreaterThan(100_000);
    // Sanity: the snapshot does hold strings the host handled (the connection id is cached).
    expect(snapshot.includes(stack.demo!.connectionId)).toBe(true);
    expect(snapshot.includes(upstreamKey)).toBe(false);
    for (const file of readdirSync(hostDir)) {
      if (file.endsWith('.heapsnapshot')) continue;
      expect(readFileSync(join(hostDir, file)).includes(upstreamKey), file).toBe(false);
    }
    const hostLog = readFileSync(join(stack.dataDir, 'logs', 'host.log'), 'utf8');
    expect(hostLog.length).toBeGreaterThan(0);
    expect(hostLog.includes(upstreamKey)).toBe(false);
    expect(hostLog.includes(stack.demo!.key)).toBe(false);
  });

  it('scrubs an upstream error that echoes the key', async () => {
    const wrongKey = `sk-wrongkey-${Date.now()}-abcdefghij`;
    const conn = await enrollConnection(stack, { upstreamKey: wrongKey });
    const client = new OpenAI({ apiKey: conn.key, baseURL: `${stack.hostUrl}/v1`, maxRetries: 0 });
    const error = (await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }] }).catch((e: unknown) => e)) as InstanceType<typeof OpenAI.APIError>;
    expect(error.status).toBe(401);
    const text = JSON.stringify(error.error);
    expect(text).toContain('Incorrect API key provided');
    expect(text).not.toContain(wrongKey);
    expect(text).not.toContain(wrongKey.slice(0, 8));
    expect(text).toContain('[redacted]');
  });
});
