import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Pool } from 'undici';
import { startStack } from './scripts/stack.ts';
import { encodeConnectionDescriptor, RPC_CONNECTION_HEADER } from './protocol/index.ts';
import { enrollConnection } from './test/e2e/helpers.ts';
const stack = await startStack({ dataDir: await mkdtemp(join(tmpdir(), 'sg-split-')), hostPort: 0, mock: true, hostArgs: ['--velocity-floor', '100000000'] });
try {
const conn = await enrollConnection(stack, { upstreamKey: stack.demo!.upstreamKey });
const mk = (stream: boolean, usage: boolean) => JSON.stringify({ model: 'gpt-4o-mini', stream, ...(usage ? { stream_options: { include_usage: true } } : {}), messages: [{ role: 'user', content: 'Say hello' }] });
const direct = new Pool(stack.mock!.origin, { connections: 4 });
const host = new Pool(stack.hostUrl, { connections: 4 });
const enclave = new Pool('http://enclave.local', { connect: { socketPath: stack.enclaveSocket }, connections: 4 });
const desc = encodeConnectionDescriptor({ connectionId: conn.connectionId, provider: 'openai', origin: stack.mock!.origin, authScheme: 'bearer', sealedRecord: conn.sealedRecord, threshold: stack.threshold });
const ttfb = async (p: Pool, path: string, headers: Record<string, string>, body: string) => { const t0 = performance.now(); const r = await p.request({ path, method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body }); let first = 0; for await (const _ of r.body) { if (!first) first = performance.now() - t0; } return first; };
const kinds: Record<string, () => Promise<number>> = {
  direct: () => ttfb(direct, '/v1/chat/completions', { authorization: `Bearer ${stack.demo!.upstreamKey}` }, mk(true, true)),
  enclave: () => ttfb(enclave, '/forward/v1/chat/completions', { [RPC_CONNECTION_HEADER]: desc }, mk(true, true)),
  hostUsage: () => ttfb(host, '/v1/chat/completions', { authorization: `Bearer ${conn.key}` }, mk(true, true)),
  hostInject: () => ttfb(host, '/v1/chat/completions', { authorization: `Bearer ${conn.key}` }, mk(true, false)),
};
for (const f of Object.values(kinds)) for (let i = 0; i < 200; i++) await f();
const lat: Record<string, number[]> = Object.fromEntries(Object.keys(kinds).map((k) => [k, []]));
for (let round = 0; round < 6; round++) for (const [k, f] of Object.entries(kinds)) for (let i = 0; i < 150; i++) lat[k]!.push(await f());
const p = (a: number[], q: number) => [...a].sort((x, y) => x - y)[Math.floor(a.length * q)]!;
for (const [k, a] of Object.entries(lat)) console.log(k, 'ttfb p50', p(a, 0.5).toFixed(3));
} finally { await stack.stop(); }
process.exit(0);
