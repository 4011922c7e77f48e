/**
 * The CLI's HTTP client for the gateway's admin API and the shareholders: JSON in and out, a
 * 15 s bound per call, a spinner on a terminal, and failures as CliErrors with the next step to
 * take. Tokens go in the Authorization header only, never in a URL or a message.
 */
import { isLoopbackUrl, shareholderErrorOf, type ShareholderErrorCode } from '../protocol/index.ts';
import { AdminError, CliError, EXIT } from './errors.ts';

/** What a call answered: the status and the JSON body (`{}` when the body is empty or not JSON). */
export interface HttpAnswer {
  status: number;
  json: Record<string, unknown>;
}

/**
 * On a terminal, a spinner on stderr while a network call takes longer than 150 ms (nothing on
 * pipes or in --json use; stdout is never touched).
 */
function spinner(label: string): () => void {
  if (!process.stderr.isTTY) return () => undefined;
  const frames = '⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏';
  let i = 0;
  let shown = false;
  const tick = () => {
    shown = true;
    process.stderr.write(`\r${frames[i++ % frames.length]} ${label}`);
  };
  const start = setTimeout(() => {
    tick();
    interval = setInterval(tick, 80);
  }, 150);
  let interval: NodeJS.Timeout | undefined;
  return () => {
    clearTimeout(start);
    if (interval) clearInterval(interval);
    if (shown) process.stderr.write(`\r${' '.repeat(label.length + 2)}\r`);
  };
}

/** One JSON call (`body` undefined: none); an unreachable server is a CliError (unavailable) naming the likely cause. */
export async function http(method: string, url: string, body: unknown, token?: string): Promise<HttpAnswer> {
  const done = spinner(`${method} ${new URL(url).host}${new URL(url).pathname}…`);
  try {
    return await httpOnce(method, url, body, token);
  } finally {
    done();
  }
}

async function httpOnce(method: string, url: string, body: unknown, token?: string): Promise<HttpAnswer> {
  let res: Response;
  try {
    res = await fetch(url, {
      method,
      headers: { ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...(token ? { authorization: `Bearer ${token}` } : {}) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      signal: AbortSignal.timeout(15_000),
    });
  } catch (e) {
    const origin = new URL(url).origin;
    const cause = (e as Error & { cause?: { code?: string } }).cause?.code ?? (e as Error).name;
    const hint = isLoopbackUrl(origin) ? `is \`npm start\` running at ${origin}?` : `is ${origin} the right server (SECUREGATE_URL, \`securegate login --server\`) and reachable?`;
    throw new CliError(`cannot reach ${origin} (${cause}): ${hint}`, EXIT.unavailable);
  }
  const text = await res.text();
  let json: Record<string, unknown> = {};
  try {
    json = text ? JSON.parse(text) : {};
  } catch {
    json = {};
  }
  return { status: res.status, json };
}

/** A refusal as one line: `code: message`, or the body itself when it has no error object. */
export function errorText(json: Record<string, unknown>): string {
  const e = json.error as { code?: string; message?: string } | undefined;
  return e ? `${e.code ?? 'error'}: ${e.message ?? ''}` : JSON.stringify(json);
}

/** One admin API call; a 4xx becomes exit code 1 with the server's message, a 5xx exit code 3. */
export async function adminRequest(serverUrl: string, adminToken: string, method: string, path: string, body?: unknown): Promise<unknown> {
  const r = await http(method, `${serverUrl}/admin/v1${path}`, body, adminToken);
  if (r.status >= 300) throw new AdminError(r.status, r.json);
  return r.json;
}

/** What to do next, per shareholder refusal code (protocol/shareholder-errors.ts). */
const SHAREHOLDER_NEXT_STEP: Partial<Record<ShareholderErrorCode, string>> = {
  policy_weak: 'pin an owner binding: `--pcr8 <hex>` (EIF signing certificate) and/or `--pcr3 <role ARN or hex>` (docs/deploy.md)',
  message_stale: "this machine's clock is off from the shareholder's; fix the clock and retry",
  message_replayed: 'a newer owner message was already applied; retry (a new message is signed each time)',
  owner_signature_invalid: 'only the owner key pinned at enrollment (the machine that connected) may change this connection',
  share_not_found: 'this shareholder holds no share for the connection',
  widening_not_pending: '`securegate connections pending` lists the widenings still pending',
};

/**
 * A shareholder's refusal as a CliError: read by its registered code (never by message text); a
 * body without a known code, or a 5xx, is the shareholder failing (exit 3), not a refusal.
 */
export function shareholderError(shareholderId: string, what: string, answer: HttpAnswer): CliError {
  const refusal = shareholderErrorOf(answer.status, answer.json);
  const next = refusal.code === 'unrecognized' ? undefined : SHAREHOLDER_NEXT_STEP[refusal.code];
  const failed = refusal.code === 'unrecognized' || refusal.code === 'internal_error' || answer.status >= 500;
  return new CliError(
    `shareholder ${shareholderId} refused ${what}: ${refusal.code === 'unrecognized' ? refusal.message : `${refusal.code}: ${refusal.message}`}${next ? ` — ${next}` : ''}`,
    failed ? EXIT.unavailable : EXIT.invalid,
  );
}
