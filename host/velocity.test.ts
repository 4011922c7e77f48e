import { describe, expect, it } from 'vitest';
import { VelocityTracker } from './velocity.ts';

const T0 = 1_800_000_000_000;

describe('abuse detection', () => {
  it('tolerates a steady rate and suspends a spike over the floor and its own normal', () => {
    const v = new VelocityTracker({ floorPerMinute: 30, spikeFactor: 5 });
    // Ten quiet minutes at 10/min: normal.
    for (let m = 0; m < 10; m++) for (let i = 0; i < 10; i++) expect(v.record('k', '1.1.1.1', T0 + m * 60_000 + i * 1000)).toBeUndefined();
    let reason: string | undefined;
    for (let i = 0; i < 100 && !reason; i++) reason = v.record('k', '1.1.1.1', T0 + 10 * 60_000 + i * 100);
    expect(reason).toMatch(/rate/);
  });

  it('suspends a key used from many IPs or for many models within a minute', () => {
    const ips = new VelocityTracker({ maxDistinctIpsPerMinute: 5 });
    const reasons = Array.from({ length: 7 }, (_, i) => ips.record('k', `10.0.0.${i}`, T0 + i));
    expect(reasons.slice(0, 5).every((r) => r === undefined)).toBe(true);
    expect(reasons[6]).toMatch(/distinct client IPs/);
    const models = new VelocityTracker({ maxDistinctModelsPerMinute: 3 });
    const m = Array.from({ length: 5 }, (_, i) => models.record('k', '1.1.1.1', T0 + i, `model-${i}`));
    expect(m[4]).toMatch(/distinct models/);
  });

  it('suspends on token volume even at a modest request rate', () => {
    const v = new VelocityTracker({ tokenFloorPerMinute: 100_000, spikeFactor: 10 });
    let reason: string | undefined;
    for (let i = 0; i < 10 && !reason; i++) reason = v.record('k', '1.1.1.1', T0 + i * 1000, 'gpt-4o', 50_000);
    expect(reason).toMatch(/tokens\/min/);
  });

  it('forgets a key (after unsuspend or a lock change)', () => {
    const v = new VelocityTracker({ maxDistinctIpsPerMinute: 1 });
    v.record('k', '1.1.1.1', T0);
    v.forget('k');
    expect(v.record('k', '2.2.2.2', T0 + 1)).toBeUndefined();
  });
});
