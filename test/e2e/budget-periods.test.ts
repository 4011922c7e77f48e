/**
 * Budget periods and per-key limits through the real gateway (embedded engine, one instance):
 * weekly and monthly caps, an absolute expiry date, requests and tokens per minute — set and
 * cleared through the admin API, enforced on real requests read as a client reads them. The mock
 * upstream produces exactly max_tokens completion tokens of gpt-4o.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminApi, eventually, startTestStack } from './helpers.ts';

let stack: Awaited<ReturnType<typeof startTestStack>>;
let admin: ReturnType<typeof adminApi>;

beforeAll(async () => {
  stack = await startTestStack();
  admin = adminApi(stack);
});
afterAll(async () => {
  await stack?.cleanup();
});

type KeyView = Record<string, unknown> & { id: string; key: string };
const newKey = async (options: Record<string, unknown>) => {
  const r = await admin<KeyView>('POST', '/keys', { connectionId: stack.demo!.connectionId, ...options });
  expect(r.status, JSON.stringify(r.json)).toBe(201);
  return r.json;
};

/** A raw request, so a test reads the status, headers and error body exactly as a client gets them. */
async function chat(key: string, maxTokens = 10): Promise<{ status: number; headers: Headers; body: { error?: { code: string; message: string; type: string } } }> {
  const res = await fetch(`${stack.hostUrl}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'gpt-4o', max_tokens: maxTokens, messages: [{ role: 'user', content: 'hi' }] }),
  });
  return { status: res.status, headers: res.headers, body: (await res.json()) as never };
}

/** Waits, if needed, until the current UTC minute has at least `seconds` left, so a burst stays inside one minute. */
async function roomInMinute(seconds: number): Promise<void> {
  const left = 60 - new Date().getUTCSeconds();
  if (left < seconds) await new Promise((r) => setTimeout(r, left * 1000 + 200));
}

describe('key limits in the admin API', () => {
  it('creates a key with weekly and monthly caps, an expiry date and rate limits, and shows them', async () => {
    const k = await newKey({ weeklyLimit: 20, monthlyLimit: 50, expiresAt: '2099-01-31', rpm: 60, tpm: 100000 });
    expect(k).toMatchObject({ weeklyLimit: 20, monthlyLimit: 50, expiresAt: Date.parse('2099-01-31T00:00:00Z'), rpm: 60, tpm: 100000 });
    const shown = await admin('GET', `/keys/${k.id}`);
    expect(shown.json).toMatchObject({ weeklyLimit: 20, monthlyLimit: 50, rpm: 60, tpm: 100000, spentWeek: 0, spentMonth: 0 });
  });

  it('clears one limit without dropping the others', async () => {
    const k = await newKey({ dailyLimit: 5, weeklyLimit: 20, monthlyLimit: 50, expiresAt: '2099-01-31T12:00:00Z', rpm: 60, tpm: 100000 });
    const cleared = await admin('PATCH', `/keys/${k.id}`, { rpm: null });
    expect(cleared.status).toBe(200);
    expect(cleared.json).toMatchObject({ rpm: null, tpm: 100000, dailyLimit: 5, weeklyLimit: 20, monthlyLimit: 50, expiresAt: Date.parse('2099-01-31T12:00:00Z') });
    const noExpiry = await admin('PATCH', `/keys/${k.id}`, { expiresAt: 'off', weeklyLimit: null });
    expect(noExpiry.json).toMatchObject({ expiresAt: null, weeklyLimit: null, monthlyLimit: 50, tpm: 100000, dailyLimit: 5 });
  });

  it.each([
    [{ expiresAt: 'next tuesday' }, 'expiresAt'],
    [{ expiresAt: '2027-02-30' }, 'expiresAt'],
    [{ expiresAt: '2020-01-01' }, 'expiresAt'],
    [{ expiresAt: '2099-01-31T12:00:00' }, 'expiresAt'], // no zone: refused, never read as local time
    [{ rpm: 0 }, 'rpm'],
    [{ rpm: 2.5 }, 'rpm'],
    [{ tpm: 'lots' }, 'tpm'],
    [{ weeklyLimit: -1 }, 'weeklyLimit'],
    [{ monthlyLimit: '5' }, 'monthlyLimit'],
  ])('refuses %j with a 400 naming the field, and saves nothing', async (body, param) => {
    const k = await newKey({ rpm: 7 });
    const r = await admin<{ error: { code: string; param: string; type: string } }>('PATCH', `/keys/${k.id}`, body);
    expect(r.status).toBe(400);
    expect(r.json.error).toMatchObject({ code: 'invalid_request', param, type: 'invalid_request_error' });
    expect((await admin('GET', `/keys/${k.id}`)).json).toMatchObject({ rpm: 7, expiresAt: null, weeklyLimit: null });
  });
});

describe('limits on real requests', () => {
  it('lets exactly rpm requests of a parallel burst through, refusing the rest 429 with retry-after until the minute turns', async () => {
    const k = await newKey({ rpm: 5 });
    await roomInMinute(20);
    const results = await Promise.all(Array.from({ length: 20 }, () => chat(k.key)));
    expect(results.filter((r) => r.status === 200)).toHaveLength(5);
    const refused = results.filter((r) => r.status !== 200);
    expect(refused).toHaveLength(15);
    for (const r of refused) {
      expect(r.status).toBe(429);
      expect(r.body.error?.code).toBe('rate_limit_exceeded');
      expect(r.body.error?.message).toMatch(/5 requests per minute.*resets at \d{4}-\d{2}-\d{2} \d{2}:\d{2} UTC/);
      const retryAfter = Number(r.headers.get('retry-after'));
      expect(retryAfter).toBeGreaterThanOrEqual(1);
      expect(retryAfter).toBeLessThanOrEqual(60);
      expect(r.headers.get('x-should-retry')).not.toBe('false');
    }
  });

  it('holds each running request\'s token bound against tokens per minute, settles it to the tokens used, and refuses a request that could never fit without retry', async () => {
    // gpt-4o, max_tokens 10: a bound of a few hundred tokens; 1500 per minute holds only a few at once.
    const k = await newKey({ tpm: 1500 });
    await roomInMinute(25);
    const burst = await Promise.all(Array.from({ length: 20 }, () => chat(k.key)));
    const served = burst.filter((r) => r.status === 200).length;
    const refusal = burst.find((r) => r.status !== 200);
    expect(served).toBeGreaterThan(0);
    expect(refusal?.status).toBe(429);
    expect(refusal?.body.error?.code).toBe('rate_limit_exceeded');
    expect(refusal?.body.error?.message).toMatch(/1500 tokens per minute/);
    expect(Number(refusal?.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    // Settled, the minute holds the tokens the answers used (a few dozen each), not their bounds:
    // the same minute has room again for requests one after another.
    for (let i = 0; i < 3; i++) {
      const again = await eventually(async () => {
        const r = await chat(k.key);
        return r.status === 200 ? r : undefined;
      }, 5_000);
      expect(again.status).toBe(200);
    }

    const huge = await chat(k.key, 5000);
    expect(huge.status).toBe(429);
    expect(huge.body.error?.code).toBe('request_over_rate_limit');
    expect(huge.body.error?.message).toMatch(/max_tokens/);
    expect(huge.headers.get('x-should-retry')).toBe('false');
  });

  it('refuses with budget_exceeded once the weekly cap is spent, saying it is weekly and when it resets', async () => {
    const k = await newKey({ weeklyLimit: 0.03 });
    let refusal: Awaited<ReturnType<typeof chat>> | undefined;
    for (let i = 0; i < 30 && !refusal; i++) {
      const r = await chat(k.key, 1000);
      if (r.status !== 200) refusal = r;
    }
    expect(refusal?.status).toBe(429);
    expect(refusal?.body.error?.code).toBe('budget_exceeded');
    expect(refusal?.body.error?.message).toMatch(/weekly \(UTC, from Monday\) spend cap of \$0\.03.*resets at \d{4}-\d{2}-\d{2} 00:00 UTC/);
    const monday = refusal!.body.error!.message.match(/resets at (\d{4}-\d{2}-\d{2})/)![1]!;
    expect(new Date(`${monday}T00:00:00Z`).getUTCDay()).toBe(1);
    const shown = await eventually(async () => {
      const s = (await admin<{ spentWeek: number }>('GET', `/keys/${k.id}`)).json;
      return s.spentWeek > 0 ? s : undefined;
    });
    expect(shown.spentWeek).toBeLessThanOrEqual(0.03);
  });

  it('counts the week\'s spend before the weekly cap was set: a cap below it refuses at once', async () => {
    const k = await newKey({});
    for (let i = 0; i < 3; i++) expect((await chat(k.key, 1000)).status).toBe(200);
    // All three settled (each costs just over 0.01): settlements land after the answers, so a
    // figure read after two of them would race the third.
    const before = await eventually(async () => {
      const s = (await admin<{ spentToday: number }>('GET', `/keys/${k.id}`)).json;
      return s.spentToday > 0.03 ? s : undefined;
    });
    const capped = await admin<{ spentWeek: number }>('PATCH', `/keys/${k.id}`, { weeklyLimit: 0.02 });
    expect(capped.status).toBe(200);
    expect((await admin<{ spentWeek: number }>('GET', `/keys/${k.id}`)).json.spentWeek).toBeCloseTo(before.spentToday, 6);
    const refused = await eventually(async () => {
      const r = await chat(k.key, 10);
      return r.status === 429 ? r : undefined;
    });
    expect(refused.body.error?.code).toBe('budget_exceeded');
    expect(refused.body.error?.message).toMatch(/weekly/);
  });

  it('refuses with budget_exceeded once the monthly cap is spent', async () => {
    const k = await newKey({ monthlyLimit: 0.02 });
    let refusal: Awaited<ReturnType<typeof chat>> | undefined;
    for (let i = 0; i < 30 && !refusal; i++) {
      const r = await chat(k.key, 1000);
      if (r.status !== 200) refusal = r;
    }
    expect(refusal?.body.error?.code).toBe('budget_exceeded');
    expect(refusal?.body.error?.message).toMatch(/monthly \(UTC\) spend cap.*resets at \d{4}-\d{2}-01 00:00 UTC/);
  });

  it('refuses a key past its expiry date with 401 key_expired, and serves it again once the date is moved', async () => {
    const expiresAt = new Date(Date.now() + 1500).toISOString();
    const k = await newKey({ expiresAt });
    expect((await chat(k.key)).status).toBe(200);
    const refused = await eventually(async () => {
      const r = await chat(k.key);
      return r.status === 401 ? r : undefined;
    });
    expect(refused.body.error).toMatchObject({ code: 'key_expired', type: 'authentication_error' });
    expect(refused.body.error?.message).toMatch(/expired on .*expiry date/);
    expect(refused.headers.get('x-should-retry')).toBe('false');
    // activate alone cannot bring back a key past its date; moving the date does.
    const activate = await admin<{ error: { message: string } }>('POST', `/keys/${k.id}/activate`);
    expect(activate.status).toBe(409);
    expect(activate.json.error.message).toMatch(/expires-at/);
    const moved = await admin('PATCH', `/keys/${k.id}`, { expiresAt: 'off' });
    expect(moved.json).toMatchObject({ status: 'active', expiresAt: null });
    expect((await eventually(async () => ((await chat(k.key)).status === 200 ? true : undefined))) as boolean).toBe(true);
  });
});
