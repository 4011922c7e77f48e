import { describe, expect, it } from 'vitest';
import { OutstandingNonces, ReleaseBudget, TokenBuckets } from './limits.ts';

describe('token buckets', () => {
  it('allows a burst, then the sustained rate, per key', () => {
    const b = new TokenBuckets({ perMinute: 60, burst: 3 });
    expect([1, 2, 3, 4].map(() => b.take('a', 0))).toEqual([true, true, true, false]);
    expect(b.take('b', 0)).toBe(true); // another caller is not affected
    expect(b.take('a', 999)).toBe(false);
    expect(b.take('a', 1000)).toBe(true); // one token a second
  });

  it('forgets the least recently seen callers beyond its bound, with a full (never larger) bucket', () => {
    const b = new TokenBuckets({ perMinute: 1, burst: 1 }, 2);
    expect(b.take('a', 0)).toBe(true);
    b.take('b', 0);
    b.take('c', 0);
    expect(b.take('a', 0)).toBe(true);
    expect(b.take('a', 0)).toBe(false);
  });
});

describe('outstanding nonces', () => {
  it('counts unused, unexpired nonces per caller and in total', () => {
    const o = new OutstandingNonces();
    o.add('n1', 'a', 100);
    o.add('n2', 'a', 200);
    o.add('n3', 'b', 300);
    expect(o.counts('a', 0)).toEqual({ source: 2, total: 3 });
    o.settle('n2');
    expect(o.counts('a', 0)).toEqual({ source: 1, total: 2 });
    expect(o.counts('a', 150)).toEqual({ source: 0, total: 1 });
  });
});

describe('release budget', () => {
  it('counts distinct enclave keys per connection, so repeats to one enclave cost once', () => {
    const r = new ReleaseBudget(60_000);
    for (let i = 0; i < 50; i++) expect(r.admit('c', 'victim-key', 2, i)).toBe(true);
    expect(r.admit('c', 'second-enclave', 2, 100)).toBe(true);
    expect(r.admit('c', 'third-enclave', 2, 100)).toBe(false);
    expect(r.admit('other-connection', 'third-enclave', 2, 100)).toBe(true);
    expect(r.admit('c', 'third-enclave', 2, 60_001)).toBe(true);
  });
});
