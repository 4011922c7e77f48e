/**
 * Key lifecycle and lock commands: keys create|list|show|update|lock|bind-device|revoke|unsuspend,
 * kill, repin, env, models alias. Thin over the admin API; every command has `--json`.
 */
import { effectiveConfig } from './config.ts';
import { deviceFingerprint } from './device.ts';
import { AdminError, CliError, EXIT } from './errors.ts';
import { adminRequest } from './http.ts';
import { ago, confirmOnTty, green, printJson, usd, type Io } from './output.ts';
import type { KeyLimitsView } from '../protocol/index.ts';

export type KeyView = Record<string, unknown> & {
  id: string;
  name: string;
  hint: string;
  status: string;
  boundIp: string | null;
  connectionId: string;
  dailyLimit: number | null;
  lifetimeLimit: number | null;
  lastUsedAt: number | null;
  spentToday?: number;
  spentLifetime?: number;
} & Partial<KeyLimitsView>;

function login() {
  const config = effectiveConfig();
  if (!config.adminToken) throw new CliError(`not logged in to ${config.serverUrl}: run \`securegate login\``, EXIT.invalid);
  return config as typeof config & { adminToken: string };
}

const CLEAR = new Set(['off', 'none']);

/** Models and scopes: comma-separated; `off` / `none` clears the list. */
function commaList(value: string): string[] {
  if (CLEAR.has(value.trim().toLowerCase())) return [];
  return value.split(',').map((s) => s.trim()).filter(Boolean);
}

/** Cities: `;`-separated (a city may carry its country: "London, GB; Paris"); `off` / `none` clears. */
export function cityList(value: string): string[] {
  if (CLEAR.has(value.trim().toLowerCase())) return [];
  return value.split(';').map((s) => s.trim()).filter(Boolean);
}

export interface KeyOptionFlags {
  name?: string;
  project?: string;
  models?: string;
  cities?: string;
  scopes?: string;
  inactiveExpiry?: string;
  requireSignature?: boolean;
  dailyLimit?: string;
  lifetimeLimit?: string;
  dailyRequests?: string;
  weeklyLimit?: string;
  monthlyLimit?: string;
  expiresAt?: string;
  rpm?: string;
  tpm?: string;
  autoLock?: string;
  allowUnknown?: boolean;
  json?: boolean;
}

function dollars(value: string, flag: string): number | null {
  if (CLEAR.has(value)) return null;
  const n = Number(value.replace(/^\$/, ''));
  if (!Number.isFinite(n) || n < 0) throw new CliError(`${flag} takes dollars, e.g. 5 or 0.50 (or off)`, EXIT.usage);
  return n;
}

/** `--rpm`, `--tpm`: a whole number of at least 1, or off. */
function perMinute(value: string, flag: string): number | null {
  if (CLEAR.has(value.trim().toLowerCase())) return null;
  if (!/^\d+$/.test(value.trim()) || Number(value) < 1) throw new CliError(`${flag} takes a whole number of at least 1 (or off), got "${value}"`, EXIT.usage);
  return Number(value);
}

/** `--expires-at`: sent as typed (the server parses and checks it, and says what it wants); off clears it. */
function expiry(value: string): string | null {
  return CLEAR.has(value.trim().toLowerCase()) ? null : value.trim();
}

function optionsBody(o: KeyOptionFlags): Record<string, unknown> {
  return {
    ...(o.name !== undefined ? { name: o.name } : {}),
    ...(o.project !== undefined ? { projectId: o.project } : {}),
    ...(o.models !== undefined ? { models: commaList(o.models) } : {}),
    ...(o.cities !== undefined ? { cities: cityList(o.cities) } : {}),
    ...(o.scopes !== undefined ? { scopes: commaList(o.scopes) } : {}),
    ...(o.inactiveExpiry !== undefined ? { inactiveExpiry: o.inactiveExpiry } : {}),
    ...(o.requireSignature !== undefined ? { requireSignature: o.requireSignature } : {}),
    ...(o.dailyLimit !== undefined ? { dailyLimit: dollars(o.dailyLimit, '--daily-limit') } : {}),
    ...(o.lifetimeLimit !== undefined ? { lifetimeLimit: dollars(o.lifetimeLimit, '--lifetime-limit') } : {}),
    ...(o.weeklyLimit !== undefined ? { weeklyLimit: dollars(o.weeklyLimit, '--weekly-limit') } : {}),
    ...(o.monthlyLimit !== undefined ? { monthlyLimit: dollars(o.monthlyLimit, '--monthly-limit') } : {}),
    ...(o.expiresAt !== undefined ? { expiresAt: expiry(o.expiresAt) } : {}),
    ...(o.rpm !== undefined ? { rpm: perMinute(o.rpm, '--rpm') } : {}),
    ...(o.tpm !== undefined ? { tpm: perMinute(o.tpm, '--tpm') } : {}),
    ...(o.autoLock !== undefined ? { autoLock: commaList(o.autoLock) } : {}),
    ...(o.dailyRequests !== undefined ? { dailyRequests: o.dailyRequests === 'off' ? null : Math.floor(Number(o.dailyRequests)) } : {}),
    ...(o.allowUnknown ? { confirmUnknown: true } : {}),
  };
}

/**
 * Sends a key create/update; a city or model the server does not know is asked about on a
 * terminal ("save anyway?") and otherwise refused with the flag that saves it deliberately.
 */
async function sendKeyOptions(send: (body: Record<string, unknown>) => Promise<unknown>, body: Record<string, unknown>): Promise<unknown> {
  try {
    return await send(body);
  } catch (e) {
    if (!(e instanceof AdminError) || (e.code !== 'unknown_city' && e.code !== 'unknown_model')) throw e;
    const what = e.code === 'unknown_city' ? 'city' : 'model';
    const answer = await confirmOnTty(`warning: ${e.message.replace(/, or confirm to save anyway$/, '')}.\nSave ${e.unknown.length === 1 ? `this ${what}` : `these ${what === 'city' ? 'cities' : 'models'}`} anyway?`);
    if (answer === null) throw new CliError(`${e.message.replace(/, or confirm to save anyway$/, '')}; to save it deliberately, add --allow-unknown`, EXIT.invalid);
    if (!answer) throw new CliError('not saved', EXIT.invalid);
    return send({ ...body, confirmUnknown: true });
  }
}

/** "2027-01-31 00:00 UTC": an instant as the CLI shows it (always UTC, as the server reads it). */
export const utcLabel = (ms: number) => `${new Date(ms).toISOString().slice(0, 16).replace('T', ' ')} UTC`;

/**
 * The limits beyond today's cap, in one short cell: week and month spend against their caps,
 * requests and tokens per minute, the expiry date; "-" when there are none.
 */
export function limitsSummary(k: KeyView): string {
  const parts = [
    k.weeklyLimit !== null && k.weeklyLimit !== undefined ? `week ${usd(k.spentWeek ?? 0)} / ${usd(k.weeklyLimit)}` : '',
    k.monthlyLimit !== null && k.monthlyLimit !== undefined ? `month ${usd(k.spentMonth ?? 0)} / ${usd(k.monthlyLimit)}` : '',
    k.rpm ? `${k.rpm} rpm` : '',
    k.tpm ? `${k.tpm} tpm` : '',
    k.expiresAt ? `${k.expiresAt <= Date.now() ? 'expired' : 'expires'} ${utcLabel(k.expiresAt)}` : '',
  ].filter(Boolean);
  return parts.length ? parts.join(', ') : '-';
}

/** Money and time columns of a key, as `keys list`, `keys show` and the dashboard show them. */
export function spendSummary(k: KeyView): { today: string; lifetime: string; lastUsed: string; limits: string } {
  return {
    today: `${usd(k.spentToday ?? 0)} / ${k.dailyLimit === null ? 'no cap' : usd(k.dailyLimit)}`,
    lifetime: `${usd(k.spentLifetime ?? 0)}${k.lifetimeLimit === null ? '' : ` / ${usd(k.lifetimeLimit)}`}`,
    lastUsed: ago(k.lastUsedAt),
    limits: limitsSummary(k),
  };
}

function describeKey(k: KeyView): string {
  const locks = [
    k.boundIp ? `ip ${k.boundIp}` : 'ip unbound (binds on first use)',
    k.boundCity ? `city ${String(k.boundCity)} (auto)` : (k.autoLock as string[] | undefined)?.includes('city') ? 'city binds on first use' : '',
    (k.autoLock as string[] | undefined)?.includes('device') && !k.deviceBound ? 'device binds on first use' : '',
    (k.allowedCities as string[]).length ? `cities ${(k.allowedCities as string[]).join('; ')}` : '',
    k.deviceBound ? 'device bound' : '',
    (k.allowedModels as string[]).length ? `models ${(k.allowedModels as string[]).join(', ')}` : '',
    k.scopes ? `scopes ${(k.scopes as string[]).join(', ')}` : '',
    k.requireSignature ? 'signed requests' : '',
    k.inactiveExpiryMs ? `expires after ${Math.round((k.inactiveExpiryMs as number) / 86_400_000)}d idle` : '',
    k.dailyLimit !== null && k.dailyLimit !== undefined ? `${usd(k.dailyLimit)}/day` : '',
    k.weeklyLimit !== null && k.weeklyLimit !== undefined ? `${usd(k.weeklyLimit)}/week (UTC, from Monday)` : '',
    k.monthlyLimit !== null && k.monthlyLimit !== undefined ? `${usd(k.monthlyLimit)}/month (UTC)` : '',
    k.lifetimeLimit !== null && k.lifetimeLimit !== undefined ? `${usd(k.lifetimeLimit)} lifetime` : '',
    k.rpm ? `${k.rpm} requests/min` : '',
    k.tpm ? `${k.tpm} tokens/min` : '',
    k.expiresAt ? `${k.expiresAt <= Date.now() ? 'expired' : 'expires'} ${utcLabel(k.expiresAt)}` : '',
  ].filter(Boolean);
  return `${k.id}  ${k.name}  ${k.hint}  ${k.status}  ${locks.join(', ')}`;
}

/**
 * A key reference as users hold it: its id (`key_…`), its name, its displayed hint
 * (`SG_2ZsJ…feOP`) or the `SG_` key itself — matched here against the hints, so the secret is
 * never sent to the server nor printed back.
 */
export async function resolveKeyRef(c: { serverUrl: string; adminToken: string }, ref: string): Promise<string> {
  if (/^key_[A-Za-z0-9]+$/.test(ref)) return ref;
  const keys = (await adminRequest(c.serverUrl, c.adminToken, 'GET', '/keys')) as KeyView[];
  const isSecret = /^SG_/.test(ref) && !ref.includes('…');
  const hint = isSecret ? `${ref.slice(0, 7)}…${ref.slice(-4)}` : ref.replace('...', '…');
  const shown = isSecret ? 'that SG_ key' : JSON.stringify(ref);
  const byHint = keys.filter((k) => k.hint === hint);
  const matches = byHint.length ? byHint : isSecret ? [] : keys.filter((k) => k.name === ref);
  if (matches.length === 1) return matches[0]!.id;
  if (matches.length > 1) {
    throw new CliError(`${shown} matches ${matches.length} keys (${matches.map((k) => k.id).join(', ')}): use the key id`, EXIT.usage);
  }
  throw new CliError(`no key matches ${shown}: give a key id (key_…), a key's name, its hint (SG_ab12…wxyz) or the SG_ key; \`securegate keys list\` shows them`, EXIT.invalid);
}

export async function keysCreate(options: KeyOptionFlags & { connection: string }, io: Io): Promise<number> {
  const c = login();
  const created = (await sendKeyOptions((body) => adminRequest(c.serverUrl, c.adminToken, 'POST', '/keys', body), { connectionId: options.connection, ...optionsBody(options) })) as KeyView & {
    key: string;
    signingSecret?: string;
  };
  if (options.json) printJson(io, { id: created.id, key: created.key, ...(created.signingSecret ? { signingSecret: created.signingSecret } : {}) });
  else {
    io.out(`${green(io, '✔')} created ${created.id}\n\n  ${created.key}\n\n`);
    if (created.signingSecret) io.out(`  signing secret (shown once): ${created.signingSecret}\n`);
    io.out(`  This key is shown once. Use it with base URL ${c.serverUrl}/v1 — \`securegate env\` prints snippets.\n`);
  }
  return 0;
}

/** The key as created: what a command that just made one repeats back (push, keys create). */
export async function fetchKey(id: string): Promise<KeyView> {
  const c = login();
  return (await adminRequest(c.serverUrl, c.adminToken, 'GET', `/keys/${encodeURIComponent(id)}`)) as KeyView;
}

export async function keysShow(ref: string, options: { json?: boolean }, io: Io): Promise<number> {
  const c = login();
  const id = await resolveKeyRef(c, ref);
  const k = (await adminRequest(c.serverUrl, c.adminToken, 'GET', `/keys/${encodeURIComponent(id)}`)) as KeyView;
  if (options.json) printJson(io, k);
  else {
    const spend = spendSummary(k);
    const periods = [
      k.weeklyLimit !== null && k.weeklyLimit !== undefined ? ` · this week ${usd(k.spentWeek ?? 0)} / ${usd(k.weeklyLimit)}` : '',
      k.monthlyLimit !== null && k.monthlyLimit !== undefined ? ` · this month ${usd(k.spentMonth ?? 0)} / ${usd(k.monthlyLimit)}` : '',
    ].join('');
    io.out(`${describeKey(k)}\n  spent today ${spend.today}${periods} · lifetime ${spend.lifetime} · last used ${spend.lastUsed}\n`);
  }
  return 0;
}

export async function keysList(options: { json?: boolean }, io: Io): Promise<number> {
  const c = login();
  const keys = (await adminRequest(c.serverUrl, c.adminToken, 'GET', '/keys')) as KeyView[];
  if (options.json) {
    printJson(io, keys);
    return 0;
  }
  if (keys.length === 0) {
    io.out('no keys yet: `securegate keys create --connection <id>` (or `securegate push`) makes one\n');
    return 0;
  }
  const rows = keys.map((k) => {
    const spend = spendSummary(k);
    return [k.name, k.hint, k.status, spend.today, spend.lifetime, spend.limits, spend.lastUsed, k.boundIp ?? '-', k.id];
  });
  const head = ['NAME', 'KEY', 'STATUS', 'TODAY / CAP', 'LIFETIME', 'LIMITS', 'LAST USED', 'BOUND IP', 'ID'];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  for (const r of [head, ...rows]) io.out(`${r.map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i]! + 2))).join('')}\n`);
  return 0;
}

export async function keysUpdate(ref: string, options: KeyOptionFlags, io: Io): Promise<number> {
  const c = login();
  const body = optionsBody(options);
  if (Object.keys(body).filter((k) => k !== 'confirmUnknown').length === 0) {
    throw new CliError('nothing to update: pass --models, --cities, --scopes, --daily-limit, --weekly-limit, --monthly-limit, --rpm, --tpm, --expires-at, --inactive-expiry, --require-signature, --name …', EXIT.usage);
  }
  const id = await resolveKeyRef(c, ref);
  const k = (await sendKeyOptions((b) => adminRequest(c.serverUrl, c.adminToken, 'PATCH', `/keys/${encodeURIComponent(id)}`, b), body)) as KeyView & { signingSecret?: string };
  if (options.json) printJson(io, k);
  else {
    io.out(`${green(io, '✔')} ${describeKey(k)}\n`);
    if (k.signingSecret) io.out(`  signing secret (shown once): ${k.signingSecret}\n`);
  }
  return 0;
}

/** kill, repin, revoke, unsuspend, activate, lock --ip, bind-device: one admin call each. */
export async function keyAction(
  ref: string,
  action: 'kill' | 'repin' | 'revoke' | 'unsuspend' | 'activate' | 'lock' | 'bind-device',
  options: { ip?: string; fingerprint?: string; yes?: boolean; json?: boolean },
  io: Io,
): Promise<number> {
  const c = login();
  const id = await resolveKeyRef(c, ref);
  const path = `/keys/${encodeURIComponent(id)}`;
  let k: KeyView;
  if (action === 'revoke' && !options.yes) {
    const key = (await adminRequest(c.serverUrl, c.adminToken, 'GET', path)) as KeyView;
    const answer = await confirmOnTty(`Revoke ${key.name} (${key.hint}, ${key.id})? Every request with it will be refused, for good (\`securegate kill\` is the reversible stop).`);
    if (answer === null) throw new CliError(`revoking cannot be undone: pass --yes to revoke ${key.id} without a question (no terminal to ask on)`, EXIT.usage);
    if (!answer) {
      io.err('not revoked\n');
      return 1;
    }
  }
  if (action === 'lock') {
    if (!options.ip) throw new CliError('--ip <address> is required', EXIT.usage);
    k = (await adminRequest(c.serverUrl, c.adminToken, 'POST', `${path}/lock`, { ip: options.ip })) as KeyView;
  } else if (action === 'bind-device') {
    const fingerprint = options.fingerprint ?? deviceFingerprint();
    k = (await adminRequest(c.serverUrl, c.adminToken, 'POST', `${path}/device`, { fingerprint })) as KeyView;
  } else {
    k = (await adminRequest(c.serverUrl, c.adminToken, 'POST', `${path}/${action}`)) as KeyView;
  }
  if (options.json) printJson(io, k);
  else io.out(`${green(io, '✔')} ${describeKey(k)}\n`);
  return 0;
}

export async function modelsAlias(alias: string, target: string, options: { project?: string; json?: boolean }, io: Io): Promise<number> {
  const c = login();
  const project = options.project ?? 'proj_default';
  const aliases = await adminRequest(c.serverUrl, c.adminToken, 'PUT', `/projects/${encodeURIComponent(project)}/aliases/${encodeURIComponent(alias)}`, { target });
  if (options.json) printJson(io, aliases);
  else io.out(`${green(io, '✔')} ${alias} → ${target} in ${project}\n`);
  return 0;
}

const SNIPPETS: Record<string, (base: string, fp: string | undefined) => string> = {
  curl: (base, fp) =>
    `curl ${base}/chat/completions \\\n  -H "Authorization: Bearer $SECUREGATE_KEY" \\\n${fp ? `  -H "x-device-fingerprint: ${fp}" \\\n` : ''}  -H "content-type: application/json" \\\n  -d '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Hello"}]}'`,
  node: (base, fp) =>
    `import OpenAI from 'openai';\nconst client = new OpenAI({\n  baseURL: '${base}',\n  apiKey: process.env.SECUREGATE_KEY, // SG_…\n${fp ? `  defaultHeaders: { 'x-device-fingerprint': '${fp}' },\n` : ''}});`,
  python: (base, fp) =>
    `from openai import OpenAI\nimport os\nclient = OpenAI(\n    base_url="${base}",\n    api_key=os.environ["SECUREGATE_KEY"],  # SG_…\n${fp ? `    default_headers={"x-device-fingerprint": "${fp}"},\n` : ''})`,
  langchain: (base, fp) =>
    `from langchain_openai import ChatOpenAI\nimport os\nllm = ChatOpenAI(\n    model="gpt-4o-mini",\n    base_url="${base}",\n    api_key=os.environ["SECUREGATE_KEY"],\n${fp ? `    default_headers={"x-device-fingerprint": "${fp}"},\n` : ''})`,
  openclaw: (base, fp) =>
    `# OpenClaw: point the OpenAI-compatible provider at SecureGate\nexport OPENAI_BASE_URL=${base}\nexport OPENAI_API_KEY=$SECUREGATE_KEY   # SG_…, never the raw provider key\n${fp ? `export OPENAI_DEFAULT_HEADERS='{"x-device-fingerprint":"${fp}"}'\n` : ''}`,
};

/** Request-signature snippets (`--signed`): the scheme of protocol/request-signature.ts, spelled out. */
export const SIGNED_SNIPPETS: Record<string, (base: string) => string> = {
  node: (base) =>
    `// x-sg-signature = hex HMAC-SHA256(secret, ts + "\\n" + METHOD + "\\n" + path?query + "\\n" + hex(SHA-256(body)))\nimport { createHash, createHmac } from 'node:crypto';\nfunction sgSign(secret, method, path, body) {\n  const ts = Math.floor(Date.now() / 1000);\n  const digest = createHash('sha256').update(body).digest('hex');\n  const sig = createHmac('sha256', Buffer.from(secret, 'hex')).update(\`\${ts}\\n\${method}\\n\${path}\\n\${digest}\`).digest('hex');\n  return { 'x-sg-timestamp': String(ts), 'x-sg-signature': sig };\n}\n// fetch('${base}/chat/completions', { method: 'POST', body, headers: { ...sgSign(process.env.SECUREGATE_SIGNING_SECRET, 'POST', '/v1/chat/completions', body), … } })`,
  curl: (base) =>
    `BODY='{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Hello"}]}'\nTS=$(date +%s)\nDIGEST=$(printf %s "$BODY" | sha256sum | cut -d' ' -f1)\nSIG=$(printf '%s\\nPOST\\n/v1/chat/completions\\n%s' "$TS" "$DIGEST" | openssl dgst -sha256 -mac HMAC -macopt hexkey:$SECUREGATE_SIGNING_SECRET | sed 's/.* //')\ncurl ${base}/chat/completions -H "Authorization: Bearer $SECUREGATE_KEY" -H "x-sg-timestamp: $TS" -H "x-sg-signature: $SIG" -H 'content-type: application/json' -d "$BODY"`,
  python: (base) =>
    `import hashlib, hmac, os, time\ndef sg_sign(secret, method, path, body: bytes):\n    ts = str(int(time.time()))\n    msg = f"{ts}\\n{method}\\n{path}\\n{hashlib.sha256(body).hexdigest()}".encode()\n    return {"x-sg-timestamp": ts, "x-sg-signature": hmac.new(bytes.fromhex(secret), msg, hashlib.sha256).hexdigest()}\n# POST ${base}/chat/completions with headers sg_sign(os.environ["SECUREGATE_SIGNING_SECRET"], "POST", "/v1/chat/completions", body)`,
};

export function envCommand(options: { lang?: string; device?: boolean; signed?: boolean; json?: boolean }, io: Io): number {
  if (options.signed) {
    const c = effectiveConfig();
    const base = `${c.serverUrl}/v1`;
    const langs = options.lang ? [options.lang] : Object.keys(SIGNED_SNIPPETS);
    for (const l of langs) if (!SIGNED_SNIPPETS[l]) throw new CliError(`--signed snippets exist for ${Object.keys(SIGNED_SNIPPETS).join(', ')}`, EXIT.usage);
    if (options.json) printJson(io, { baseUrl: base, snippets: Object.fromEntries(langs.map((l) => [l, SIGNED_SNIPPETS[l]!(base)])) });
    else for (const l of langs) io.out(`# ${l} (signed requests)\n${SIGNED_SNIPPETS[l]!(base)}\n\n`);
    return 0;
  }
  const c = effectiveConfig();
  const base = `${c.serverUrl}/v1`;
  let fp: string | undefined;
  if (options.device) fp = deviceFingerprint();
  const langs = options.lang ? [options.lang] : Object.keys(SNIPPETS);
  for (const l of langs) if (!SNIPPETS[l]) throw new CliError(`--lang must be one of ${Object.keys(SNIPPETS).join(', ')}`, EXIT.usage);
  if (options.json) {
    printJson(io, { baseUrl: base, deviceFingerprint: fp ?? null, snippets: Object.fromEntries(langs.map((l) => [l, SNIPPETS[l]!(base, fp)])) });
    return 0;
  }
  io.out(`export SECUREGATE_KEY=SG_…   # from \`securegate keys create\`\n\n`);
  for (const l of langs) io.out(`# ${l}\n${SNIPPETS[l]!(base, fp)}\n\n`);
  return 0;
}
