/**
 * docs/architecture.md §8.1: the plaintext upstream key never appears on the host — not in its memory
 * (V8 heap snapshot after traffic), its database files, or its logs — and an upstream error
 * that echoes the key reaches the client scrubbed.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import OpenAI from 'openai';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startHostInstance, type ManagedProcess } from '../../scripts/stack.ts';
import { dropSchema, skipPostgres, TEST_DATABASE_URL, uniqueSchema } from '../pg.ts';
import { enrollConnection, eventually, startTestStack, type ManualConnection } from './helpers.ts';

/** Every encoding a secret could take in a heap, a file or a log: raw bytes, hex, base64(url). */
function forms(secret: Uint8Array | string): Buffer[] {
  const raw = Buffer.from(secret);
  return [raw, Buffer.from(raw.toString('hex')), Buffer.from(raw.toString('base64').replace(/=+$/, '')), Buffer.from(raw.toString('base64url'))];
}

function leaks(haystack: Buffer, secrets: Array<Uint8Array | string>): boolean {
  return secrets.some((s) => forms(s).some((f) => haystack.includes(f)));
}

/** Asks a host (by pid) for a heap snapshot and returns it once written. */
async function heapSnapshot(child: ManagedProcess['child'], dir: string): Promise<Buffer> {
  child.kill('SIGUSR2');
  return eventually(async () => {
    const file = readdirSync(dir).find((f) => f.endsWith('.heapsnapshot') && f.includes(`.${child.pid}.`));
    if (!file) return undefined;
    const bytes = readFileSync(join(dir, file));
    return bytes.toString('utf8').trimEnd().endsWith('}') ? bytes : undefined;
  }, 30_000);
}

async function traffic(url: string, key: string): Promise<void> {
  const client = new OpenAI({ apiKey: key, baseURL: `${url}/v1`, maxRetries: 0 });
  for (let i = 0; i < 3; i++) {
    await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] });
    const stream = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }], stream: true });
    for await (const _ of stream) void _;
  }
}

describe.skipIf(skipPostgres)('two host instances on PostgreSQL hold no upstream key, data key or share', () => {
  const schema = uniqueSchema('sg_secrets');
  const db = ['--database', TEST_DATABASE_URL, '--db-schema', schema];
  let stack: Awaited<ReturnType<typeof startTestStack>>;
  let second: ManagedProcess & { url: string };
  let conn: ManualConnection;

  beforeAll(async () => {
    stack = await startTestStack({ hostArgs: db, hostNodeArgs: ['--heapsnapshot-signal=SIGUSR2'] });
    second = await startHostInstance(stack, db, 'host-2', ['--heapsnapshot-signal=SIGUSR2']);
    conn = await enrollConnection(stack, { upstreamKey: stack.demo!.upstreamKey });
  });
  afterAll(async () => {
    await second?.stop();
    await stack?.cleanup();
    await dropSchema(schema);
  });

  it('after traffic through both: not in either heap, the database or any host log', async () => {
    await traffic(stack.hostUrl, conn.key);
    await traffic(second.url, conn.key);
    await traffic(second.url, stack.demo!.key);
    const secrets: Array<Uint8Array | string> = [stack.demo!.upstreamKey, conn.secrets.dek, ...conn.secrets.shares];
    const hostDir = join(stack.dataDir, 'host');
    for (const child of [stack.host.child, second.child]) {
      const heap = await heapSnapshot(child, hostDir);
      expect(heap.length).toBeGreaterThan(100_000);
      expect(heap.includes(conn.connectionId), 'sanity: the snapshot holds what the host handled').toBe(true);
      expect(leaks(heap, secrets), `heap of pid ${child.pid}`).toBe(false);
    }
    // Every row of every table in the hosts' schema, as text.
    const client = new pg.Client({ connectionString: TEST_DATABASE_URL });
    await client.connect();
    try {
      const tables = await client.query<{ table_name: string }>('SELECT table_name FROM information_schema.tables WHERE table_schema = $1', [schema]);
      expect(tables.rows.length).toBeGreaterThan(10);
      let dump = '';
      for (const { table_name } of tables.rows) dump += JSON.stringify((await client.query(`SELECT * FROM "${schema}"."${table_name}"`)).rows);
      expect(dump).toContain(conn.connectionId);
      // Positive control: the scanner does find bytes the host stores encoded (the sealed record).
      expect(leaks(Buffer.from(dump), [new Uint8Array(Buffer.from(conn.sealedRecord, 'base64'))])).toBe(true);
      expect(leaks(Buffer.from(dump), secrets)).toBe(false);
    } finally {
      await client.end();
    }
    for (const file of readdirSync(join(stack.dataDir, 'logs')).filter((f) => f.startsWith('host'))) {
      const log = readFileSync(join(stack.dataDir, 'logs', file));
      expect(log.length, file).toBeGreaterThan(0);
      expect(leaks(log, [...secrets, conn.key, stack.demo!.key]), file).toBe(false);
    }
  });
});

describe('the host never holds the upstream key', () => {
  let stack: Awaited<ReturnType<typeof startTestStack>>;
  beforeAll(async () => {
    stack = await startTestStack({ hostNodeArgs: ['--heapsnapshot-signal=SIGUSR2'] });
  });
  afterAll(async () => {
    await stack?.cleanup();
  });

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

  it('logs one access line per request, without the query string (it can carry a credential)', async () => {
    const queryKey = `querysecret${Date.now()}`;
    const res = await fetch(`${stack.hostUrl}/v1/models?key=${queryKey}`, { headers: { authorization: `Bearer ${stack.demo!.key}` } });
    expect(res.status).toBe(200);
    const refused = await fetch(`${stack.hostUrl}/v1/models?key=${queryKey}`, { headers: { authorization: 'Bearer SG_not_a_key' } });
    expect(refused.status).toBe(401);
    const lines = await eventually(async () => {
      const found = readFileSync(join(stack.dataDir, 'logs', 'host.log'), 'utf8').split('\n').filter((l) => l.includes('"path":"/v1/models"'));
      return found.length >= 2 ? found.map((l) => JSON.parse(l) as Record<string, unknown>) : undefined;
    }, 5_000);
    expect(readFileSync(join(stack.dataDir, 'logs', 'host.log'), 'utf8')).not.toContain(queryKey);
    expect(lines.map((l) => [l.msg, l.method, l.status, l.code ?? null])).toEqual([
      ['request', 'GET', 200, null],
      ['request', 'GET', 401, 'invalid_api_key'],
    ]);
    for (const l of lines) expect(typeof l.ms).toBe('number');
    // One line per request: no request id appears twice.
    const ids = readFileSync(join(stack.dataDir, 'logs', 'host.log'), 'utf8').split('\n').filter((l) => l.includes('"msg":"request"')).map((l) => (JSON.parse(l) as { reqId: string }).reqId);
    expect(new Set(ids).size).toBe(ids.length);
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
