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

/** Dollars precise enough to read, and "3 minutes ago": the same in the CLI and the dashboard. */
export { formatUsd as usd, timeAgo as ago } from '../protocol/display.ts';

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
