/**
 * Per-key limits across two host instances sharing one PostgreSQL (docs/architecture.md §8.5):
 * bursts sent to both hosts at once never let a key exceed its requests-per-minute,
 * tokens-per-minute or weekly cap together, and a limit changed through one host holds on the
 * other. Counters are read straight from the database as well as through the admin API.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startHostInstance, type ManagedProcess } from '../../scripts/stack.ts';
import { dropSchema, skipPostgres, TEST_DATABASE_URL, uniqueSchema } from '../pg.ts';
import { adminApi, eventually, startTestStack } from './helpers.ts';

describe.skipIf(skipPostgres)('key limits across two host instances on one PostgreSQL', () => {
  const schema = uniqueSchema('sg_periods_pg');
  let stack: Awaited<ReturnType<typeof startTestStack>>;
  let second: ManagedProcess & { url: string };
  let admin: ReturnType<typeof adminApi>;
  let sql: pg.Client;

  beforeAll(async () => {
    const db = ['--database', TEST_DATABASE_URL, '--db-schema', schema, '--velocity-floor', '100000000'];
    stack = await startTestStack({ hostArgs: db });
    second = await startHostInstance(stack, db);
    admin = adminApi(stack);
    sql = new pg.Client({ connectionString: TEST_DATABASE_URL });
    await sql.connect();
  });
  afterAll(async () => {
    await sql?.end();
    await second?.stop();
    await stack?.cleanup();
    await dropSchema(schema);
  });

  const newKey = async (options: Record<string, unknown>) => {
    const r = await admin<{ id: string; key: string }>('POST', '/keys', { connectionId: stack.demo!.connectionId, ...options });
    expect(r.status).toBe(201);
    return r.json;
  };
  const chat = async (base: string, key: string, maxTokens = 10) => {
    const res = await fetch(`${base}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'gpt-4o', max_tokens: maxTokens, messages: [{ role: 'user', content: 'hi' }] }),
    });
    const body = (await res.json()) as { error?: { code: string } };
    return { status: res.status, code: body.error?.code };
  };
  /** Half the burst to each host, all at once. */
  const burst = (key: string, n: number, maxTokens = 10) => Promise.all(Array.from({ length: n }, (_, i) => chat(i % 2 ? second.url : stack.hostUrl, key, maxTokens)));
  const roomInMinute = async (seconds: number) => {
    const left = 60 - new Date().getUTCSeconds();
    if (left < seconds) await new Promise((r) => setTimeout(r, left * 1000 + 200));
  };
  const counters = async (scope: string, keyId: string, prefix: string) =>
    (await sql.query(`SELECT period, spent, reserved FROM "${schema}".spend_counters WHERE scope = $1 AND scope_id = $2 AND period LIKE $3`, [scope, keyId, `${prefix}%`])).rows.map(
      (r: { period: string; spent: string; reserved: string }) => ({ period: r.period, spent: Number(r.spent), reserved: Number(r.reserved) }),
    );

  it('lets a burst split over both hosts through a requests-per-minute limit exactly that many times', async () => {
    const k = await newKey({ rpm: 6 });
    await roomInMinute(25);
    const results = await burst(k.key, 30);
    expect(results.filter((r) => r.status === 200)).toHaveLength(6);
    expect(new Set(results.filter((r) => r.status !== 200).map((r) => r.code))).toEqual(new Set(['rate_limit_exceeded']));
    const minute = await eventually(async () => {
      const rows = await counters('keyreq', k.id, 'min:');
      return rows.length === 1 && rows[0]!.reserved === 0 ? rows[0] : undefined;
    });
    expect(minute.spent).toBe(6);
  });

  it('never holds more tokens in a minute than the tokens-per-minute limit, with both hosts reserving at once', async () => {
    const k = await newKey({ tpm: 2000 });
    await roomInMinute(25);
    const results = await burst(k.key, 24);
    const served = results.filter((r) => r.status === 200).length;
    expect(served).toBeGreaterThan(0);
    expect(served).toBeLessThan(24);
    const rows = await eventually(async () => {
      const r = await counters('keytok', k.id, 'min:');
      return r.length === 1 && r[0]!.reserved === 0 ? r : undefined;
    });
    expect(rows[0]!.spent).toBeLessThanOrEqual(2000);
  });

  it('keeps two hosts together under a weekly cap: settled spend never passes it', async () => {
    const k = await newKey({ weeklyLimit: 0.05 });
    const results = await burst(k.key, 24, 1000);
    expect(results.some((r) => r.status === 200)).toBe(true);
    expect(results.filter((r) => r.status !== 200).every((r) => r.code === 'budget_exceeded' || r.code === 'budget_busy')).toBe(true);
    const week = await eventually(async () => {
      const rows = await counters('key', k.id, 'w:');
      return rows.length === 1 && rows[0]!.reserved === 0 ? rows[0] : undefined;
    });
    expect(week.spent).toBeGreaterThan(0);
    expect(week.spent).toBeLessThanOrEqual(50_000);
    const shown = await admin<{ spentWeek: number; spentMonth: number | null }>('GET', `/keys/${k.id}`);
    expect(shown.json.spentWeek).toBe(week.spent / 1e6);
    // No monthly cap: no month counter is kept, and the API says so rather than showing a stale 0.
    expect(shown.json.spentMonth).toBeNull();
  });

  it('applies a limit set through one host on the other, and keeps the other limits when one is cleared', async () => {
    const k = await newKey({ rpm: 100, tpm: 1_000_000 });
    expect((await chat(second.url, k.key)).status).toBe(200);
    await admin('PATCH', `/keys/${k.id}`, { expiresAt: new Date(Date.now() + 60_000).toISOString(), tpm: null });
    const patched = await admin<Record<string, unknown>>('GET', `/keys/${k.id}`);
    expect(patched.json).toMatchObject({ rpm: 100, tpm: null });
    await admin('PATCH', `/keys/${k.id}`, { rpm: 1 });
    await roomInMinute(10);
    // The new limit reaches the second host's key cache (LISTEN/NOTIFY): a request there is refused within a second or so.
    await eventually(async () => ((await chat(second.url, k.key)).code === 'rate_limit_exceeded' ? true : undefined), 5_000);
  });
});
