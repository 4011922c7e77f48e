/**
 * Owner-side onboarding (runs on the owner's machine, never on the host): seal the upstream key
 * under a fresh DEK, split the DEK t-of-n, HPKE-seal each share to its pinned shareholder,
 * enroll each with an owner-signed policy, and register only the sealed record with the host.
 * The plaintext key and DEK are wiped when done and never sent anywhere.
 */
import { randomBytes } from 'node:crypto';
import {
  canonicalAllowList,
  canonicalOrigin,
  isAuthScheme,
  prepareConnection,
  wipe,
  providerSpec,
  PROVIDERS,
  type AuthScheme,
  type KeyBinding,
} from '../protocol/index.ts';
import type { PinnedShareholder } from './config.ts';

export class CliError extends Error {
  readonly exitCode: number;
  constructor(message: string, exitCode = 1) {
    super(message);
    this.exitCode = exitCode;
  }
}

export interface ConnectInput {
  serverUrl: string;
  adminToken: string;
  ownerSecretKey: Uint8Array;
  shareholders: PinnedShareholder[];
  threshold: number;
  provider: string;
  baseUrl?: string;
  name?: string;
  apiKey: Uint8Array;
  pcrPolicy: { allow: Array<Record<string, string>>; allowDebug?: boolean };
  dev: boolean;
  onProgress?: (step: string) => void;
  /** Any-API connections: auth scheme and request allow-list rules ("GET /v1/customers/*"). */
  authScheme?: AuthScheme;
  allowRules?: string[];
  projectId?: string;
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

async function http(method: string, url: string, body: unknown, token?: string): Promise<{ status: number; json: Record<string, unknown> }> {
  const done = spinner(`${method} ${new URL(url).host}${new URL(url).pathname}…`);
  try {
    return await httpOnce(method, url, body, token);
  } finally {
    done();
  }
}

async function httpOnce(method: string, url: string, body: unknown, token?: string): Promise<{ status: number; json: Record<string, unknown> }> {
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
    const hint = /^https?:\/\/(127\.0\.0\.1|localhost|\[::1\])(:|$)/.test(origin) ? `is \`npm start\` running at ${origin}?` : `is ${origin} the right server (SECUREGATE_URL, \`securegate login --server\`) and reachable?`;
    throw new CliError(`cannot reach ${origin} (${cause}): ${hint}`, 3);
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

function errorText(json: Record<string, unknown>): string {
  const e = json.error as { code?: string; message?: string } | undefined;
  return e ? `${e.code ?? 'error'}: ${e.message ?? ''}` : JSON.stringify(json);
}

function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const cur = row[j]!;
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = cur;
    }
  }
  return row[b.length]!;
}

export function resolveOrigin(provider: string, baseUrl: string | undefined, dev: boolean): { origin: string; authScheme: AuthScheme } {
  const spec = providerSpec(provider);
  if (!spec) {
    const near = Object.keys(PROVIDERS).filter((id) => editDistance(id, provider.toLowerCase()) <= 2 || id.startsWith(provider.toLowerCase()));
    throw new CliError(`unknown provider ${provider}${near.length ? ` — did you mean ${near.join(' or ')}?` : ''}; \`securegate providers\` lists them`, 2);
  }
  if (!baseUrl) {
    if (!spec.origin) throw new CliError(`${spec.name} has no fixed origin: pass --base-url (e.g. https://<resource>.openai.azure.com)`, 2);
    return { origin: spec.origin, authScheme: spec.authScheme };
  }
  let origin: string;
  try {
    const u = new URL(baseUrl);
    origin = canonicalOrigin(u.origin);
  } catch {
    throw new CliError('--base-url must be an http(s) URL', 2);
  }
  const u = new URL(origin);
  const loopback = u.hostname === '127.0.0.1' || u.hostname === 'localhost' || u.hostname === '[::1]';
  if (u.protocol !== 'https:' && !(dev && loopback)) {
    throw new CliError('--base-url must use https (plain http is accepted only for loopback addresses against a dev stack)', 2);
  }
  return { origin, authScheme: spec.authScheme };
}

/** Checks each pinned shareholder still presents the pinned key; refuses loudly if not. */
async function checkShareholder(sh: PinnedShareholder): Promise<void> {
  const r = await http('GET', `${sh.url}/v1/identity`, undefined);
  if (r.status !== 200) throw new CliError(`shareholder ${sh.id} at ${sh.url} did not answer /v1/identity (${r.status})`, 3);
  if (r.json.id !== sh.id || r.json.publicKey !== sh.publicKey) {
    throw new CliError(
      `WARNING: shareholder at ${sh.url} presents id ${String(r.json.id)} key ${String(r.json.publicKey)}, ` +
        `but ${sh.id} is pinned to key ${sh.publicKey}. Refusing to enroll. If the operator rotated its key, re-pin it deliberately.`,
      1,
    );
  }
}

export async function connectProvider(input: ConnectInput): Promise<{ id: string; provider: string; origin: string }> {
  const progress = input.onProgress ?? (() => {});
  const n = input.shareholders.length;
  if (input.threshold < 2 || input.threshold > n) throw new CliError(`threshold must be 2..${n} (the number of pinned shareholders)`, 2);
  if (input.apiKey.length === 0) throw new CliError('the API key on stdin is empty', 2);
  const resolved = resolveOrigin(input.provider, input.baseUrl, input.dev);
  const origin = resolved.origin;
  let authScheme = resolved.authScheme;
  let allow: string | undefined;
  if (input.provider === 'any') {
    if (!input.allowRules?.length) throw new CliError('an any-API connection needs --allow "METHOD /path" rules (repeatable)', 2);
    try {
      allow = canonicalAllowList(input.allowRules);
    } catch (e) {
      throw new CliError((e as Error).message, 2);
    }
    if (input.authScheme) authScheme = input.authScheme;
  } else if (input.authScheme && input.authScheme !== authScheme) {
    throw new CliError(`${input.provider} uses auth scheme ${authScheme}; --auth applies to any-API connections`, 2);
  }
  if (!isAuthScheme(authScheme)) throw new CliError('--auth must be bearer, basic, x-api-key, api-key, header:<name> or query:<name>', 2);
  const connectionId = `conn_${randomBytes(12).toString('hex')}`;
  const binding: KeyBinding = { connectionId, provider: input.provider, origin, authScheme, ...(allow ? { allow } : {}) };

  progress(`checking ${n} pinned shareholders`);
  await Promise.all(input.shareholders.map(checkShareholder)).catch((e: unknown) => {
    wipe(input.apiKey);
    throw e;
  });

  progress(`sealing and enrolling ${n} shares (${input.threshold}-of-${n})`);
  const prepared = await prepareConnection({
    apiKey: input.apiKey,
    binding,
    shareholders: input.shareholders,
    threshold: input.threshold,
    ownerSecretKey: input.ownerSecretKey,
    pcrPolicy: input.pcrPolicy,
  });
  const record = prepared.sealedRecord;
  await Promise.all(
    prepared.enrollments.map(async ({ shareholder, body }) => {
      const r = await http('POST', `${shareholder.url}/v1/shares`, body);
      if (r.status !== 201) throw new CliError(`shareholder ${shareholder.id} refused the enrollment: ${errorText(r.json)}`, 1);
    }),
  );
  progress('registering the sealed record with the gateway');
  const r = await http(
    'POST',
    `${input.serverUrl}/admin/v1/connections`,
    {
      id: connectionId,
      name: input.name ?? input.provider,
      provider: input.provider,
      origin,
      authScheme,
      sealedRecord: Buffer.from(record).toString('base64'),
      threshold: input.threshold,
      shareholders: input.shareholders.map((s) => s.id),
      ...(allow ? { allow } : {}),
      ...(input.projectId ? { projectId: input.projectId } : {}),
    },
    input.adminToken,
  );
  if (r.status !== 201) throw new CliError(`the gateway refused the connection: ${errorText(r.json)}`, r.status === 401 ? 1 : 3);
  return { id: connectionId, provider: input.provider, origin };
}

export async function createKey(serverUrl: string, adminToken: string, connectionId: string): Promise<{ id: string; key: string }> {
  const r = await http('POST', `${serverUrl}/admin/v1/keys`, { connectionId }, adminToken);
  if (r.status !== 201) throw new CliError(`could not create a key: ${errorText(r.json)}`, r.status === 404 ? 1 : 3);
  return { id: r.json.id as string, key: r.json.key as string };
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
    super(`${e.message ?? `the server answered ${status}`}${NEXT_STEP[code] ? ` — ${NEXT_STEP[code]}` : ''}`, status >= 500 ? 3 : 1);
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

/** One admin API call; a 4xx becomes exit code 1 with the server's message, a 5xx exit code 3. */
export async function adminRequest(serverUrl: string, adminToken: string, method: string, path: string, body?: unknown): Promise<unknown> {
  const r = await http(method, `${serverUrl}/admin/v1${path}`, body, adminToken);
  if (r.status >= 300) throw new AdminError(r.status, r.json);
  return r.json;
}

