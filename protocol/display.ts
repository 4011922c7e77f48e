/**
 * How amounts and times read in the CLI and the dashboard, written once for both. Pure.
 */

/**
 * Dollars precise enough to read: cents for ordinary amounts, more digits where a small amount
 * would otherwise round away ($0.003 shows as $0.003, never $0.00).
 */
export function formatUsd(n: number | null | undefined, none = '—'): string {
  if (n === null || n === undefined) return none;
  for (let digits = 2; digits < 6; digits++) if (Math.abs(Number(n.toFixed(digits)) - n) < 1e-9) return `$${n.toFixed(digits)}`;
  return `$${n.toFixed(6)}`;
}

/** "3 minutes ago", "yesterday", "never": how long ago `t` (epoch ms) was. */
export function timeAgo(t: number | null | undefined, now = Date.now()): string {
  if (!t) return 'never';
  const s = Math.max(0, Math.round((now - t) / 1000));
  if (s < 45) return 'just now';
  const units: Array<[number, string]> = [[60, 'minute'], [3600, 'hour'], [86_400, 'day'], [2_592_000, 'month'], [31_536_000, 'year']];
  let [size, name] = units[0]!;
  for (const [u, label] of units) if (s >= u * 0.95) [size, name] = [u, label];
  const n = Math.max(1, Math.round(s / size));
  return `${n} ${name}${n === 1 ? '' : 's'} ago`;
}
