/**
 * The city database is read on the first lookup (host/geo.ts): through the real gateway, the
 * first city-locked request after start must be judged against the database — with
 * `--allow-unknown-location`, a lookup that answered "unknown" for want of a loaded database
 * would let it through.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminApi, startTestStack } from '../test/e2e/helpers.ts';

const BRACKNELL = '81.2.69.142';
const MINNEAPOLIS = '128.101.101.101';
const NOWHERE = '1.1.1.1';

let stack: Awaited<ReturnType<typeof startTestStack>>;
beforeAll(async () => {
  stack = await startTestStack({ hostArgs: ['--trusted-proxy', 'loopback', '--allow-unknown-location'] });
});
afterAll(async () => {
  await stack?.cleanup();
});

async function chat(key: string, ip: string): Promise<{ status: number; code?: string }> {
  const res = await fetch(`${stack.hostUrl}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', 'x-forwarded-for': ip },
    body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] }),
  });
  const body = (await res.json()) as { error?: { code?: string } };
  return { status: res.status, ...(body.error?.code ? { code: body.error.code } : {}) };
}

describe('city lock with the database read on first use', () => {
  it('refuses the first request after start from a city the key does not allow, even when unknown places are allowed', async () => {
    const admin = adminApi(stack);
    const locked = async () => {
      const r = await admin<{ key: string }>('POST', '/keys', { connectionId: stack.demo!.connectionId, cities: ['Bracknell, GB'] });
      expect(r.status).toBe(201);
      return r.json.key;
    };
    const key = await locked();
    // The first city lookup this host makes.
    expect(await chat(key, MINNEAPOLIS)).toEqual({ status: 403, code: 'city_not_allowed' });
    expect(await chat(key, BRACKNELL)).toEqual({ status: 200 });
    // Unknown places do pass here (the flag is in effect), so the refusal above came from the
    // database. (Another key: the first one is now bound to Bracknell's address.)
    expect(await chat(await locked(), NOWHERE)).toEqual({ status: 200 });
  });
});
