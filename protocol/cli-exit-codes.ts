/**
 * The `securegate` CLI's exit codes: a contract with the scripts and CI jobs that run it
 * (documented in cli/README.md). Kept in protocol/ beside the other registries so a wrapper —
 * or a test — can import the numbers instead of copying them.
 */
export const CLI_EXIT = {
  ok: 0,
  /** Refused or invalid: the server said no, a document did not verify, a pin did not match. */
  invalid: 1,
  /** Wrong usage: a flag, argument or input the CLI itself rejects. */
  usage: 2,
  /** A server, shareholder or enclave could not be reached or failed (5xx). */
  unavailable: 3,
  /** A local file could not be read or written. */
  io: 4,
  /** The user cancelled at a prompt (128 + SIGINT, as shells report it). */
  cancelled: 130,
} as const;
export type CliExitCode = (typeof CLI_EXIT)[keyof typeof CLI_EXIT];
