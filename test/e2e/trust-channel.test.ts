/**
 * The enclave → shareholder channel (issue 18), with the real enclave process and shareholder
 * processes: the enclave is started with --shareholder-socket-dir, as enclave-init.sh starts it,
 * so it reaches each shareholder only through `<dir>/shareholder-<id>.sock` (in production a socat
 * bridge to the parent's vsock-proxy, i.e. through the untrusted host). Here each socket is an
 * HTTP relay that can also play the man in the middle: a share it forges "from sh-2" is refused
 * by the enclave and never counted against sh-2.
 */
import { join } from 'node:path';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeShare, generateX25519KeyPair } from '../../protocol/index.ts';
import { enclaveMetrics, enrollConnection, eventually, startTestStack } from './helpers.ts';
import { startShareholderRelays, type ShareholderRelays } from './shareholder-relays.ts';

let stack: Awaited<ReturnType<typeof startTestStack>>;
const mitmKey = generateX25519KeyPair();
let relays: ShareholderRelays;

beforeAll(async () => {
  relays = await startShareholderRelays(['sh-1', 'sh-2', 'sh-3', 'sh-4', 'sh-5'], mitmKey);
  stack = await startTestStack({ enclaveArgs: ['--shareholder-socket-dir', relays.dir] });
  relays.serve(stack);
});
afterAll(async () => {
  await stack?.cleanup();
  await relays?.close();
});

const chat = (key: string) =>
  new OpenAI({ apiKey: key, baseURL: `${stack.hostUrl}/v1`, maxRetries: 0 }).chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] });

describe('enclave → shareholder channel', () => {
  it('reaches every shareholder only through its socket route and serves a cold key', async () => {
    const conn = await enrollConnection(stack, { upstreamKey: stack.demo!.upstreamKey });
    const before = new Map(relays.relayed);
    const completion = await chat(conn.key);
    expect(completion.choices[0]!.message.content).toContain('mock upstream');
    const used = [...relays.relayed].filter(([id, n]) => n > (before.get(id) ?? 0)).map(([id]) => id);
    expect(used.length).toBeGreaterThanOrEqual(3);
  });

  it('refuses a share a man in the middle forged "from sh-2" on the route, and does not blame sh-2', async () => {
    const conn = await enrollConnection(stack, { upstreamKey: stack.demo!.upstreamKey });
    relays.forge.set('sh-2', encodeShare({ index: 2, data: new Uint8Array(32).fill(7) }));
    try {
      const completion = await chat(conn.key);
      expect(completion.choices[0]!.message.content).toContain('mock upstream');
      const line = await eventually(async () =>
        (await enclaveMetrics(stack)).split('\n').find((l) => l.startsWith('securegate_enclave_share_fetch_failures_total{shareholder="sh-2",reason="unauthenticated"}')),
      );
      expect(line).toMatch(/ [1-9]\d*$/);
      expect(await enclaveMetrics(stack)).not.toMatch(/securegate_enclave_bad_shares_total\{shareholder="sh-2"\}/);
    } finally {
      relays.forge.delete('sh-2');
    }
  });

  it('lists the vsock bridges enclave-init.sh starts, and refuses an image configuration with a shareholder it cannot reach', async () => {
    const { execFile } = await import('node:child_process');
    const { writeFile } = await import('node:fs/promises');
    const main = new URL('../../enclave/main.ts', import.meta.url).pathname;
    const run = (file: string) =>
      new Promise<{ code: number; stdout: string }>((resolve) =>
        execFile(process.execPath, [main, '--shareholders', file, '--print-shareholder-bridges'], (error, stdout) => resolve({ code: error ? Number(error.code) : 0, stdout })),
      );
    const sh = { id: 'sh-1', url: 'https://sh1.example', publicKey: 'ab'.repeat(32), vsockPort: 8101 };
    const good = join(relays.dir, 'image-shareholders.json');
    await writeFile(good, JSON.stringify([sh, { ...sh, id: 'sh-2', vsockPort: 8102 }]));
    expect(await run(good)).toEqual({ code: 0, stdout: 'sh-1 8101\nsh-2 8102\n' });
    const noPort = join(relays.dir, 'image-shareholders-bad.json');
    await writeFile(noPort, JSON.stringify([{ id: 'sh-1', url: sh.url, publicKey: sh.publicKey }]));
    expect((await run(noPort)).code).toBe(1);
  });
});
