/**
 * Key lifecycle and lock commands: keys create|list|show|update|lock|bind-device|revoke|unsuspend,
 * kill, repin, env, models alias. Thin over the admin API; every command has `--json`.
 */
import { effectiveConfig } from './config.ts';
import { deviceFingerprint } from './device.ts';
import { adminRequest, CliError } from './owner.ts';
import { green, printJson, type Io } from './output.ts';

type KeyView = Record<string, unknown> & { id: string; hint: string; status: string; boundIp: string | null };

function login() {
  const config = effectiveConfig();
  if (!config.adminToken) throw new CliError(`not logged in to ${config.serverUrl}: run \`securegate login\``, 1);
  return config as typeof config & { adminToken: string };
}

function splitList(value: string | undefined): string[] | undefined {
  if (value === undefined) return undefined;
  return value.split(/[,;]/).map((s) => s.trim()).filter(Boolean);
}

export interface KeyOptionFlags {
  name?: string;
  project?: string;
  models?: string;
  cities?: string;
  inactiveExpiry?: string;
  requireSignature?: boolean;
  dailyLimit?: string;
  lifetimeLimit?: string;
  dailyRequests?: string;
  autoLock?: string;
  json?: boolean;
}

function dollars(value: string, flag: string): number | null {
  if (value === 'off' || value === 'none') return null;
  const n = Number(value.replace(/^\$/, ''));
  if (!Number.isFinite(n) || n < 0) throw new CliError(`${flag} takes dollars, e.g. 5 or 0.50 (or off)`, 2);
  return n;
}

function optionsBody(o: KeyOptionFlags): Record<string, unknown> {
  return {
    ...(o.name !== undefined ? { name: o.name } : {}),
    ...(o.project !== undefined ? { projectId: o.project } : {}),
    ...(o.models !== undefined ? { models: splitList(o.models) } : {}),
    ...(o.cities !== undefined ? { cities: o.cities.split(';').map((s) => s.trim()).filter(Boolean) } : {}),
    ...(o.inactiveExpiry !== undefined ? { inactiveExpiry: o.inactiveExpiry } : {}),
    ...(o.requireSignature !== undefined ? { requireSignature: o.requireSignature } : {}),
    ...(o.dailyLimit !== undefined ? { dailyLimit: dollars(o.dailyLimit, '--daily-limit') } : {}),
    ...(o.lifetimeLimit !== undefined ? { lifetimeLimit: dollars(o.lifetimeLimit, '--lifetime-limit') } : {}),
    ...(o.autoLock !== undefined ? { autoLock: splitList(o.autoLock) } : {}),
    ...(o.dailyRequests !== undefined ? { dailyRequests: o.dailyRequests === 'off' ? null : Math.floor(Number(o.dailyRequests)) } : {}),
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
    k.requireSignature ? 'signed requests' : '',
    k.inactiveExpiryMs ? `expires after ${Math.round((k.inactiveExpiryMs as number) / 86_400_000)}d idle` : '',
    k.dailyLimit !== null && k.dailyLimit !== undefined ? `$${String(k.dailyLimit)}/day` : '',
    k.lifetimeLimit !== null && k.lifetimeLimit !== undefined ? `$${String(k.lifetimeLimit)} lifetime` : '',
  ].filter(Boolean);
  return `${k.id}  ${k.hint}  ${k.status}  ${locks.join(', ')}`;
}

export async function keysCreate(options: KeyOptionFlags & { connection: string }, io: Io): Promise<number> {
  const c = login();
  const created = (await adminRequest(c.serverUrl, c.adminToken, 'POST', '/keys', { connectionId: options.connection, ...optionsBody(options) })) as KeyView & { key: string; signingSecret?: string };
  if (options.json) printJson(io, { id: created.id, key: created.key, ...(created.signingSecret ? { signingSecret: created.signingSecret } : {}) });
  else {
    io.out(`${green(io, '✔')} created ${created.id}\n\n  ${created.key}\n\n`);
    if (created.signingSecret) io.out(`  signing secret (shown once): ${created.signingSecret}\n`);
    io.out(`  This key is shown once. Use it with base URL ${c.serverUrl}/v1 — \`securegate env\` prints snippets.\n`);
  }
  return 0;
}

export async function keysShow(id: string, options: { json?: boolean }, io: Io): Promise<number> {
  const c = login();
  const k = (await adminRequest(c.serverUrl, c.adminToken, 'GET', `/keys/${encodeURIComponent(id)}`)) as KeyView;
  if (options.json) printJson(io, k);
  else io.out(`${describeKey(k)}\n`);
  return 0;
}

export async function keysUpdate(id: string, options: KeyOptionFlags, io: Io): Promise<number> {
  const c = login();
  const body = optionsBody(options);
  if (Object.keys(body).length === 0) throw new CliError('nothing to update: pass --models, --cities, --inactive-expiry, --require-signature, --name …', 2);
  const k = (await adminRequest(c.serverUrl, c.adminToken, 'PATCH', `/keys/${encodeURIComponent(id)}`, body)) as KeyView & { signingSecret?: string };
  if (options.json) printJson(io, k);
  else {
    io.out(`${green(io, '✔')} ${describeKey(k)}\n`);
    if (k.signingSecret) io.out(`  signing secret (shown once): ${k.signingSecret}\n`);
  }
  return 0;
}

/** kill, repin, revoke, unsuspend, activate, lock --ip, bind-device: one admin call each. */
export async function keyAction(id: string, action: 'kill' | 'repin' | 'revoke' | 'unsuspend' | 'activate' | 'lock' | 'bind-device', options: { ip?: string; fingerprint?: string; json?: boolean }, io: Io): Promise<number> {
  const c = login();
  const path = `/keys/${encodeURIComponent(id)}`;
  let k: KeyView;
  if (action === 'lock') {
    if (!options.ip) throw new CliError('--ip <address> is required', 2);
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
    for (const l of langs) if (!SIGNED_SNIPPETS[l]) throw new CliError(`--signed snippets exist for ${Object.keys(SIGNED_SNIPPETS).join(', ')}`, 2);
    if (options.json) printJson(io, { baseUrl: base, snippets: Object.fromEntries(langs.map((l) => [l, SIGNED_SNIPPETS[l]!(base)])) });
    else for (const l of langs) io.out(`# ${l} (signed requests)\n${SIGNED_SNIPPETS[l]!(base)}\n\n`);
    return 0;
  }
  const c = effectiveConfig();
  const base = `${c.serverUrl}/v1`;
  let fp: string | undefined;
  if (options.device) fp = deviceFingerprint();
  const langs = options.lang ? [options.lang] : Object.keys(SNIPPETS);
  for (const l of langs) if (!SNIPPETS[l]) throw new CliError(`--lang must be one of ${Object.keys(SNIPPETS).join(', ')}`, 2);
  if (options.json) {
    printJson(io, { baseUrl: base, deviceFingerprint: fp ?? null, snippets: Object.fromEntries(langs.map((l) => [l, SNIPPETS[l]!(base, fp)])) });
    return 0;
  }
  io.out(`export SECUREGATE_KEY=SG_…   # from \`securegate keys create\`\n\n`);
  for (const l of langs) io.out(`# ${l}\n${SNIPPETS[l]!(base, fp)}\n\n`);
  return 0;
}
