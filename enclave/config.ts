/**
 * The enclave's start-up configuration: its command line, checked whole before anything starts,
 * so a mistake is one clear line (naming the flag) instead of a NaN timeout or a stack trace. An
 * unknown option prints the usage and exits 2; `--help` prints it and exits 0. Shared by the
 * production entry (main.ts) and the development entry (dev-main.ts), which adds its own flags.
 */
import { existsSync, readFileSync } from 'node:fs';
import { parseArgs, type ParseArgsOptionsConfig } from 'node:util';
import type { EgressRoute, ForwarderOptions } from './forward.ts';

export const USAGE = `usage: node enclave/main.ts --shareholders <file.json> [options]
  --listen unix:<path>|tcp:<host>:<port>   where the host reaches the RPC (default tcp:127.0.0.1:0)
  --shareholders <file.json>         [{ "id", "url", "publicKey" (X25519 identity key, hex), "vsockPort"? }, …]
  --shareholder-socket-dir <dir>     reach shareholder <id> through <dir>/shareholder-<id>.sock (production)
  --print-shareholder-bridges        print "<id> <vsockPort>" per shareholder and exit (for enclave-init.sh)
  --egress <origin>=unix:<path>|tcp:<host>:<port>   (repeatable) how each upstream is reached
  --egress-only                      refuse origins without an egress route (production)
  --ca-file <pem>                    CA bundle for upstream and https-shareholder TLS (default: Node's Mozilla roots)
  --connect-timeout <s>              upstream connect timeout, seconds (default 10)
  --headers-timeout <s>              upstream response headers timeout, seconds (default 120)
  --idle-timeout <s>                 upstream body idle timeout, seconds (default 300)
  -h, --help                         this text
`;

const OPTIONS = {
  listen: { type: 'string', default: 'tcp:127.0.0.1:0' },
  shareholders: { type: 'string' },
  egress: { type: 'string', multiple: true, default: [] },
  'egress-only': { type: 'boolean', default: false },
  'ca-file': { type: 'string' },
  'shareholder-socket-dir': { type: 'string' },
  'print-shareholder-bridges': { type: 'boolean', default: false },
  'connect-timeout': { type: 'string', default: '10' },
  'headers-timeout': { type: 'string', default: '120' },
  'idle-timeout': { type: 'string', default: '300' },
  help: { type: 'boolean', short: 'h', default: false },
} as const satisfies ParseArgsOptionsConfig;

/** Where the enclave RPC listens: the same two kinds of local stream as a route (`forward.ts`). */
export type ListenAddress = EgressRoute;

/** `unix:<path>` or `tcp:<host>:<port>` (port 0–65535); undefined for anything else. */
function parseStream(text: string): EgressRoute | undefined {
  if (text.startsWith('unix:') && text.length > 5) return { kind: 'unix', path: text.slice(5) };
  const m = /^tcp:([^:]+):(\d{1,5})$/.exec(text);
  return m && Number(m[2]) <= 65535 ? { kind: 'tcp', host: m[1]!, port: Number(m[2]) } : undefined;
}

export function parseListenAddress(text: string): ListenAddress {
  if (text.startsWith('vsock:')) throw new Error('--listen: vsock listening goes through the socat bridge in enclave-init.sh; listen on unix:<path> (infra/README.md)');
  const address = parseStream(text);
  if (!address) throw new Error(`--listen must be unix:<path> or tcp:<host>:<port> (port 0–65535), got ${text}`);
  return address;
}

/** `--egress <origin>=unix:<path>|tcp:<host>:<port>` entries as origin → route. */
export function parseEgress(entries: string[]): Map<string, EgressRoute> {
  const map = new Map<string, EgressRoute>();
  for (const entry of entries) {
    const eq = entry.indexOf('=');
    if (eq < 0) throw new Error(`--egress takes <origin>=unix:<path> or <origin>=tcp:<host>:<port>, got ${entry}`);
    // URL.parse gives null for no URL at all; `origin` is "null" for a URL without one (unix:…).
    const origin = URL.parse(entry.slice(0, eq))?.origin;
    if (origin === undefined || origin === 'null') throw new Error(`--egress: ${entry.slice(0, eq)} is not an origin (https://host[:port])`);
    const route = parseStream(entry.slice(eq + 1));
    if (!route) throw new Error(`--egress: bad target ${entry.slice(eq + 1)} for ${origin} (unix:<path> or tcp:<host>:<port>)`);
    map.set(origin, route);
  }
  return map;
}

/** Seconds given on the command line as milliseconds: a finite number > 0, or a start error naming the flag. */
function seconds(flag: string, text: string): number {
  const n = Number(text);
  if (text.trim() === '' || !Number.isFinite(n) || n <= 0) throw new Error(`--${flag} must be a number of seconds > 0, got ${text}`);
  return Math.round(n * 1000);
}

/** The shareholder file as JSON (entries are checked by parseShareholderEndpoints). */
export function readShareholderFile(path: string): unknown {
  if (!existsSync(path)) throw new Error(`--shareholders: no file at ${path}`);
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as unknown;
  } catch (e) {
    throw new Error(`--shareholders: ${path} is not JSON (${(e as Error).message})`);
  }
}

export interface EnclaveSettings {
  listen: ListenAddress;
  shareholdersFile: string;
  printShareholderBridges: boolean;
  shareholderSocketDir?: string;
  forwarder: ForwarderOptions;
}

/** Everything the command line says, checked; throws an Error whose message names the flag. */
export function enclaveSettings(values: EnclaveArgs): EnclaveSettings {
  if (!values.shareholders) throw new Error('--shareholders <file.json> is required ([{ "id", "url", "publicKey" }, …])');
  const socketDir = values['shareholder-socket-dir'];
  if (socketDir !== undefined && !existsSync(socketDir)) throw new Error(`--shareholder-socket-dir: no directory at ${socketDir}`);
  const caFile = values['ca-file'];
  if (caFile !== undefined && !existsSync(caFile)) throw new Error(`--ca-file: no file at ${caFile}`);
  const egress = parseEgress(values.egress);
  if (values['egress-only'] && egress.size === 0) throw new Error('--egress-only needs at least one --egress <origin>=<route>');
  return {
    listen: parseListenAddress(values.listen),
    shareholdersFile: values.shareholders,
    printShareholderBridges: values['print-shareholder-bridges'],
    ...(socketDir !== undefined ? { shareholderSocketDir: socketDir } : {}),
    forwarder: {
      egress,
      egressOnly: values['egress-only'],
      ...(caFile !== undefined ? { ca: readFileSync(caFile, 'utf8') } : {}),
      connectTimeout: seconds('connect-timeout', values['connect-timeout']),
      headersTimeout: seconds('headers-timeout', values['headers-timeout']),
      bodyTimeout: seconds('idle-timeout', values['idle-timeout']),
    },
  };
}

/** The enclave's own options, as parsed: the types `parseArgs` gives `OPTIONS`, so the two cannot drift. */
export type EnclaveArgs = ReturnType<typeof parseArgs<{ options: typeof OPTIONS }>>['values'];

/**
 * The command line, with `extra` options (the development entry's, returned apart). A wrong
 * option prints the usage and exits 2 (no stack trace); `--help` prints it and exits 0.
 */
export function parseEnclaveArgs(args: string[], extra?: { options: ParseArgsOptionsConfig; usage: string }): { values: EnclaveArgs; extra: Record<string, string | boolean | undefined> } {
  const usage = `${USAGE}${extra?.usage ?? ''}`;
  let values: Record<string, string | boolean | string[] | undefined>;
  try {
    ({ values } = parseArgs({ args, options: { ...OPTIONS, ...extra?.options }, strict: true, allowPositionals: false }));
  } catch (e) {
    process.stderr.write(`enclave: ${(e as Error).message}\n\n${usage}`);
    process.exit(2);
  }
  if (values.help) {
    process.stdout.write(usage);
    process.exit(0);
  }
  const own = Object.fromEntries(Object.keys(extra?.options ?? {}).map((k) => [k, values[k] as string | boolean | undefined]));
  return { values: values as unknown as EnclaveArgs, extra: own };
}
