import { describe, expect, it } from 'vitest';
import { formatUsd, timeAgo } from './display.ts';

describe('display', () => {
  it('shows dollars to the cent, with more digits where a small amount would round away', () => {
    expect(formatUsd(5)).toBe('$5.00');
    expect(formatUsd(0.003)).toBe('$0.003');
    expect(formatUsd(0.000001)).toBe('$0.000001');
    expect(formatUsd(null)).toBe('—');
  });

  it('says how long ago, in the largest unit that fits', () => {
    const now = 1_800_000_000_000;
    expect(timeAgo(null, now)).toBe('never');
    expect(timeAgo(now - 10_000, now)).toBe('just now');
    expect(timeAgo(now - 3 * 60_000, now)).toBe('3 minutes ago');
    expect(timeAgo(now - 86_400_000, now)).toBe('1 day ago');
  });
});
