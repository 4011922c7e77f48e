/**
 * The windows of budget periods and rate limits (host/spend-windows.ts): UTC weeks start on
 * Monday, months are calendar months, and each window says when it resets. Instants are written
 * out by hand from the calendar (2026-11-30 is a Monday; 2028 is a leap year).
 */
import { describe, expect, it } from 'vitest';
import { periodOf, resetLabel, secondsUntilReset, utcMinute, utcMonth, utcWeekStart, windowEnd, windowKind } from './spend-windows.ts';

const at = (iso: string) => Date.parse(iso);

describe('UTC budget windows', () => {
  it('starts the week on Monday 00:00 UTC, whatever day of the week it is', () => {
    expect(utcWeekStart(at('2026-11-30T00:00:00Z'))).toBe('2026-11-30'); // Monday
    expect(utcWeekStart(at('2026-12-02T04:25:00Z'))).toBe('2026-11-30'); // Wednesday
    expect(utcWeekStart(at('2026-12-06T23:59:59.999Z'))).toBe('2026-11-30'); // Sunday, last millisecond
    expect(utcWeekStart(at('2026-12-07T00:00:00Z'))).toBe('2026-12-07'); // next Monday
  });

  it('keeps a week that spans a month and a year boundary as one week', () => {
    expect(utcWeekStart(at('2027-01-01T12:00:00Z'))).toBe('2026-12-28'); // Friday; Monday was in December
    expect(periodOf.week('2027-01-03')).toBe('w:2026-12-28');
    expect(periodOf.week('2027-01-04')).toBe('w:2027-01-04');
  });

  it('ignores the local time zone: a late Sunday evening in New York is already Monday in UTC', () => {
    expect(utcWeekStart(at('2026-12-06T20:30:00-05:00'))).toBe('2026-12-07');
  });

  it('names calendar months and minutes in UTC', () => {
    expect(utcMonth(at('2026-12-31T23:59:59Z'))).toBe('2026-12');
    expect(utcMonth(at('2027-01-01T00:00:00Z'))).toBe('2027-01');
    expect(periodOf.month('2028-02-29')).toBe('m:2028-02');
    expect(utcMinute(at('2026-12-02T04:25:59.999Z'))).toBe('2026-12-02T04:25');
  });

  it('ends each window at the first instant of the next one', () => {
    expect(windowEnd('d:2026-12-02')).toBe(at('2026-12-03T00:00:00Z'));
    expect(windowEnd('w:2026-11-30')).toBe(at('2026-12-07T00:00:00Z'));
    expect(windowEnd('m:2026-12')).toBe(at('2027-01-01T00:00:00Z'));
    expect(windowEnd('m:2028-02')).toBe(at('2028-03-01T00:00:00Z'));
    expect(windowEnd('min:2026-12-02T04:25')).toBe(at('2026-12-02T04:26:00Z'));
    expect(windowEnd('life')).toBeNull();
  });

  it('tells a client how many whole seconds until a minute resets, never zero', () => {
    expect(secondsUntilReset('min:2026-12-02T04:25', at('2026-12-02T04:25:00Z'))).toBe(60);
    expect(secondsUntilReset('min:2026-12-02T04:25', at('2026-12-02T04:25:59.500Z'))).toBe(1);
    expect(secondsUntilReset('min:2026-12-02T04:25', at('2026-12-02T04:26:30Z'))).toBe(1);
    expect(secondsUntilReset('life', 0)).toBeUndefined();
  });

  it('labels resets for refusal messages and classifies periods', () => {
    expect(resetLabel('w:2026-11-30')).toBe('2026-12-07 00:00 UTC');
    expect(resetLabel('m:2026-12')).toBe('2027-01-01 00:00 UTC');
    expect(windowKind('min:2026-12-02T04:25')).toBe('minute');
    expect(windowKind('m:2026-12')).toBe('month');
    expect(() => windowKind('x:1')).toThrow();
  });

  it('agrees with a day-by-day walk for every day of three years', () => {
    let monday = '2025-12-29';
    for (let t = at('2026-01-01T00:00:00Z'); t < at('2029-01-01T00:00:00Z'); t += 86_400_000) {
      if (new Date(t).getUTCDay() === 1) monday = new Date(t).toISOString().slice(0, 10);
      expect(utcWeekStart(t + 43_200_000)).toBe(monday);
    }
  });
});
