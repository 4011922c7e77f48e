/**
 * The CLI's error registry: its exit codes (a contract with scripts that run `securegate`;
 * documented in cli/README.md) and the errors that carry one. `main` turns a CliError into its
 * message on stderr and its exit code; anything else is a bug and exits `unavailable`.
 */

import { CLI_EXIT, type CliExitCode } from '../protocol/index.ts';

/** Exit codes: the contract in protocol/cli-exit-codes.ts, documented in cli/README.md. */
export const EXIT = CLI_EXIT;
export type ExitCode = CliExitCode;

/** An error the CLI reports as its message and exits with `exitCode` (default `invalid`). */
export class CliError extends Error {
  readonly exitCode: number;
  constructor(message: string, exitCode: number = EXIT.invalid) {
    super(message);
    this.exitCode = exitCode;
  }
}

/** A refusal from the admin API: its stable code, the field it is about, and what to do next. */
export class AdminError extends CliError {
  readonly code: string;
  readonly status: number;
  readonly param: string | null;
  readonly unknown: string[];
  constructor(status: number, json: Record<string, unknown>) {
    const e = (json.error ?? {}) as { code?: string; message?: string; param?: string | null; unknown?: string[] };
    const code = e.code ?? `http_${status}`;
    super(`${e.message ?? `the server answered ${status}`}${NEXT_STEP[code] ? ` — ${NEXT_STEP[code]}` : ''}`, status >= 500 ? EXIT.unavailable : EXIT.invalid);
    this.code = code;
    this.status = status;
    this.param = e.param ?? null;
    this.unknown = e.unknown ?? [];
  }
}

/** What to do next, per admin error code (the server's message says what went wrong). */
const NEXT_STEP: Record<string, string> = {
  admin_unauthorized: 'run `securegate login` (a local dev stack from `npm start` logs you in automatically)',
  not_found: '`securegate keys list` shows your keys, `securegate status` your account',
  plan_feature: '`securegate account` shows what your plan includes',
  plan_limit: '`securegate account` shows your plan\'s limits',
  gateway_error: 'the server failed; try again, and if it persists check its log',
};
