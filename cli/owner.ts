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
  isLoopbackHost,
  prepareConnection,
  wipe,
  providerSpec,
  PROVIDERS,
  signOwnerMessage,
  type SignedOwnerMessage,
  type AuthScheme,
  type ConnectionPolicyInput,
  type KeyBinding,
} from '../protocol/index.ts';
import type { PinnedShareholder } from './config.ts';
import { CliError, EXIT } from './errors.ts';
import { errorText, http, shareholderError } from './http.ts';

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
  /**
   * How long a PCR policy update that admits a new enclave waits before it takes effect
   * (SPEC.md §8.3), signed into every enrollment; absent: the shareholders' default, 24 h.
   */
  wideningDelayMs?: number;
  dev: boolean;
  onProgress?: (step: string) => void;
  /** Any-API connections: auth scheme and request allow-list rules ("GET /v1/customers/*"). */
  authScheme?: AuthScheme;
  allowRules?: string[];
  projectId?: string;
  /**
   * The connection policy the owner signs and the enclave enforces (operations, models, a daily
   * ceiling, lease terms — protocol/SPEC.md §9); the record is sealed under it. Without one the
   * record is sealed as before (the enclave enforces its pinned origin and paths only).
   */
  connectionPolicy?: ConnectionPolicyInput;
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
    throw new CliError(`unknown provider ${provider}${near.length ? ` — did you mean ${near.join(' or ')}?` : ''}; \`securegate providers\` lists them`, EXIT.usage);
  }
  if (!baseUrl) {
    if (!spec.origin) throw new CliError(`${spec.name} has no fixed origin: pass --base-url (e.g. https://<resource>.openai.azure.com)`, EXIT.usage);
    return { origin: spec.origin, authScheme: spec.authScheme };
  }
  let origin: string;
  try {
    const u = new URL(baseUrl);
    origin = canonicalOrigin(u.origin);
  } catch {
    throw new CliError('--base-url must be an http(s) URL', EXIT.usage);
  }
  const u = new URL(origin);
  if (u.protocol !== 'https:' && !(dev && isLoopbackHost(u.hostname))) {
    throw new CliError('--base-url must use https (plain http is accepted only for loopback addresses against a dev stack)', EXIT.usage);
  }
  return { origin, authScheme: spec.authScheme };
}

/** Checks each pinned shareholder still presents the pinned key; refuses loudly if not. */
async function checkShareholder(sh: PinnedShareholder): Promise<void> {
  const r = await http('GET', `${sh.url}/v1/identity`, undefined);
  if (r.status !== 200) throw new CliError(`shareholder ${sh.id} at ${sh.url} did not answer /v1/identity (${r.status})`, EXIT.unavailable);
  if (r.json.id !== sh.id || r.json.publicKey !== sh.publicKey) {
    throw new CliError(
      `WARNING: shareholder at ${sh.url} presents id ${String(r.json.id)} key ${String(r.json.publicKey)}, ` +
        `but ${sh.id} is pinned to key ${sh.publicKey}. Refusing to enroll. If the operator rotated its key, re-pin it deliberately.`,
      EXIT.invalid,
    );
  }
}

export async function connectProvider(input: ConnectInput): Promise<{ id: string; provider: string; origin: string; connectionPolicy?: SignedOwnerMessage }> {
  const progress = input.onProgress ?? (() => {});
  const n = input.shareholders.length;
  if (input.threshold < 2 || input.threshold > n) throw new CliError(`threshold must be 2..${n} (the number of pinned shareholders)`, EXIT.usage);
  if (input.apiKey.length === 0) throw new CliError('the API key on stdin is empty', EXIT.usage);
  const resolved = resolveOrigin(input.provider, input.baseUrl, input.dev);
  const origin = resolved.origin;
  let authScheme = resolved.authScheme;
  let allow: string | undefined;
  if (input.provider === 'any') {
    if (!input.allowRules?.length) throw new CliError('an any-API connection needs --allow "METHOD /path" rules (repeatable)', EXIT.usage);
    try {
      allow = canonicalAllowList(input.allowRules);
    } catch (e) {
      throw new CliError((e as Error).message, EXIT.usage);
    }
    if (input.authScheme) authScheme = input.authScheme;
  } else if (input.authScheme && input.authScheme !== authScheme) {
    throw new CliError(`${input.provider} uses auth scheme ${authScheme}; --auth applies to any-API connections`, EXIT.usage);
  }
  if (!isAuthScheme(authScheme)) throw new CliError('--auth must be bearer, basic, x-api-key, api-key, header:<name> or query:<name>', EXIT.usage);
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
    ...(input.connectionPolicy ? { connectionPolicy: input.connectionPolicy } : {}),
  });
  const record = prepared.sealedRecord;
  // The widening delay is part of what the owner signs at enrollment, so neither the host
  // relaying a dashboard's enrollment nor a later message can shorten it.
  const withDelay = (signed: SignedOwnerMessage): SignedOwnerMessage =>
    input.wideningDelayMs === undefined ? signed : signOwnerMessage(input.ownerSecretKey, { ...signed.message, wideningDelayMs: input.wideningDelayMs });
  await Promise.all(
    prepared.enrollments.map(async ({ shareholder, body: prepared }) => {
      const body = { ...prepared, signed: withDelay(prepared.signed) };
      const r = await http('POST', `${shareholder.url}/v1/shares`, body);
      if (r.status !== 201) throw shareholderError(shareholder.id, 'the enrollment', r);
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
      // The set the record binds (0x04), as pinned here: the enclave authenticates releases against it.
      shareholderSet: prepared.shareholderSet,
      ...(allow ? { allow } : {}),
      ...(prepared.connectionPolicy ? { policy: prepared.connectionPolicy } : {}),
      ...(input.projectId ? { projectId: input.projectId } : {}),
    },
    input.adminToken,
  );
  if (r.status !== 201) throw new CliError(`the gateway refused the connection: ${errorText(r.json)}`, r.status === 401 ? EXIT.invalid : EXIT.unavailable);
  return { id: connectionId, provider: input.provider, origin, ...(prepared.connectionPolicy ? { connectionPolicy: prepared.connectionPolicy } : {}) };
}

export async function createKey(serverUrl: string, adminToken: string, connectionId: string): Promise<{ id: string; key: string }> {
  const r = await http('POST', `${serverUrl}/admin/v1/keys`, { connectionId }, adminToken);
  if (r.status !== 201) throw new CliError(`could not create a key: ${errorText(r.json)}`, r.status === 404 ? EXIT.invalid : EXIT.unavailable);
  return { id: r.json.id as string, key: r.json.key as string };
}
