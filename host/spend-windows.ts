/**
 * The windows spend and rate counters are kept in, as plain functions of a UTC instant: the day
 * (`d:2026-12-02`), the week that starts on Monday (`w:2026-11-30`), the calendar month
 * (`m:2026-12`) and the minute (`min:2026-12-02T04:25`), and when each one ends. Every instance
 * computes the same period from the same instant, so counters written by two hosts on one
 * database land in the same row. All in UTC: no local time zone, no daylight saving.
 */

const DAY_MS = 86_400_000;

/** `YYYY-MM-DD` of the UTC day. */
export function utcDay(now: number): string {
  return new Date(now).toISOString().slice(0, 10);
}

/** Midnight UTC of the Monday that starts the week `now` is in, as `YYYY-MM-DD`. */
export function utcWeekStart(now: number): string {
  const midnight = Math.floor(now / DAY_MS) * DAY_MS;
  // getUTCDay: 0 = Sunday … 6 = Saturday; days since Monday is (day + 6) % 7.
  const sinceMonday = (new Date(midnight).getUTCDay() + 6) % 7;
  return utcDay(midnight - sinceMonday * DAY_MS);
}

/** `YYYY-MM` of the UTC calendar month. */
export function utcMonth(now: number): string {
  return new Date(now).toISOString().slice(0, 7);
}

/** `YYYY-MM-DDTHH:MM` of the UTC minute. */
export function utcMinute(now: number): string {
  return new Date(now).toISOString().slice(0, 16);
}

/** Counter period names. A reservation's day decides its week and month, so settlement finds the same rows. */
export const periodOf = {
  day: (day: string) => `d:${day}`,
  week: (day: string) => `w:${utcWeekStart(Date.parse(`${day}T00:00:00Z`))}`,
  month: (day: string) => `m:${day.slice(0, 7)}`,
  minute: (minute: string) => `min:${minute}`,
} as const;

export type WindowKind = 'day' | 'week' | 'month' | 'minute' | 'life';

/** Which kind of window a counter period is. */
export function windowKind(period: string): WindowKind {
  if (period === 'life') return 'life';
  if (period.startsWith('min:')) return 'minute';
  if (period.startsWith('d:')) return 'day';
  if (period.startsWith('w:')) return 'week';
  if (period.startsWith('m:')) return 'month';
  throw new Error(`unknown counter period ${period}`);
}

/** When the window of a counter period ends (the instant its counter starts again at zero); null for `life`. */
export function windowEnd(period: string): number | null {
  const kind = windowKind(period);
  const value = period.slice(period.indexOf(':') + 1);
  switch (kind) {
    case 'life':
      return null;
    case 'minute':
      return Date.parse(`${value}:00Z`) + 60_000;
    case 'day':
      return Date.parse(`${value}T00:00:00Z`) + DAY_MS;
    case 'week':
      return Date.parse(`${value}T00:00:00Z`) + 7 * DAY_MS;
    case 'month': {
      const [y, m] = value.split('-').map(Number) as [number, number];
      return Date.UTC(y, m, 1); // month index m is the next month (Date.UTC rolls December over)
    }
  }
}

/** Whole seconds from `now` until the window ends (at least 1), for `retry-after`. */
export function secondsUntilReset(period: string, now: number): number | undefined {
  const end = windowEnd(period);
  return end === null ? undefined : Math.max(1, Math.ceil((end - now) / 1000));
}

/** "2026-12-07 00:00 UTC": when a window ends, as a refusal message says it. */
export function resetLabel(period: string): string | null {
  const end = windowEnd(period);
  return end === null ? null : `${new Date(end).toISOString().slice(0, 16).replace('T', ' ')} UTC`;
}
