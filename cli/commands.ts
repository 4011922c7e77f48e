/**
 * `securegate login | connect | keys | providers`: the owner's commands for the vertical slice.
 * Secrets come from stdin or a hidden prompt, never argv; the SG_ key is printed once.
 */
import { generateOwnerKeyPair, fromHex, isLoopbackUrl, PROVIDERS, toHex } from '../protocol/index.ts';
import { devStackPath, effectiveConfig, findDevStack, readConfig, writeConfig } from './config.ts';
import { fetchKey, keysCreate, type KeyOptionFlags } from './keys.ts';
import { rotateConnection } from './releases.ts';
import { CliError, EXIT } from './errors.ts';
import { connectProvider, resolveOrigin } from './owner.ts';
import { dim, green, printJson, usd, type Io } from './output.ts';

export async function readStdin(): Promise<Uint8Array> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  const buf = Buffer.concat(chunks);
  let end = buf.length;
  while (end > 0 && (buf[end - 1] === 0x0a || buf[end - 1] === 0x0d)) end--;
  const out = new Uint8Array(buf.subarray(0, end));
  buf.fill(0);
  return out;
}

/** Hidden prompt on a TTY: characters are not echoed. */
export async function promptHidden(question: string, notTty = 'no key given: pipe it in with --api-key-stdin (keys are never taken on the command line)'): Promise<Uint8Array> {
  const stdin = process.stdin;
  if (!stdin.isTTY) throw new CliError(notTty, EXIT.usage);
  process.stderr.write(question);
  stdin.setRawMode(true);
  stdin.resume();
  const bytes: number[] = [];
  return new Promise((resolve, reject) => {
    const onData = (chunk: Buffer) => {
      for (const b of chunk) {
        if (b === 0x0d || b === 0x0a) {
          stdin.setRawMode(false);
          stdin.pause();
          stdin.off('data', onData);
          process.stderr.write('\n');
          resolve(new Uint8Array(bytes));
          bytes.fill(0);
          return;
        }
        if (b === 0x03) {
          stdin.setRawMode(false);
          reject(new CliError('cancelled', EXIT.cancelled));
          return;
        }
        if (b === 0x7f) bytes.pop();
        else bytes.push(b);
      }
    };
    stdin.on('data', onData);
  });
}

function requireLogin(io: Io) {
  const config = effectiveConfig();
  if (!config.adminToken) {
    throw new CliError(`not logged in to ${config.serverUrl}: run \`securegate login\` (a local dev stack from \`npm start\` logs you in automatically)`, EXIT.invalid);
  }
  void io;
  return config as typeof config & { adminToken: string };
}

/** The password from stdin (--password-stdin) or a hidden prompt; never from argv. */
export async function readPassword(fromStdin: boolean | undefined): Promise<string> {
  const bytes = fromStdin ? await readStdin() : await promptHidden('Password (hidden): ', 'no password given: pipe it in with --password-stdin (passwords are never taken on the command line)');
  return Buffer.from(bytes).toString('utf8');
}

/** Exchanges an email and password for an admin token of the account (shown once, saved 0600). */
export async function passwordToken(serverUrl: string, email: string, password: string, account?: string): Promise<{ token: string; accountId: string; role: string }> {
  const res = await fetch(`${serverUrl}/auth/v1/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ email, password, name: `securegate CLI (${process.env.USER ?? 'user'})`, ...(account ? { accountId: account } : {}) }),
  }).catch((e: Error) => {
    throw new CliError(`cannot reach ${serverUrl}: ${e.message}`, EXIT.unavailable);
  });
  const body = (await res.json()) as { token: string; accountId: string; role: string; error?: { message: string } };
  if (res.status !== 201) throw new CliError(`login refused: ${body.error?.message ?? res.status}`, EXIT.invalid);
  return body;
}

export async function loginCommand(options: { server?: string; tokenStdin?: boolean; email?: string; passwordStdin?: boolean; account?: string; json?: boolean }, io: Io): Promise<number> {
  const saved = readConfig();
  const serverUrl = options.server ?? process.env.SECUREGATE_URL ?? saved.serverUrl ?? 'http://127.0.0.1:8080';
  let adminToken: string | undefined;
  let source = 'token';
  if (options.tokenStdin) {
    adminToken = Buffer.from(await readStdin()).toString('utf8').trim();
  } else if (options.email) {
    adminToken = (await passwordToken(serverUrl, options.email, await readPassword(options.passwordStdin), options.account)).token;
    source = options.email;
  } else {
    const dev = findDevStack();
    if (dev && isLoopbackUrl(serverUrl)) {
      adminToken = dev.adminToken;
      source = 'dev stack';
      saved.shareholders = dev.shareholders;
      saved.threshold = dev.threshold;
      saved.pcrPolicy = { allow: [{ '0': dev.pcr0 }] };
      saved.dev = true;
    }
  }
  if (!adminToken) throw new CliError('no token: pass one with --token-stdin, or start the local dev stack (`npm start`) first', EXIT.usage);
  const check = await fetch(`${serverUrl}/admin/v1/connections`, { headers: { authorization: `Bearer ${adminToken}` } }).catch((e: Error) => {
    throw new CliError(`cannot reach ${serverUrl}: ${e.message}`, EXIT.unavailable);
  });
  if (check.status === 401) throw new CliError('the server refused this token', EXIT.invalid);
  const path = writeConfig({ ...saved, serverUrl, adminToken });
  if (options.json) printJson(io, { serverUrl, source, config: path });
  else io.out(`${green(io, '✔')} logged in to ${serverUrl} (${source}); credentials saved in ${path} (0600)\n`);
  return 0;
}

interface ConnectFlags {
  rotate?: string;
  projectId?: string;
  auth?: string;
  allow?: string[];
  apiKeyStdin?: boolean;
  baseUrl?: string;
  name?: string;
  threshold?: string;
  json?: boolean;
}

/** Seals, splits and enrolls a provider key on this machine; returns the new connection. */
async function connectFromOwnerMachine(provider: string, options: ConnectFlags, io: Io) {
  const config = requireLogin(io);
  if (!config.shareholders || config.shareholders.length < 2) {
    throw new CliError('no pinned shareholders: add them to your config (`shareholders`) or log in to a dev stack', EXIT.invalid);
  }
  if (!config.pcrPolicy) throw new CliError('no enclave PCR policy configured: set `pcrPolicy` from the published release manifest', EXIT.invalid);
  const threshold = options.threshold ? Number(options.threshold) : (config.threshold ?? 3);
  if (!Number.isInteger(threshold)) throw new CliError('--threshold must be an integer', EXIT.usage);
  let ownerSecretKey = config.ownerSecretKey;
  if (!ownerSecretKey) {
    ownerSecretKey = toHex(generateOwnerKeyPair().secretKey);
    writeConfig({ ...readConfig(), ownerSecretKey });
  }
  // Everything that can fail without the secret fails before asking for it.
  resolveOrigin(provider, options.baseUrl, config.dev ?? false);
  await fetch(`${config.serverUrl}/healthz`, { signal: AbortSignal.timeout(5_000) }).catch((e: Error & { cause?: { code?: string } }) => {
    throw new CliError(`cannot reach ${config.serverUrl} (${e.cause?.code ?? e.name}): ${isLoopbackUrl(config.serverUrl) ? `is \`npm start\` running at ${config.serverUrl}?` : 'check SECUREGATE_URL or `securegate login --server`'}`, EXIT.unavailable);
  });
  const apiKey = options.apiKeyStdin ? await readStdin() : await promptHidden(`${provider} API key (hidden; nothing is shown as you type): `);
  const result = await connectProvider({
    serverUrl: config.serverUrl,
    adminToken: config.adminToken,
    ownerSecretKey: fromHex(ownerSecretKey),
    shareholders: config.shareholders,
    threshold,
    provider,
    ...(options.baseUrl ? { baseUrl: options.baseUrl } : {}),
    ...(options.name ? { name: options.name } : {}),
    apiKey,
    pcrPolicy: config.pcrPolicy,
    dev: config.dev ?? false,
    onProgress: options.json ? undefined : (step) => io.err(dim(io, `… ${step}\n`)),
    ...(options.auth ? { authScheme: options.auth } : {}),
    ...(options.allow ? { allowRules: options.allow } : {}),
    ...(options.projectId ? { projectId: options.projectId } : {}),
  });
  return { result, threshold, shareholders: config.shareholders.length, serverUrl: config.serverUrl };
}

export async function connectCommand(provider: string, options: ConnectFlags, io: Io): Promise<number> {
  if (options.rotate) {
    return rotateConnection(
      options.rotate,
      async (old) => {
        if (old.provider !== provider) throw new CliError(`${options.rotate} is a ${old.provider} connection, not ${provider}`, EXIT.usage);
        const spec = PROVIDERS[provider];
        const baseUrl = spec?.origin === old.origin ? undefined : old.origin;
        return (await connectFromOwnerMachine(provider, { ...options, ...(baseUrl ? { baseUrl } : {}), name: old.name, projectId: old.projectId, json: true }, io)).result;
      },
      options,
      io,
    );
  }
  const { result, threshold, shareholders } = await connectFromOwnerMachine(provider, options, io);
  if (options.json) printJson(io, result);
  else {
    io.out(`${green(io, '✔')} connected ${provider} as ${result.id} (${result.origin}); the key was split ${threshold}-of-${shareholders} on this machine\n`);
    io.out(`  next: securegate keys create --connection ${result.id}\n`);
  }
  return 0;
}

/**
 * RubberAPI's `push`: connect an upstream key and create a locked SG_ key for it, in one step.
 * The key comes from a hidden prompt on a terminal or from stdin — never from argv, where shell
 * history and `ps` would keep it.
 */
export async function pushCommand(argvKey: string | undefined, options: ConnectFlags & KeyOptionFlags & { provider?: string }, io: Io): Promise<number> {
  if (argvKey !== undefined) {
    throw new CliError(
      'refusing an API key on the command line: it would stay in your shell history and be visible in `ps`. ' +
        'Type it at the hidden prompt (run `securegate push …` without the key) or pipe it in: `printenv OPENAI_API_KEY | securegate push …`',
      EXIT.usage,
    );
  }
  const provider = options.provider ?? 'openai';
  const { result, serverUrl } = await connectFromOwnerMachine(provider, { ...options, apiKeyStdin: !process.stdin.isTTY }, io);
  const { json: _json, ...keyOptions } = options;
  const buffered: string[] = [];
  await keysCreate({ ...keyOptions, connection: result.id, json: true }, { ...io, out: (t) => buffered.push(t) });
  const created = JSON.parse(buffered.join('')) as { id: string; key: string; signingSecret?: string };
  const k = await fetchKey(created.id);
  const endpoint = `${serverUrl}/v1`;
  if (options.json) {
    printJson(io, { connectionId: result.id, ...created, endpoint, dailyLimit: k.dailyLimit, lifetimeLimit: k.lifetimeLimit, models: k.allowedModels, cities: k.allowedCities, inactiveExpiryMs: k.inactiveExpiryMs });
    return 0;
  }
  const models = k.allowedModels as string[];
  const cities = k.allowedCities as string[];
  const idle = k.inactiveExpiryMs as number | null;
  const lines = [
    `${green(io, '✔')} Proxy key created (${provider} key split on this machine)`,
    `Key:       ${created.key}`,
    `Endpoint:  ${endpoint}`,
    `Budget:    ${k.dailyLimit === null ? 'no daily cap' : `${usd(k.dailyLimit)}/day`}${k.lifetimeLimit === null ? '' : `, ${usd(k.lifetimeLimit)} lifetime`}`,
    `Models:    ${models.length ? models.join(', ') : 'any'}`,
    ...(cities.length ? [`Cities:    ${cities.join('; ')}`] : []),
    `Expiry:    ${idle ? `after ${formatDuration(idle)} unused` : 'never (set --inactive-expiry 7d)'}`,
    `IP lock:   binds to the first IP that uses it`,
    ...(created.signingSecret ? [`Signing secret (shown once): ${created.signingSecret}`] : []),
    '',
    dim(io, `The key is shown once. Id ${created.id}: \`securegate status ${created.id}\` shows its spend, \`securegate kill ${created.id}\` stops it.`),
  ];
  io.out(`${lines.join('\n')}\n`);
  return 0;
}

function formatDuration(ms: number): string {
  const day = 86_400_000;
  if (ms % day === 0) return `${ms / day} day${ms === day ? '' : 's'}`;
  const hour = 3_600_000;
  if (ms % hour === 0) return `${ms / hour} hour${ms === hour ? '' : 's'}`;
  return `${Math.round(ms / 60_000)} minutes`;
}

export function providersCommand(options: { json?: boolean }, io: Io): number {
  const list = Object.values(PROVIDERS).map((p) => ({ id: p.id, name: p.name, origin: p.origin ?? null, auth: p.authScheme, upstreamBase: p.upstreamBase }));
  if (options.json) printJson(io, list);
  else for (const p of list) io.out(`${p.id.padEnd(15)}${p.name.padEnd(38)}${p.origin ?? '(your --base-url)'}\n`);
  return 0;
}

/** Forgets the server credentials on this machine; keeps the owner key and pins unless --all. */
export function logoutCommand(options: { all?: boolean; json?: boolean }, io: Io): number {
  const saved = readConfig();
  const { adminToken: _token, serverUrl, ...rest } = saved;
  const next = options.all ? {} : rest;
  const path = writeConfig(next);
  // A loopback dev stack logs the CLI in from its data directory: logging out forgets only what was saved.
  const current = effectiveConfig();
  const devStack = current.dev && isLoopbackUrl(current.serverUrl) ? current.serverUrl : null;
  if (options.json) printJson(io, { loggedOut: serverUrl ?? null, kept: Object.keys(next), devStack });
  else {
    io.out(`${green(io, '✔')} logged out${serverUrl ? ` of ${serverUrl}` : ''}; ${options.all ? 'all settings removed' : 'owner key and shareholder pins kept'} (${path})\n`);
    if (devStack) {
      io.out(`  note: the local dev stack at ${devStack} still logs this CLI in automatically from its data directory (${devStackPath() ?? 'data/dev-stack.json'}): whoever can read that directory controls the stack. Stop the stack or unset SECUREGATE_URL to be logged out of it.\n`);
    }
  }
  return 0;
}
