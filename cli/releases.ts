/**
 * Upgrades and rotation, from the owner's machine:
 *  - `connections approve-release <manifest>`: verify the release manifest with the pinned release
 *    key, then send every shareholder of each connection an owner-signed policy update that adds
 *    the release's PCR0/1/2 (the old release keeps serving until cut-over); `--withdraw` removes
 *    it, stopping further releases to that image.
 *  - `connect --rotate <connection>`: seal the new upstream key as a new connection, move every
 *    key of the old connection onto it, then have the shareholders delete the old shares — no
 *    moment without a working connection.
 */
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  canonicalJson,
  checkLogExtends,
  fromHex,
  signOwnerMessage,
  verifyAuditChain,
  verifyLogHead,
  verifyReleaseManifest,
  type LogHead,
  type LogProblem,
  type SignedLogHead,
} from '../protocol/index.ts';
import { configDir, effectiveConfig, readEnrollments, type PinnedShareholder } from './config.ts';
import { CliError, EXIT } from './errors.ts';
import { adminRequest, shareholderError } from './http.ts';
import { compareShareholderLogs, type LogEvent } from './log-compare.ts';
import { green, printJson, type Io } from './output.ts';

type PcrSetLike = Record<string, string>;

interface PolicyView {
  policy: { allow: PcrSetLike[]; allowDebug?: boolean };
  maxReleasesPerMinute: number;
  wideningDelayMs?: number;
  /** A widening waiting out the owner's delay (SPEC.md §8.3): null when none. */
  pending?: { policy: { allow: PcrSetLike[]; allowDebug?: boolean }; sha256: string; effectiveAt: string } | null;
}

async function shareholderRequest(sh: PinnedShareholder, method: string, path: string, body?: unknown): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await fetch(`${sh.url}${path}`, {
    method,
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    signal: AbortSignal.timeout(15_000),
  }).catch((e: Error) => {
    throw new CliError(`cannot reach shareholder ${sh.id} at ${sh.url}: ${e.message}`, EXIT.unavailable);
  });
  return { status: res.status, json: (await res.json().catch(() => ({}))) as Record<string, unknown> };
}

function owner() {
  const c = effectiveConfig();
  if (!c.adminToken) throw new CliError(`not logged in to ${c.serverUrl}: run \`securegate login\``, EXIT.invalid);
  if (!c.ownerSecretKey) throw new CliError('no owner key in this config: only the machine that connected a key can change its policy', EXIT.invalid);
  if (!c.shareholders?.length) throw new CliError('no pinned shareholders in this config', EXIT.invalid);
  return c as typeof c & { adminToken: string; ownerSecretKey: string; shareholders: PinnedShareholder[] };
}

const MESSAGE_ROUTE: Record<'policy_update' | 'widening_cancel' | 'delete', (id: string) => [method: string, path: string]> = {
  policy_update: (id) => ['PUT', `/v1/shares/${id}/policy`],
  widening_cancel: (id) => ['POST', `/v1/shares/${id}/policy/cancel`],
  delete: (id) => ['DELETE', `/v1/shares/${id}`],
};

/**
 * Sends one owner-signed message of `type` for `connectionId` to every pinned shareholder
 * (`fields` per shareholder when given as a function); returns each shareholder's answer.
 */
export async function toEveryShareholder(
  shareholders: PinnedShareholder[],
  ownerSecretKey: string,
  connectionId: string,
  type: keyof typeof MESSAGE_ROUTE,
  fields: Record<string, unknown> | ((sh: PinnedShareholder) => Record<string, unknown>),
): Promise<Array<Record<string, unknown>>> {
  const issuedAt = Date.now();
  const [method, path] = MESSAGE_ROUTE[type](connectionId);
  return Promise.all(
    shareholders.map(async (sh) => {
      const own = typeof fields === 'function' ? fields(sh) : fields;
      const signed = signOwnerMessage(fromHex(ownerSecretKey), { type, connectionId, shareholderId: sh.id, issuedAt, ...(own as Record<string, never>) });
      const r = await shareholderRequest(sh, method, path, { signed });
      if (r.status !== 200) throw shareholderError(sh.id, `${type} for ${connectionId}`, r);
      return r.json;
    }),
  );
}

/** Every pinned shareholder's view of a connection's PCR policy; undefined if any holds no share. */
async function policyViews(shareholders: PinnedShareholder[], id: string): Promise<PolicyView[] | undefined> {
  const views = await Promise.all(shareholders.map((sh) => shareholderRequest(sh, 'GET', `/v1/shares/${id}/policy`)));
  if (views.some((v) => v.status === 404)) return undefined; // not enrolled with these shareholders (another owner's)
  const bad = views.findIndex((v) => v.status !== 200);
  if (bad >= 0) throw shareholderError(shareholders[bad]!.id, `the policy of ${id}`, views[bad]!);
  return views.map((v) => v.json as unknown as PolicyView);
}

export async function approveRelease(manifestPath: string, options: { releaseKey: string; connection?: string[]; withdraw?: boolean; json?: boolean }, io: Io): Promise<number> {
  const c = owner();
  if (!/^[0-9a-fA-F]{64}$/.test(options.releaseKey ?? '')) throw new CliError('--release-key takes the 64-hex-digit release public key', EXIT.usage);
  let manifest;
  try {
    manifest = verifyReleaseManifest(JSON.parse(await readFile(manifestPath, 'utf8')), fromHex(options.releaseKey.toLowerCase()));
  } catch (e) {
    throw new CliError(`the manifest does not verify: ${(e as Error).message}`, EXIT.invalid);
  }
  if (manifest.nsm === 'dev' && !c.dev) throw new CliError('this is a development release manifest; it is approved only against a dev stack', EXIT.invalid);
  const wanted: PcrSetLike = { ...manifest.pcrs };
  const ids = options.connection?.length ? options.connection : ((await adminRequest(c.serverUrl, c.adminToken, 'GET', '/connections')) as Array<{ id: string }>).map((x) => x.id);
  const results: Array<{ connectionId: string; sets: number; pendingUntil: string | null }> = [];
  for (const id of ids) {
    // Every shareholder must hold the same policy (and the same pending widening); refuse to act on a split.
    const views = await policyViews(c.shareholders, id);
    if (!views) continue;
    const policies = views.map((v) => canonicalJson({ policy: v.policy, pending: v.pending?.policy ?? null } as never));
    if (new Set(policies).size !== 1) throw new CliError(`shareholders disagree on the policy of ${id}; fix that first`, EXIT.invalid);
    // A widening still pending is built on, not dropped: the new update carries it (and, being a
    // widening itself, starts the owner's delay again — never shortens it).
    const current = views[0]!.pending?.policy ?? views[0]!.policy;
    // The release names the image (PCR0/1/2); whose enclave may run it (PCR3 role, PCR8 signing
    // certificate, PCR4 instance) stays what the owner pinned: each binding already in the policy
    // is carried over to the new image, so approving a release never drops an owner binding.
    const bindings = [...new Map(current.allow.map((s) => {
      const b = Object.fromEntries(Object.entries(s).filter(([i]) => !['0', '1', '2'].includes(i)));
      return [canonicalJson(b as never), b] as const;
    })).values()];
    const additions = (bindings.length ? bindings : [{}]).map((b) => ({ ...wanted, ...b }));
    const same = (a: PcrSetLike, b: PcrSetLike) => canonicalJson(a as never) === canonicalJson(b as never);
    // Withdrawing removes every allowed set this release's image satisfies.
    const imageOf = (s: PcrSetLike) => ['0', '1', '2'].every((i) => s[i] === undefined || s[i] === wanted[i]) && s['0'] === wanted['0'];
    const allow = options.withdraw
      ? current.allow.filter((s) => !imageOf(s))
      : [...current.allow, ...additions.filter((a) => !current.allow.some((s) => same(s, a)))];
    if (allow.length === 0) throw new CliError(`withdrawing release ${manifest.release} would leave ${id} with no approved enclave; approve the next release first`, EXIT.invalid);
    if (canonicalJson(allow as never) === canonicalJson(current.allow as never)) {
      results.push({ connectionId: id, sets: allow.length, pendingUntil: views[0]!.pending?.effectiveAt ?? null });
      continue;
    }
    const answers = await toEveryShareholder(c.shareholders, c.ownerSecretKey, id, 'policy_update', { policy: { ...current, allow } });
    const pending = answers.map((a) => (a.pending as { effectiveAt?: string } | null | undefined)?.effectiveAt ?? null);
    results.push({ connectionId: id, sets: allow.length, pendingUntil: pending.filter((x): x is string => x !== null).sort().at(-1) ?? null });
  }
  if (options.json) printJson(io, { release: manifest.release, withdrawn: options.withdraw ?? false, connections: results });
  else {
    io.out(`${green(io, '✔')} ${options.withdraw ? 'withdrew' : 'approved'} release ${manifest.release} for ${results.length} connection(s)\n`);
    for (const r of results.filter((x) => x.pendingUntil)) {
      io.out(`  ${r.connectionId}: the new enclave is admitted at ${r.pendingUntil} (your widening delay); \`securegate connections cancel-widening ${r.connectionId}\` stops it\n`);
    }
  }
  return 0;
}

/**
 * `connections pending`: the widenings waiting out their delay, per connection and shareholder —
 * what the owner reviews when the host alerts `policy_widening_pending`.
 */
export async function pendingWidenings(options: { connection?: string[]; json?: boolean }, io: Io): Promise<number> {
  const c = owner();
  const ids = options.connection?.length ? options.connection : ((await adminRequest(c.serverUrl, c.adminToken, 'GET', '/connections')) as Array<{ id: string }>).map((x) => x.id);
  const rows: Array<{ connectionId: string; shareholder: string; effectiveAt: string; sha256: string; adds: PcrSetLike[] }> = [];
  for (const id of ids) {
    const views = await policyViews(c.shareholders, id);
    views?.forEach((v, i) => {
      if (!v.pending) return;
      const have = new Set(v.policy.allow.map((s) => canonicalJson(s as never)));
      rows.push({ connectionId: id, shareholder: c.shareholders[i]!.id, effectiveAt: v.pending.effectiveAt, sha256: v.pending.sha256, adds: v.pending.policy.allow.filter((s) => !have.has(canonicalJson(s as never))) });
    });
  }
  if (options.json) printJson(io, rows);
  else if (rows.length === 0) io.out('no pending widenings\n');
  else for (const r of rows) io.out(`${r.connectionId} at ${r.shareholder}: admits ${r.adds.map((s) => `PCR0 ${String(s['0']).slice(0, 16)}…`).join(', ') || 'debug mode'} from ${r.effectiveAt}\n`);
  return 0;
}

/** `connections cancel-widening <connection>`: an owner-signed cancel of the pending widening at every shareholder. */
export async function cancelWidening(connectionId: string, options: { json?: boolean }, io: Io): Promise<number> {
  const c = owner();
  const views = await policyViews(c.shareholders, connectionId);
  if (!views) throw new CliError(`${connectionId} is not enrolled with your pinned shareholders`, EXIT.invalid);
  const holders = c.shareholders.filter((_, i) => views[i]!.pending);
  if (holders.length === 0) throw new CliError(`${connectionId} has no pending widening (already in effect, or never made)`, EXIT.invalid);
  // Each shareholder names its own pending widening by the hash it logged (each got its own signed update).
  const sha = new Map(c.shareholders.map((sh, i) => [sh.id, views[i]!.pending?.sha256]));
  await toEveryShareholder(holders, c.ownerSecretKey, connectionId, 'widening_cancel', (sh) => ({ wideningSha256: sha.get(sh.id)! }));
  if (options.json) printJson(io, { connectionId, cancelledAt: holders.map((h) => h.id) });
  else io.out(`${green(io, '✔')} cancelled the pending widening of ${connectionId} at ${holders.map((h) => h.id).join(', ')}\n`);
  return 0;
}

/** `connect --rotate`: the new key becomes a new connection; keys move; old shares are deleted. */
export async function rotateConnection(
  oldId: string,
  connectNew: (old: { provider: string; origin: string; name: string; projectId: string }) => Promise<{ id: string }>,
  options: { json?: boolean },
  io: Io,
): Promise<number> {
  const c = owner();
  const all = (await adminRequest(c.serverUrl, c.adminToken, 'GET', '/connections')) as Array<{ id: string; provider: string; origin: string; name: string; projectId: string }>;
  const old = all.find((x) => x.id === oldId);
  if (!old) throw new CliError(`no connection ${oldId}`, EXIT.invalid);
  const created = await connectNew(old);
  const moved = (await adminRequest(c.serverUrl, c.adminToken, 'POST', `/connections/${oldId}/rotate`, { to: created.id })) as { moved: number };
  await toEveryShareholder(c.shareholders, c.ownerSecretKey, oldId, 'delete', {});
  if (options.json) printJson(io, { from: oldId, to: created.id, keysMoved: moved.moved });
  else io.out(`${green(io, '✔')} rotated ${oldId} → ${created.id}: ${moved.moved} key(s) moved, old shares deleted; SG_ keys are unchanged\n`);
  return 0;
}

interface AuditEntryView {
  seq: number;
  at: string;
  prevHash: string;
  hash: string;
  event: { action: string; outcome: string; connectionId?: string; pcrs?: Record<string, string>; policy?: { allow: PcrSetLike[] }; narrowedNow?: { allow: PcrSetLike[] }; moduleId?: string; code?: string };
}

/** What `attest audit` remembers per shareholder: its log key and the last head it verified. */
interface RememberedHead {
  logPublicKey: string;
  signed: SignedLogHead;
  verifiedAt: string;
}

const HEADS_FILE = 'audit-heads.json';

function readHeads(): Record<string, RememberedHead> {
  const path = join(configDir(), HEADS_FILE);
  return existsSync(path) ? (JSON.parse(readFileSync(path, 'utf8')) as Record<string, RememberedHead>) : {};
}

function writeHeads(heads: Record<string, RememberedHead>): void {
  const dir = configDir();
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const path = join(dir, HEADS_FILE);
  writeFileSync(path, `${JSON.stringify(heads, null, 2)}\n`, { mode: 0o600 });
  chmodSync(path, 0o600);
}

type LogVerdict = 'first_use' | 'extends' | LogProblem | 'head_signature_invalid' | 'log_key_changed' | 'head_unavailable';

/**
 * The shareholder's signed head, checked against what this machine saw before: the log key must
 * be the one remembered (trust on first use, or `logPublicKey` pinned in the config), the chain
 * must reach the head, and the log must extend the last head verified here — a shorter log
 * (truncated) or a different entry at that seq (rewritten, forked) is a loud failure, and the
 * remembered head is then kept as the evidence, never replaced.
 */
function checkSignedHead(
  sh: PinnedShareholder & { logPublicKey?: string },
  served: { status: number; json: unknown },
  entries: AuditEntryView[],
  remembered: RememberedHead | undefined,
): { verdict: LogVerdict; message: string; head?: LogHead; accept?: RememberedHead } {
  if (served.status !== 200) return { verdict: 'head_unavailable', message: `no signed log head (HTTP ${served.status})` };
  const signed = served.json as SignedLogHead;
  const pinned = sh.logPublicKey ?? remembered?.logPublicKey;
  if (pinned !== undefined && signed?.publicKey !== pinned) {
    return { verdict: 'log_key_changed', message: `the log is now signed by ${String(signed?.publicKey).slice(0, 16)}…, not the key ${pinned.slice(0, 16)}… seen before` };
  }
  let head: LogHead;
  try {
    head = verifyLogHead(signed, pinned === undefined ? undefined : fromHex(pinned));
  } catch {
    return { verdict: 'head_signature_invalid', message: 'the log head does not verify with the shareholder log key' };
  }
  if (head.shareholderId !== sh.id) return { verdict: 'head_signature_invalid', message: `the log head is signed for ${head.shareholderId}, not ${sh.id}` };
  const check = checkLogExtends(entries, head, remembered?.signed.head);
  if (!check.ok) return { verdict: check.problem, message: check.message, head };
  return {
    verdict: remembered ? 'extends' : 'first_use',
    message: remembered ? `extends the head seen ${remembered.verifiedAt} (entry ${remembered.signed.head.seq})` : `first use: log key ${signed.publicKey.slice(0, 16)}… remembered`,
    head,
    accept: { logPublicKey: signed.publicKey, signed, verifiedAt: new Date().toISOString() },
  };
}

/**
 * `attest audit`: reads every pinned shareholder's transparency log, checks its hash chain up to
 * the shareholder's signed head, that it extends the head this machine verified last time (kept
 * in the config dir), and replays each connection's policy history to check that every release
 * went to an enclave whose PCRs were approved at that moment; then compares the shareholders'
 * logs with each other (cli/log-compare.ts): a policy event only some logged, or a release count
 * far beyond the others', fails the audit and is said plainly.
 */
export async function attestAudit(options: { connection?: string; json?: boolean }, io: Io): Promise<number> {
  const c = effectiveConfig();
  if (!c.shareholders?.length) throw new CliError('no pinned shareholders in this config', EXIT.invalid);
  const heads = readHeads();
  let headsChanged = false;
  const logs = new Map<string, LogEvent[]>();
  const report: Array<{
    shareholder: string;
    entries: number;
    chainIntact: boolean;
    releases: number;
    unapproved: Array<{ seq: number; connectionId: string; moduleId?: string }>;
    log: { verdict: LogVerdict; ok: boolean; message: string; head: { seq: number; hash: string } | null; previous: { seq: number; hash: string } | null };
  }> = [];
  for (const sh of c.shareholders) {
    // The head first: entries appended meanwhile are simply beyond it.
    const served = await shareholderRequest(sh, 'GET', '/v1/audit/head');
    const entries: AuditEntryView[] = [];
    for (let after = 0; ; ) {
      const r = await shareholderRequest(sh, 'GET', `/v1/audit?after=${after}&limit=1000`);
      if (r.status !== 200) throw new CliError(`shareholder ${sh.id} did not return its audit log (${r.status})`, EXIT.unavailable);
      const page = (r.json as { entries: AuditEntryView[] }).entries;
      entries.push(...page);
      if (page.length < 1000) break;
      after = page.at(-1)!.seq;
    }
    const broken = verifyAuditChain(entries);
    // Compared across shareholders only as far as this one's log verified.
    if (broken === undefined) logs.set(sh.id, entries.map((e) => e.event));
    const remembered = heads[sh.id];
    const log = checkSignedHead(sh, served, entries, remembered);
    if (log.accept) {
      heads[sh.id] = log.accept;
      headsChanged = true;
    }
    const policies = new Map<string, PcrSetLike[]>();
    const unapproved: Array<{ seq: number; connectionId: string; moduleId?: string }> = [];
    let releases = 0;
    for (const e of entries) {
      const id = e.event.connectionId;
      if (!id || (options.connection && id !== options.connection)) continue;
      // The policy in force: enrolled, updated, a widening's removals (at once) and the widening itself once in effect.
      if ((e.event.action === 'enroll' && e.event.outcome === 'enrolled') || e.event.outcome === 'policy_updated' || e.event.outcome === 'policy_widened') policies.set(id, e.event.policy?.allow ?? []);
      if (e.event.outcome === 'widening_pending' && e.event.narrowedNow) policies.set(id, e.event.narrowedNow.allow);
      if (e.event.outcome === 'released') {
        releases++;
        const pcrs = e.event.pcrs ?? {};
        const approved = (policies.get(id) ?? []).some((set) => Object.entries(set).every(([i, v]) => pcrs[i] === v));
        if (!approved) unapproved.push({ seq: e.seq, connectionId: id, ...(e.event.moduleId ? { moduleId: e.event.moduleId } : {}) });
      }
    }
    report.push({
      shareholder: sh.id,
      entries: entries.length,
      chainIntact: broken === undefined,
      releases,
      unapproved,
      log: {
        verdict: log.verdict,
        ok: log.verdict === 'first_use' || log.verdict === 'extends',
        message: log.message,
        head: log.head ? { seq: log.head.seq, hash: log.head.hash } : null,
        previous: remembered ? { seq: remembered.signed.head.seq, hash: remembered.signed.head.hash } : null,
      },
    });
  }
  if (headsChanged) writeHeads(heads);
  const disagreements = compareShareholderLogs(logs, options.connection, new Map(Object.entries(readEnrollments())));
  const ok = report.every((r) => r.chainIntact && r.unapproved.length === 0 && r.log.ok) && disagreements.every((d) => d.severity !== 'failure');
  if (options.json) printJson(io, { ok, shareholders: report, disagreements });
  else {
    for (const r of report) {
      const good = r.chainIntact && r.unapproved.length === 0 && r.log.ok;
      io.out(`${good ? green(io, '✔') : '✘'} ${r.shareholder}: ${r.entries} entries, chain ${r.chainIntact ? 'intact' : 'BROKEN'}, ${r.releases} releases, ${r.unapproved.length} to unapproved PCRs; log ${r.log.message}\n`);
    }
    if (disagreements.length === 0) io.out(`${green(io, '✔')} the shareholders' logs agree on every connection's enrollments, policies and releases\n`);
    for (const d of disagreements) io.out(`${d.severity === 'failure' ? '✘' : '!'} ${d.connectionId}: ${d.message}\n`);
  }
  // Truncation, rewrites and key changes are never only a line in a report.
  for (const r of report.filter((x) => !x.log.ok)) {
    io.err(`securegate attest audit: ✘ ${r.shareholder}: LOG ${r.log.verdict.toUpperCase().replace(/_/g, ' ')} — ${r.log.message}. The last verified head is kept in ${join(configDir(), HEADS_FILE)} as evidence.\n`);
  }
  return ok ? 0 : 1;
}
