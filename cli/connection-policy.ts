/**
 * `securegate connections policy <connection> …`: change a connection's owner-signed policy
 * (protocol/SPEC.md §9.1) — operations, models, daily requests / tokens / dollars, lease quota.
 * The owner signs version v+1 of the policy (v = the newest any pinned shareholder or the host
 * holds, each checked against this machine's owner key) and sends it straight to every pinned
 * shareholder, never through the host. Each shareholder sends it with every lease it grants, so
 * the enclave enforces it from its next lease whatever the host does. Succeeds only when at least
 * n − t + 1 shareholders took it: then any t shareholders an enclave can reach include one that
 * sends the update.
 */
import {
  connectionPolicySha256,
  fromHex,
  leaseLimitFor,
  ownerPublicKey,
  policyVersion,
  signConnectionPolicy,
  toHex,
  verifyConnectionPolicy,
  type ConnectionPolicy,
  type SignedOwnerMessage,
} from '../protocol/index.ts';
import { effectiveConfig, type PinnedShareholder } from './config.ts';
import { CliError, EXIT } from './errors.ts';
import { adminRequest, errorText, http } from './http.ts';
import { green, printJson, red, type Io } from './output.ts';

/** What the command changes; `null` lifts a limit, `undefined` keeps it. */
export interface PolicyChanges {
  operations?: string[];
  models?: string[] | null;
  dailyRequests?: number | null;
  dailyTokens?: number | null;
  dailyMicroUsd?: number | null;
  leaseRequests?: number | null;
  leaseTokens?: number | null;
}

export interface PolicyUpdateInput {
  serverUrl: string;
  adminToken: string;
  ownerSecretKey: Uint8Array;
  shareholders: PinnedShareholder[];
  connectionId: string;
  changes: PolicyChanges;
  /**
   * Threshold t (`--threshold`, else the CLI config's). Never the host's figure: t sizes the lease
   * limit k = ⌊t·L/n⌋, so a host claiming a larger t would get a larger k. A newer signed version
   * names it (`quorum.t`); the two must agree.
   */
  threshold?: number;
  now?: number;
}

export interface PolicyUpdateResult {
  connectionId: string;
  version: number;
  sha256: string;
  policy: ConnectionPolicy;
  maxLeasesPerDay: number | null;
  accepted: string[];
  refused: Array<{ shareholder: string; reason: string }>;
}

/** The newest policy this owner signed for the connection, from the shareholders and the host; each checked against our key. */
async function currentPolicy(input: PolicyUpdateInput, ownerKey: string): Promise<{ signed: SignedOwnerMessage; policy: ConnectionPolicy }> {
  const candidates: SignedOwnerMessage[] = [];
  await Promise.all(
    input.shareholders.map(async (sh) => {
      const r = await http('GET', `${sh.url}/v1/shares/${encodeURIComponent(input.connectionId)}/connection-policy`, undefined).catch(() => undefined);
      if (r?.status === 200 && r.json.signed) candidates.push(r.json.signed as SignedOwnerMessage);
    }),
  );
  const hosted = (await adminRequest(input.serverUrl, input.adminToken, 'GET', `/connections/${encodeURIComponent(input.connectionId)}/policy`)) as { policy: SignedOwnerMessage | null };
  if (hosted.policy) candidates.push(hosted.policy);
  let best: { signed: SignedOwnerMessage; policy: ConnectionPolicy } | undefined;
  for (const signed of candidates) {
    if (signed.publicKey !== ownerKey) continue; // not ours: neither the host nor a shareholder can sign for us
    try {
      const { policy } = verifyConnectionPolicy(signed, input.connectionId);
      if (!best || policyVersion(policy) > policyVersion(best.policy)) best = { signed, policy };
    } catch {
      // a policy that does not verify is ignored, never used as a base
    }
  }
  if (!best) throw new CliError(`connection ${input.connectionId} has no connection policy signed by this machine's owner key (records sealed without one cannot gain one: connect again)`, EXIT.invalid);
  return best;
}

/** Applies `changes` to the policy: the fields the owner did not name stay as they were. */
export function changedPolicy(base: ConnectionPolicy, changes: PolicyChanges): Omit<ConnectionPolicy, 'version' | 'quorum' | 'issuedAt'> {
  const { version: _v, quorum: _q, issuedAt: _i, ...rest } = base;
  const next = structuredClone(rest);
  const set = <T extends object, K extends keyof T>(obj: T, key: K, value: T[K] | null | undefined) => {
    if (value === undefined) return;
    if (value === null) delete obj[key];
    else obj[key] = value;
  };
  if (changes.operations) next.operations = changes.operations;
  set(next, 'models', changes.models);
  set(next.ceiling, 'requests', changes.dailyRequests);
  set(next.ceiling, 'tokens', changes.dailyTokens);
  set(next.ceiling, 'microUsd', changes.dailyMicroUsd);
  if (changes.leaseRequests !== undefined || changes.leaseTokens !== undefined) {
    next.lease ??= {};
    set(next.lease, 'requests', changes.leaseRequests);
    set(next.lease, 'tokens', changes.leaseTokens);
    if (Object.keys(next.lease).length === 0) delete next.lease;
  }
  return next;
}

export async function updateConnectionPolicy(input: PolicyUpdateInput): Promise<PolicyUpdateResult> {
  const ownerKey = toHex(ownerPublicKey(input.ownerSecretKey));
  const n = input.shareholders.length;
  const base = await currentPolicy(input, ownerKey);
  // t only sizes the lease limit k (a larger t gives a larger k): from the owner's own records
  // only — a signed earlier version, or the owner's --threshold / config — never from the host.
  const signedT = base.policy.quorum?.t;
  if (signedT !== undefined && input.threshold !== undefined && signedT !== input.threshold) {
    throw new CliError(`version ${policyVersion(base.policy)} of this policy was signed with threshold ${signedT}, not ${input.threshold}`, EXIT.invalid);
  }
  const t = signedT ?? input.threshold;
  if (t === undefined || !Number.isInteger(t) || t < 2 || t > n) throw new CliError(`cannot tell the threshold t of ${input.connectionId} (2 ≤ t ≤ ${n} pinned shareholders): pass --threshold, the t you connected with`, EXIT.usage);
  const version = policyVersion(base.policy) + 1;
  const next = { ...changedPolicy(base.policy, input.changes), connectionId: input.connectionId, issuedAt: input.now ?? Date.now(), version, quorum: { n, t } };
  const k = leaseLimitFor(next, n, t);
  if (k === 0) throw new CliError('the lease quota is too large for the daily ceiling with this many shareholders: choose a smaller --lease-requests / --lease-tokens', EXIT.usage);
  const signed = signConnectionPolicy(input.ownerSecretKey, next);
  const accepted: string[] = [];
  const refused: Array<{ shareholder: string; reason: string }> = [];
  await Promise.all(
    input.shareholders.map(async (sh) => {
      const r = await http('PUT', `${sh.url}/v1/shares/${encodeURIComponent(input.connectionId)}/connection-policy`, { signed }).catch((e: Error) => ({ status: 0, json: { error: { code: 'unreachable', message: e.message } } }));
      if (r.status === 200) accepted.push(sh.id);
      else refused.push({ shareholder: sh.id, reason: errorText(r.json as Record<string, unknown>) });
    }),
  );
  const result: PolicyUpdateResult = { connectionId: input.connectionId, version, sha256: connectionPolicySha256(signed), policy: verifyConnectionPolicy(signed, input.connectionId).policy, maxLeasesPerDay: k ?? null, accepted: accepted.sort(), refused };
  if (accepted.length < n - t + 1) {
    throw Object.assign(
      new CliError(
        `only ${accepted.length} of ${n} shareholders took policy version ${version} (need ${n - t + 1}, so that any ${t} an enclave reaches include one that sends it): ${refused.map((r) => `${r.shareholder}: ${r.reason}`).join('; ')}`,
        EXIT.invalid,
      ),
      { result },
    );
  }
  return result;
}

const count = (flag: string, value: string | undefined): number | null | undefined => {
  if (value === undefined) return undefined;
  if (value === 'off') return null;
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(Number(value))) throw new CliError(`${flag} takes a whole number or off`, EXIT.usage);
  return Number(value);
};

/** Dollars as typed ("12.5") to integer micro-dollars, without floating-point rounding. */
export function dollarsToMicroUsd(value: string): number {
  const m = /^(\d{1,9})(?:\.(\d{1,6}))?$/.exec(value);
  if (!m) throw new CliError('--daily-dollars takes an amount like 25 or 12.50, or off', EXIT.usage);
  return Number(m[1]) * 1_000_000 + Number((m[2] ?? '').padEnd(6, '0'));
}

export interface PolicyCommandOptions {
  operations?: string;
  models?: string;
  dailyRequests?: string;
  dailyTokens?: string;
  dailyDollars?: string;
  leaseRequests?: string;
  leaseTokens?: string;
  threshold?: string;
  json?: boolean;
}

export function parsePolicyChanges(o: PolicyCommandOptions): PolicyChanges {
  const list = (v: string) => v.split(',').map((s) => s.trim()).filter(Boolean);
  const changes: PolicyChanges = {};
  if (o.operations !== undefined) changes.operations = list(o.operations);
  if (o.models !== undefined) changes.models = o.models === 'off' ? null : list(o.models);
  const dr = count('--daily-requests', o.dailyRequests);
  if (dr !== undefined) changes.dailyRequests = dr;
  const dt = count('--daily-tokens', o.dailyTokens);
  if (dt !== undefined) changes.dailyTokens = dt;
  if (o.dailyDollars !== undefined) changes.dailyMicroUsd = o.dailyDollars === 'off' ? null : dollarsToMicroUsd(o.dailyDollars);
  const lr = count('--lease-requests', o.leaseRequests);
  if (lr !== undefined) changes.leaseRequests = lr;
  const lt = count('--lease-tokens', o.leaseTokens);
  if (lt !== undefined) changes.leaseTokens = lt;
  if (Object.keys(changes).length === 0) throw new CliError('name at least one change: --models, --operations, --daily-requests, --daily-tokens, --daily-dollars, --lease-requests, --lease-tokens', EXIT.usage);
  return changes;
}

export async function connectionPolicyCommand(connectionId: string, o: PolicyCommandOptions, io: Io): Promise<number> {
  const changes = parsePolicyChanges(o);
  const c = effectiveConfig();
  if (!c.adminToken) throw new CliError(`not logged in to ${c.serverUrl}: run \`securegate login\``, EXIT.invalid);
  if (!c.ownerSecretKey) throw new CliError('no owner key in this config: only the machine that connected a key can change its policy', EXIT.invalid);
  if (!c.shareholders?.length) throw new CliError('no pinned shareholders in this config', EXIT.invalid);
  const t = o.threshold !== undefined ? Number(o.threshold) : c.threshold;
  let result: PolicyUpdateResult;
  try {
    result = await updateConnectionPolicy({
      serverUrl: c.serverUrl,
      adminToken: c.adminToken,
      ownerSecretKey: fromHex(c.ownerSecretKey),
      shareholders: c.shareholders,
      connectionId,
      changes,
      ...(t !== undefined ? { threshold: t } : {}),
    });
  } catch (e) {
    const partial = (e as { result?: PolicyUpdateResult }).result;
    if (partial && o.json) printJson(io, { ...partial, ok: false });
    throw e;
  }
  if (o.json) {
    printJson(io, { ...result, ok: true });
    return EXIT.ok;
  }
  io.out(`${green(io, '✔')} policy version ${result.version} of ${connectionId} sent to ${result.accepted.length} shareholder(s); enforced by the enclave from its next lease\n`);
  io.out(`  models: ${result.policy.models?.join(', ') ?? 'any'}  daily: ${JSON.stringify(result.policy.ceiling)}  lease limit k: ${result.maxLeasesPerDay ?? 'none'}\n`);
  for (const r of result.refused) io.out(`  ${red(io, '✘')} ${r.shareholder}: ${r.reason}\n`);
  return EXIT.ok;
}
