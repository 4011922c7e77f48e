/**
 * The database goes away under a running host on PostgreSQL (issue 17): requests that cannot be
 * metered are refused with a retryable 503 `database_unavailable` — never forwarded, never a bare
 * 5xx — and each refusal still gets its audit row once the database is back.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cuttablePostgres, dropSchema, skipPostgres, uniqueSchema } from '../pg.ts';
import { eventually, startTestStack } from './helpers.ts';

describe.skipIf(skipPostgres)('a PostgreSQL outage under a running host', () => {
  let stack: Awaited<ReturnType<typeof startTestStack>>;
  let relay: Awaited<ReturnType<typeof cuttablePostgres>>;
  const schema = uniqueSchema('sg_outage');

  beforeAll(async () => {
    relay = await cuttablePostgres();
    stack = await startTestStack({ hostArgs: ['--database', relay.url, '--db-schema', schema] });
  }, 120_000);
  afterAll(async () => {
    relay?.restore();
    await stack?.cleanup();
    await relay?.close();
    await dropSchema(schema);
  });

  async function admin<T>(method: string, path: string, body?: unknown): Promise<T> {
    const res = await fetch(`${stack.hostUrl}/admin/v1${path}`, {
      method,
      headers: { authorization: `Bearer ${stack.adminToken}`, ...(body ? { 'content-type': 'application/json' } : {}) },
      ...(body ? { body: JSON.stringify(body) } : {}),
    });
    return (await res.json()) as T;
  }

  it('refuses what it cannot meter with 503 database_unavailable and audits the refusal once the database is back', async () => {
    const { id, key } = await admin<{ id: string; key: string }>('POST', '/keys', { connectionId: stack.demo!.connectionId });
    const ask = () =>
      fetch(`${stack.hostUrl}/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] }),
      });
    expect((await ask()).status).toBe(200);
    const before = stack.mock!.requests.length;
    relay.cut();
    try {
      const res = await ask();
      await res.arrayBuffer();
      expect(res.status).toBe(503);
      expect(res.headers.get('x-sg-code')).toBe('database_unavailable');
      expect(res.headers.get('x-should-retry')).toBeNull();
      expect(stack.mock!.requests.length).toBe(before);
    } finally {
      relay.restore();
    }
    // The first request's IP binding dropped the key from the cache, so the refused request could
    // not even be attributed to its key: its row has no key id, and lands once the database is back.
    const rows = await eventually(async () => {
      const audit = await admin<{ items: Array<{ code: string | null; keyId: string | null }> }>('GET', '/audit?limit=1000');
      return audit.items.some((i) => i.code === 'database_unavailable') ? audit.items : undefined;
    }, 30_000);
    expect(rows.filter((i) => i.code === 'database_unavailable')).toHaveLength(1);
    expect(rows.filter((i) => i.keyId === id && i.code === null)).toHaveLength(1);
    expect((await ask()).status).toBe(200);
  }, 90_000);
});
