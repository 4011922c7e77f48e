/**
 * Terminal output helpers for the CLI: JSON when asked, colour only on a TTY (and never when
 * NO_COLOR is set), errors that say what to do next. Never prints secrets it was not asked to.
 */
export interface Io {
  out: (text: string) => void;
  err: (text: string) => void;
  isTty: boolean;
}

export const processIo: Io = {
  out: (t) => process.stdout.write(t),
  err: (t) => process.stderr.write(t),
  isTty: Boolean(process.stdout.isTTY) && !process.env.NO_COLOR,
};

export function paint(io: Io, code: number, text: string): string {
  return io.isTty ? `\u001b[${code}m${text}\u001b[0m` : text;
}

export const green = (io: Io, t: string) => paint(io, 32, t);
export const red = (io: Io, t: string) => paint(io, 31, t);
export const dim = (io: Io, t: string) => paint(io, 2, t);

export function printJson(io: Io, value: unknown): void {
  io.out(`${JSON.stringify(value, null, 2)}\n`);
}

/**
 * Dollars precise enough to read: cents for ordinary amounts, more digits where a small amount
 * would otherwise round away ($0.003 shows as $0.003, never $0.00).
 */
export function usd(n: number | null | undefined, none = '—'): string {
  if (n === null || n === undefined) return none;
  for (let digits = 2; digits < 6; digits++) if (Math.abs(Number(n.toFixed(digits)) - n) < 1e-9) return `$${n.toFixed(digits)}`;
  return `$${n.toFixed(6)}`;
}

/** "3 minutes ago", "yesterday", "never": how long ago `t` (epoch ms) was. */
export function ago(t: number | null | undefined, now = Date.now()): string {
  if (!t) return 'never';
  const s = Math.max(0, Math.round((now - t) / 1000));
  if (s < 45) return 'just now';
  const units: Array<[number, string]> = [[60, 'minute'], [3600, 'hour'], [86_400, 'day'], [2_592_000, 'month'], [31_536_000, 'year']];
  let [size, name] = units[0]!;
  for (const [u, label] of units) if (s >= u * 0.95) [size, name] = [u, label];
  const n = Math.max(1, Math.round(s / size));
  return `${n} ${name}${n === 1 ? '' : 's'} ago`;
}

/**
 * A yes/no question on the terminal (stdin and stderr both TTYs); default no. Returns null when
 * there is no terminal to ask on — the caller then needs an explicit flag (`--yes`, …).
 */
export async function confirmOnTty(question: string): Promise<boolean | null> {
  if (!process.stdin.isTTY || !process.stderr.isTTY) return null;
  const { createInterface } = await import('node:readline/promises');
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  try {
    return /^y(es)?$/i.test((await rl.question(`${question} [y/N] `)).trim());
  } finally {
    rl.close();
  }
}
