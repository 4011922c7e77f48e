/**
 * The enclave → shareholder channel (issue 18), with the real enclave process and shareholder
 * processes: the enclave is started with --shareholder-socket-dir, as enclave-init.sh starts it,
 * so it reaches each shareholder only through `<dir>/shareholder-<id>.sock` (in production a socat
 * bridge to the parent's vsock-proxy, i.e. through the untrusted host). Here each socket is an
 * HTTP relay that can also play the man in the middle: a share it forges "from sh-2" is refused
 * by the enclave and never counted against sh-2.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeCoseSign1, parseAttestationPayload } from '../../attestation/index.ts';
import { encodeShare, generateX25519KeyPair, sealShareEnvelope } from '../../protocol/index.ts';
import { enclaveMetrics, enrollConnection, eventually, startTestStack } from './helpers.ts';

let stack: Awaited<ReturnType<typeof startTestStack>>;
let sockDir: string;
const bridges: Server[] = [];
const relayed = new Map<string, number>();
const forgeFor = new Set<string>();
const mitmKey = generateX25519KeyPair();
let stackReady: (s: typeof stack) => void;
const ready = new Promise<typeof stack>((r) => (stackReady = r));

/** The relay in front of shareholder `id`: passes requests on; forges its releases when asked. */
function bridge(id: string): Server {
  return createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', async () => {
      try {
        const s = await ready;
        const target = s.shareholders.find((sh) => sh.id === id)!;
        relayed.set(id, (relayed.get(id) ?? 0) + 1);
        const body = Buffer.concat(chunks).toString('utf8');
        const upstream = await fetch(`${target.url}${req.url}`, { method: req.method, headers: { 'content-type': 'application/json' }, ...(req.method === 'POST' ? { body } : {}) });
        let text = await upstream.text();
        if (forgeFor.has(id) && req.url === '/v1/releases' && upstream.status === 200) {
          const doc = parseAttestationPayload(decodeCoseSign1(new Uint8Array(Buffer.from((JSON.parse(body) as { document: string }).document, 'base64'))).payload);
          const reply = JSON.parse(text) as { shares: Array<{ connectionId: string; envelope: string }> };
          for (const share of reply.shares) {
            const forged = encodeShare({ index: 2, data: new Uint8Array(32).fill(7) });
            const env = await sealShareEnvelope(doc.publicKey!, forged, { purpose: 'release', connectionId: share.connectionId, shareholderId: id, nonce: doc.nonce! }, mitmKey.privateKey);
            share.envelope = Buffer.from(env).toString('base64');
          }
          text = JSON.stringify(reply);
        }
        res.writeHead(upstream.status, { 'content-type': 'application/json' }).end(text);
      } catch {
        res.destroy();
      }
    });
  });
}

beforeAll(async () => {
  sockDir = await mkdtemp(join(tmpdir(), 'sg-sh-sock-'));
  for (let i = 1; i <= 5; i++) {
    const server = bridge(`sh-${i}`);
    await new Promise<void>((r) => server.listen(join(sockDir, `shareholder-sh-${i}.sock`), r));
    bridges.push(server);
  }
  stack = await startTestStack({ enclaveArgs: ['--shareholder-socket-dir', sockDir] });
  stackReady(stack);
});
afterAll(async () => {
  await stack?.cleanup();
  for (const b of bridges) b.close();
  await rm(sockDir, { recursive: true, force: true });
});

const chat = (key: string) =>
  new OpenAI({ apiKey: key, baseURL: `${stack.hostUrl}/v1`, maxRetries: 0 }).chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] });

describe('enclave → shareholder channel', () => {
  it('reaches every shareholder only through its socket route and serves a cold key', async () => {
    const conn = await enrollConnection(stack, { upstreamKey: stack.demo!.upstreamKey });
    const before = new Map(relayed);
    const completion = await chat(conn.key);
    expect(completion.choices[0]!.message.content).toContain('mock upstream');
    const used = [...relayed].filter(([id, n]) => n > (before.get(id) ?? 0)).map(([id]) => id);
    expect(used.length).toBeGreaterThanOrEqual(3);
  });

  it('refuses a share a man in the middle forged "from sh-2" on the route, and does not blame sh-2', async () => {
    const conn = await enrollConnection(stack, { upstreamKey: stack.demo!.upstreamKey });
    forgeFor.add('sh-2');
    try {
      const completion = await chat(conn.key);
      expect(completion.choices[0]!.message.content).toContain('mock upstream');
      const line = await eventually(async () =>
        (await enclaveMetrics(stack)).split('\n').find((l) => l.startsWith('securegate_enclave_share_fetch_failures_total{shareholder="sh-2",reason="unauthenticated"}')),
      );
      expect(line).toMatch(/ [1-9]\d*$/);
      expect(await enclaveMetrics(stack)).not.toMatch(/securegate_enclave_bad_shares_total\{shareholder="sh-2"\}/);
    } finally {
      forgeFor.delete('sh-2');
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
    const good = join(sockDir, 'image-shareholders.json');
    await writeFile(good, JSON.stringify([sh, { ...sh, id: 'sh-2', vsockPort: 8102 }]));
    expect(await run(good)).toEqual({ code: 0, stdout: 'sh-1 8101\nsh-2 8102\n' });
    const noPort = join(sockDir, 'image-shareholders-bad.json');
    await writeFile(noPort, JSON.stringify([{ id: 'sh-1', url: sh.url, publicKey: sh.publicKey }]));
    expect((await run(noPort)).code).toBe(1);
  });
});
