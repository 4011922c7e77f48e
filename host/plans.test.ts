import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { DEFAULT_PLANS, PlanBook } from './plans.ts';

describe('plans (operator configuration)', () => {
  it('defaults mirror the product documents', () => {
    const book = new PlanBook();
    expect(book.get('free')).toMatchObject({ name: 'Free', limits: { connections: 2 }, features: ['ip_lock'] });
    expect(book.get('pro').features).toEqual(['ip_lock', 'city_lock', 'device_lock']);
    expect(book.get('enterprise').features).toContain('any_api');
    expect(DEFAULT_PLANS.signupPlan).toBe('free');
  });

  it('loads an operator-defined plan from a file and enforces it', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'sg-plans-'));
    try {
      const file = join(dir, 'plans.json');
      await writeFile(file, JSON.stringify({
        signupPlan: 'team',
        plans: [
          { id: 'team', name: 'Team', limits: { connections: 5, keys: 3 }, features: ['ip_lock', 'device_lock'] },
          { id: 'scale', name: 'Scale', limits: { connections: null }, features: ['ip_lock', 'device_lock', 'city_lock'] },
        ],
      }));
      const book = PlanBook.fromFile(file);
      expect(() => book.requireRoom('team', 'keys', 2)).not.toThrow();
      expect(() => book.requireRoom('team', 'keys', 3)).toThrow(expect.objectContaining({ code: 'plan_limit', message: 'the Team plan allows at most 3 keys; this account has 3. Upgrade to Scale for more' }));
      expect(() => book.requireFeature('team', 'device_lock')).not.toThrow();
      expect(() => book.requireFeature('team', 'city_lock')).toThrow(expect.objectContaining({ code: 'plan_feature', message: 'the Team plan does not include city locks; the Scale plan does' }));
      expect(() => book.requireFeature('team', 'any_api')).toThrow(expect.objectContaining({ message: 'the Team plan does not include any-API connections' }));
      expect(() => book.requireRoom('scale', 'connections', 10_000)).not.toThrow();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('refuses a configuration it cannot enforce, saying why', () => {
    const bad = (plans: unknown, signupPlan = 'a') => () => new PlanBook({ signupPlan, plans } as never);
    expect(bad([])).toThrow(/expected/);
    expect(bad([{ id: 'a', name: 'A', limits: {}, features: ['teleport'] }])).toThrow(/unknown feature "teleport"/);
    expect(bad([{ id: 'a', name: 'A', limits: { seats: 3 }, features: [] }])).toThrow(/unknown limit "seats"/);
    expect(bad([{ id: 'a', name: 'A', limits: { keys: -1 }, features: [] }])).toThrow(/non-negative integer/);
    expect(bad([{ id: 'a', name: 'A', limits: {}, features: [] }, { id: 'a', name: 'B', limits: {}, features: [] }])).toThrow(/twice/);
    expect(bad([{ id: 'a', name: 'A', limits: {}, features: [] }], 'zzz')).toThrow(/signupPlan/);
    expect(() => new PlanBook().get('gold')).toThrow(expect.objectContaining({ code: 'plan_feature' }));
  });
});
