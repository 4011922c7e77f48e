/**
 * `securegate connect | push`: seal an upstream key on the owner's machine, split it to the
 * pinned shareholders under a PCR policy that pins the image *and* the owner's bindings
 * (cli/pcr-policy.ts), and sign the connection policy the enclave enforces (operations, models,
 * a daily ceiling — issue 19). The key comes from stdin or a hidden prompt, never argv; the SG_
 * key `push` creates is printed once.
 */
import { readFile } from 'node:fs/promises';
import { calcPrice } from '@pydantic/genai-prices';
import { devPcrPolicy } from '../attestation/dev-pcrs.ts';
import {
  ACCESS,
  DEFAULT_POLICY_OPERATIONS,
  defaultLeaseTerms,
  ENDPOINT_KINDS,
  fromHex,
  generateOwnerKeyPair,
  isLoopbackUrl,
  providerHostData,
  PROVIDERS,
  toHex,
  verifyReleaseManifest,
  type ConnectionPolicyInput,
  policyPrices,
  type ModelPrice,
  type PriceLookup,
  type ReleaseManifest,
} from '../protocol/index.ts';
import { findDevStack, readConfig, recordEnrollment, writeConfig } from './config.ts';
import { CliError, EXIT } from './errors.ts';
import { fetchKey, keysCreate, type KeyOptionFlags } from './keys.ts';
import { dim, green, printJson, usd, type Io } from './output.ts';
import { connectProvider, resolveOrigin } from './owner.ts';
import { ownerPcrPolicy } from './pcr-policy.ts';
import { promptHidden, readStdin } from './prompt.ts';
import { rotateConnection } from './releases.ts';
import { requireLogin } from './session.ts';

/** The connection policy flags of `connect` (issue 19); `push` signs the defaults. */
export interface ConnectionPolicyFlags {
  operations?: string;
  models?: string;
  dailyRequests?: string;
  dailyTokens?: string;
  dailyDollars?: string;
}

interface ConnectFlags {
  /** Signed release manifest (image PCR0/1/2) and the release key that must have signed it. */
  releaseManifest?: string;
  releaseKey?: string;
  pcr3?: string;
  pcr8?: string;
  /** How long a widening of the PCR policy waits before it takes effect: 24h (default), 7d, 0. */
  wideningDelay?: string;
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

const DURATION = /^(\d+)(ms|s|m|h|d)?$/;
const UNIT_MS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;

/** `--widening-delay`: 24h, 7d, 90m, 0 (no delay: a widening takes effect at once). */
export function parseWideningDelay(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const m = DURATION.exec(value.trim());
  const ms = m ? Number(m[1]) * UNIT_MS[(m[2] ?? 'ms') as keyof typeof UNIT_MS] : NaN;
  if (!m || (m[2] === undefined && ms !== 0) || !Number.isSafeInteger(ms) || ms > 30 * 86_400_000) {
    throw new CliError('--widening-delay takes a duration up to 30d: 24h, 7d, 90m, or 0 for none', EXIT.usage);
  }
  return ms;
}

const list = (v: string) => v.split(',').map((x) => x.trim()).filter(Boolean);

function count(flag: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  if (!/^\d{1,15}$/.test(value.trim())) throw new CliError(`${flag} takes a whole number`, EXIT.usage);
  return Number(value.trim());
}

/**
 * The connection policy the owner signs at connect (protocol/connection-policy.ts): operations
 * (default inference; any-API connections `any`), the allowed models, and a daily ceiling. A
 * dollar ceiling carries the allowed models' prices from the same price table the host meters
 * with (@pydantic/genai-prices), so the enclave needs none of its own; it needs --models, since
 * the enclave refuses every model it has no signed price for.
 */
export function connectionPolicyFromFlags(provider: string, flags: ConnectionPolicyFlags): ConnectionPolicyInput {
  const operations = flags.operations ? list(flags.operations) : provider === 'any' ? ['any'] : [...DEFAULT_POLICY_OPERATIONS];
  for (const op of operations) {
    const [kind, access, extra] = op.split(':');
    if (extra !== undefined || !(ENDPOINT_KINDS as readonly string[]).includes(kind!) || (access !== undefined && !(ACCESS as readonly string[]).includes(access))) {
      throw new CliError(`--operations: unknown operation ${op}; use ${ENDPOINT_KINDS.join(', ')}, optionally :${ACCESS.join('|')} (e.g. inference,files:read)`, EXIT.usage);
    }
  }
  const models = flags.models ? list(flags.models) : undefined;
  const ceiling: ConnectionPolicyInput['ceiling'] = {};
  const requests = count('--daily-requests', flags.dailyRequests);
  const tokens = count('--daily-tokens', flags.dailyTokens);
  if (requests !== undefined) ceiling.requests = requests;
  if (tokens !== undefined) ceiling.tokens = tokens;
  let prices: Record<string, ModelPrice> | undefined;
  if (flags.dailyDollars !== undefined) {
    const dollars = Number(flags.dailyDollars.replace(/^\$/, ''));
    if (!Number.isFinite(dollars) || dollars < 0 || dollars > 1e9) throw new CliError('--daily-dollars takes an amount in USD, e.g. 5 or 0.50', EXIT.usage);
    if (!models?.length) throw new CliError('--daily-dollars needs --models: the enclave prices only the models the policy names (it refuses any other)', EXIT.usage);
    ceiling.microUsd = Math.round(dollars * 1e6);
    const priced = policyPrices(models, providerHostData(provider)?.priceProvider ?? provider, calcPrice as PriceLookup);
    prices = priced.prices;
    const unpriced = priced.unpriced;
    if (unpriced.length) throw new CliError(`--daily-dollars: no known price for ${unpriced.join(', ')} (${provider}); name priced models, or cap requests/tokens instead`, EXIT.usage);
  }
  // A request or token ceiling is split into leases the shareholders count, so it holds across
  // enclave restarts and many enclaves, not only in one enclave's memory.
  const lease = defaultLeaseTerms(ceiling);
  return { operations, ...(models ? { models } : {}), ceiling, ...(prices ? { prices } : {}), ...(lease ? { lease } : {}) };
}

/** The release manifest named by --release-manifest (or the config), verified with the pinned release key. */
async function releaseManifest(options: ConnectFlags, saved: { releaseManifest?: string; releaseKey?: string }): Promise<ReleaseManifest | undefined> {
  const path = options.releaseManifest ?? saved.releaseManifest;
  if (path === undefined) return undefined;
  const key = options.releaseKey ?? saved.releaseKey;
  if (!key || !/^[0-9a-fA-F]{64}$/.test(key)) throw new CliError('--release-manifest needs --release-key <64 hex digits> (or `releaseKey` in the config): the key your releases are signed with', EXIT.usage);
  try {
    return verifyReleaseManifest(JSON.parse(await readFile(path, 'utf8')), fromHex(key.toLowerCase()));
  } catch (e) {
    throw new CliError(`the release manifest ${path} does not verify: ${(e as Error).message}`, EXIT.invalid);
  }
}

/** Seals, splits and enrolls a provider key on this machine; returns the new connection. */
async function connectFromOwnerMachine(provider: string, options: ConnectFlags, io: Io, policyFlags: ConnectionPolicyFlags = {}) {
  const config = requireLogin(io);
  if (!config.shareholders || config.shareholders.length < 2) {
    throw new CliError('no pinned shareholders: add them to your config (`shareholders`) or log in to a dev stack', EXIT.invalid);
  }
  const manifest = await releaseManifest(options, config);
  if (manifest?.nsm === 'dev' && !config.dev) throw new CliError('this is a development release manifest; it is accepted only against a dev stack', EXIT.invalid);
  const dev = config.dev ?? false;
  const devStack = dev ? findDevStack() : undefined;
  const pcr = ownerPcrPolicy({
    ...(manifest ? { manifest } : {}),
    ...(config.pcrPolicy ? { configured: config.pcrPolicy } : devStack ? { configured: devPcrPolicy(devStack.pcr0) } : {}),
    flags: { ...(options.pcr3 !== undefined ? { pcr3: options.pcr3 } : {}), ...(options.pcr8 !== undefined ? { pcr8: options.pcr8 } : {}) },
    ...(config.ownerBindings ? { saved: config.ownerBindings } : {}),
    dev,
  });
  // A dev manifest measures PCR1/2 with the dev NSM's stand-ins; the dev defaults already have them.
  const wideningDelayMs = parseWideningDelay(options.wideningDelay);
  const connectionPolicy = connectionPolicyFromFlags(provider, policyFlags);
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
    pcrPolicy: pcr.policy,
    connectionPolicy,
    ...(wideningDelayMs !== undefined ? { wideningDelayMs } : {}),
    dev,
    onProgress: options.json ? undefined : (step) => io.err(dim(io, `… ${step}\n`)),
    ...(options.auth ? { authScheme: options.auth } : {}),
    ...(options.allow ? { allowRules: options.allow } : {}),
    ...(options.projectId ? { projectId: options.projectId } : {}),
  });
  recordEnrollment(result.id, config.shareholders.map((s) => s.id));
  return { result, threshold, shareholders: config.shareholders.length, serverUrl: config.serverUrl, pcr, wideningDelayMs: wideningDelayMs ?? 86_400_000 };
}

/** The signed policies, repeated to the owner: what the shareholders and the enclave now enforce. */
function policyLines(io: Io, done: Awaited<ReturnType<typeof connectFromOwnerMachine>>): string[] {
  const p = done.result.connectionPolicy?.message as Record<string, unknown> | undefined;
  const ceiling = (p?.ceiling ?? {}) as { requests?: number; tokens?: number; microUsd?: number };
  const caps = [
    ceiling.requests !== undefined ? `${ceiling.requests} requests` : '',
    ceiling.tokens !== undefined ? `${ceiling.tokens} tokens` : '',
    ceiling.microUsd !== undefined ? `${usd(ceiling.microUsd)}` : '',
  ].filter(Boolean);
  const hours = done.wideningDelayMs / 3_600_000;
  return [
    `  enclaves:   PCR0–2 from the ${done.pcr.image === 'manifest' ? 'signed release manifest' : 'configured policy'}` +
      `${done.pcr.bindings.pcr8 ? `, PCR8 ${done.pcr.bindings.pcr8.slice(0, 16)}… (EIF signing certificate)` : ''}${done.pcr.bindings.pcr3 ? `, PCR3 ${done.pcr.bindings.pcr3.slice(0, 16)}… (parent IAM role)` : ''}`,
    `  widening:   a policy update admitting a new enclave waits ${Number.isInteger(hours) ? `${hours} h` : `${done.wideningDelayMs} ms`} (cancel with \`securegate connections cancel-widening\`)`,
    ...(p
      ? [
          `  policy:     operations ${(p.operations as string[]).join(', ')}; models ${(p.models as string[] | undefined)?.join(', ') ?? 'any'}; daily ceiling ${caps.length ? caps.join(', ') : 'none'}`,
          dim(io, `              signed by your owner key; the enclave refuses anything outside it (403 connection_policy_denied)`),
        ]
      : []),
  ];
}

export async function connectCommand(provider: string, options: ConnectFlags & ConnectionPolicyFlags, io: Io): Promise<number> {
  if (options.rotate) {
    return rotateConnection(
      options.rotate,
      async (old) => {
        if (old.provider !== provider) throw new CliError(`${options.rotate} is a ${old.provider} connection, not ${provider}`, EXIT.usage);
        const spec = PROVIDERS[provider];
        const baseUrl = spec?.origin === old.origin ? undefined : old.origin;
        return (await connectFromOwnerMachine(provider, { ...options, ...(baseUrl ? { baseUrl } : {}), name: old.name, projectId: old.projectId, json: true }, io, options)).result;
      },
      options,
      io,
    );
  }
  const done = await connectFromOwnerMachine(provider, options, io, options);
  const { result, threshold, shareholders } = done;
  if (options.json) {
    printJson(io, {
      id: result.id,
      provider: result.provider,
      origin: result.origin,
      pcrPolicy: done.pcr.policy,
      ownerBindings: done.pcr.bindings,
      wideningDelayMs: done.wideningDelayMs,
      connectionPolicy: result.connectionPolicy?.message ?? null,
    });
  } else {
    io.out(`${green(io, '✔')} connected ${provider} as ${result.id} (${result.origin}); the key was split ${threshold}-of-${shareholders} on this machine\n`);
    io.out(`${policyLines(io, done).join('\n')}\n`);
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

