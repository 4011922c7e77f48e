/**
 * `securegate usage --verify` (protocol/SPEC.md §10.2): compares what the host recorded per
 * connection and UTC day with the enclave's signed usage receipts and the shareholders' lease
 * logs, and says plainly where they disagree. Nothing the host sends is trusted: each receipt key
 * must be named by an attestation document that verifies to the pinned root (and the expected
 * PCRs), each receipt must verify under it, the chain of receipts must have no gap or duplicate up
 * to the head the running enclave signs over this machine's nonce, and the lease logs are read
 * straight from the pinned shareholders (their hash chains checked).
 */
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { awsNitroRoot, decodeCoseSign1, loadRoot, parseAttestationPayload, verifyAttestation, type PinnedRoot } from '../attestation/index.ts';
import {
  checkedHead,
  describeFinding,
  receiptKeyFromUserData,
  usageRows,
  verifyAuditChain,
  verifyUsage,
  type SignedReceiptHead,
  type SignedUsageReceipt,
  type UsageFinding,
  type UsageRow,
} from '../protocol/index.ts';
import { effectiveConfig, type PinnedShareholder } from './config.ts';
import { CliError, EXIT } from './errors.ts';
import { adminRequest, http } from './http.ts';
import { green, printJson, red, type Io } from './output.ts';

const DAY_MS = 86_400_000;

export interface UsageVerifyInput {
  serverUrl: string;
  adminToken: string;
  shareholders: PinnedShareholder[];
  threshold: number;
  roots: PinnedRoot[];
  /** PCR index → hex that every attestation document must carry (e.g. the approved release's PCR0). */
  expectPcrs?: Record<string, string>;
  from: number;
  to: number;
  connection?: string;
}

export interface UsageVerifyReport {
  days: { from: number; to: number };
  findings: Array<UsageFinding & { text: string }>;
  /** Per connection and day: the host's totals, the enclaves' newest receipts summed, releases logged. */
  rows: UsageRow[];
  enclaveKeys: Array<{ enclaveKey: string; attested: boolean; reason?: string }>;
}

interface Evidence {
  receipts: SignedUsageReceipt[];
  attestations: Record<string, string>;
  host: Array<{ connectionId: string; day: number; requests: number; tokens: number }>;
  head: SignedReceiptHead | null;
}

/** The receipt key a stored attestation document vouches for, verified at the document's own time. */
function attestedKey(documentB64: string, roots: PinnedRoot[], expectPcrs: Record<string, string> | undefined): string {
  const bytes = new Uint8Array(Buffer.from(documentB64, 'base64'));
  const at = new Date(parseAttestationPayload(decodeCoseSign1(bytes).payload).timestamp);
  const doc = verifyAttestation(bytes, { now: at, roots });
  for (const [i, hex] of Object.entries(expectPcrs ?? {})) {
    const got = doc.pcrs.get(Number(i));
    if (!got || Buffer.from(got).toString('hex') !== hex.toLowerCase()) throw new Error(`PCR${i} is not the expected value`);
  }
  return receiptKeyFromUserData(doc.userData);
}

/** Releases per connection and UTC day in every pinned shareholder's log (chain checked). */
async function leaseLog(shareholders: PinnedShareholder[], connection: string | undefined): Promise<Array<{ connectionId: string; day: number; releases: number; enclaveKey?: string }>> {
  const counts = new Map<string, { connectionId: string; day: number; releases: number; enclaveKey?: string }>();
  for (const sh of shareholders) {
    const entries: Array<{ seq: number; at: string; hash: string; prevHash: string; event: { action?: string; outcome?: string; connectionId?: string; receiptKey?: string } }> = [];
    for (let after = 0; ; ) {
      const r = await http('GET', `${sh.url}/v1/audit?after=${after}&limit=1000`, undefined);
      if (r.status !== 200) throw new CliError(`shareholder ${sh.id} did not return its audit log (${r.status})`, EXIT.unavailable);
      const page = (r.json as { entries: typeof entries }).entries;
      entries.push(...page);
      if (page.length < 1000) break;
      after = page.at(-1)!.seq;
    }
    const broken = verifyAuditChain(entries);
    if (broken !== undefined) throw new CliError(`shareholder ${sh.id}'s audit log is broken at entry ${broken}: run \`securegate attest audit\``, EXIT.invalid);
    for (const e of entries) {
      const id = e.event.connectionId;
      if (e.event.action !== 'release' || e.event.outcome !== 'released' || !id || (connection && id !== connection)) continue;
      const day = Math.floor(Date.parse(e.at) / DAY_MS);
      const enclaveKey = typeof e.event.receiptKey === 'string' ? e.event.receiptKey : undefined;
      const k = `${id}\u0000${day}\u0000${enclaveKey ?? ''}`;
      const c = counts.get(k) ?? { connectionId: id, day, releases: 0, ...(enclaveKey ? { enclaveKey } : {}) };
      c.releases++;
      counts.set(k, c);
    }
  }
  return [...counts.values()];
}

export async function verifyUsageReport(input: UsageVerifyInput): Promise<UsageVerifyReport> {
  const nonce = randomBytes(16).toString('hex');
  // The connections the enclave's signed head must cover (a connection the host hides from this
  // list still shows in the shareholders' lease logs).
  const named = input.connection ? [input.connection] : ((await adminRequest(input.serverUrl, input.adminToken, 'GET', '/connections')) as Array<{ id: string }>).map((c) => c.id);
  const q = new URLSearchParams({ from: String(input.from - 1), to: String(input.to), nonce, connections: named.join(',') });
  if (input.connection) q.set('connection', input.connection);
  const evidence = (await adminRequest(input.serverUrl, input.adminToken, 'GET', `/receipts?${q}`)) as Evidence;
  const attestedKeys = new Set<string>();
  const enclaveKeys: UsageVerifyReport['enclaveKeys'] = [];
  for (const key of new Set(evidence.receipts.map((r) => r.enclaveKey))) {
    const doc = evidence.attestations[key];
    try {
      if (!doc) throw new Error('the host keeps no attestation document for this key');
      if (attestedKey(doc, input.roots, input.expectPcrs) !== key) throw new Error('the document names another receipt key');
      attestedKeys.add(key);
      enclaveKeys.push({ enclaveKey: key, attested: true });
    } catch (e) {
      enclaveKeys.push({ enclaveKey: key, attested: false, reason: (e as Error).message });
    }
  }
  // The running enclave's head over our nonce: a hidden tail of its chain shows as missing; a
  // missing or failing head is the head_unverified finding (the host must not decide that).
  const { heads, problem: headProblem } = checkedHead(evidence.head, nonce, named, (key) => {
    const doc = evidence.attestations[key];
    if (!doc || attestedKey(doc, input.roots, input.expectPcrs) !== key) return false;
    attestedKeys.add(key);
    return true;
  });
  const releases = await leaseLog(input.shareholders, input.connection);
  const inRange = (day: number) => day >= input.from && day <= input.to;
  const findings = verifyUsage({
    receipts: evidence.receipts,
    attestedKeys,
    heads,
    host: evidence.host,
    leaseLog: { threshold: input.threshold, releases },
  })
    // The day before `from` was fetched only so that a lease crossing midnight is accounted for.
    .filter((f) => !('day' in f) || f.day === null || inRange(f.day))
    .concat(headProblem !== undefined ? [{ kind: 'head_unverified', reason: headProblem }] : [])
    .map((f) => ({ ...f, text: describeFinding(f) }));
  const rows = usageRows(evidence.host, evidence.receipts, { day: inRange, enclaveKey: (key) => attestedKeys.has(key) }, releases);
  return { days: { from: input.from, to: input.to }, findings, rows: [...rows.values()].sort((a, b) => a.day - b.day || a.connectionId.localeCompare(b.connectionId)), enclaveKeys };
}

export async function usageVerifyCommand(o: { connection?: string; days?: string; root?: string; expectPcr?: string[]; threshold?: string; json?: boolean }, io: Io): Promise<number> {
  const c = effectiveConfig();
  if (!c.adminToken) throw new CliError(`not logged in to ${c.serverUrl}: run \`securegate login\``, EXIT.invalid);
  if (!c.shareholders?.length) throw new CliError('no pinned shareholders in this config: the lease logs cannot be read', EXIT.invalid);
  const threshold = Number(o.threshold ?? c.threshold);
  if (!Number.isInteger(threshold) || threshold < 2 || threshold > c.shareholders.length) throw new CliError('cannot tell the threshold t: pass --threshold', EXIT.usage);
  const days = Number(o.days ?? 1);
  if (!Number.isInteger(days) || days < 1 || days > 92) throw new CliError('--days takes 1..92', EXIT.usage);
  const expectPcrs: Record<string, string> = {};
  for (const e of o.expectPcr ?? []) {
    const m = /^(\d{1,2})=([0-9a-fA-F]{96})$/.exec(e);
    if (!m) throw new CliError('--expect-pcr takes <index>=<96 hex digits>', EXIT.usage);
    expectPcrs[m[1]!] = m[2]!;
  }
  const roots = o.root ? [loadRoot(o.root, await readFile(o.root))] : [awsNitroRoot()];
  const to = Math.floor(Date.now() / DAY_MS);
  const report = await verifyUsageReport({
    serverUrl: c.serverUrl,
    adminToken: c.adminToken,
    shareholders: c.shareholders,
    threshold,
    roots,
    expectPcrs,
    from: to - days + 1,
    to,
    ...(o.connection ? { connection: o.connection } : {}),
  });
  if (o.json) printJson(io, { ok: report.findings.length === 0, ...report });
  else {
    io.out(`${'DAY'.padEnd(12)}${'CONNECTION'.padEnd(30)}${'HOST REQS'.padStart(10)}${'RECEIPTS'.padStart(10)}${'HOST TOK'.padStart(12)}${'RCPT TOK'.padStart(12)}${'RELEASES'.padStart(10)}\n`);
    for (const r of report.rows) {
      io.out(`${new Date(r.day * DAY_MS).toISOString().slice(0, 10).padEnd(12)}${r.connectionId.slice(0, 29).padEnd(30)}${String(r.hostRequests).padStart(10)}${String(r.receiptRequests).padStart(10)}${String(r.hostTokens).padStart(12)}${String(r.receiptTokens).padStart(12)}${String(r.releases).padStart(10)}\n`);
    }
    if (report.findings.length === 0) io.out(`${green(io, '✔')} the host's records, the enclave's signed receipts and the shareholders' lease logs agree\n`);
    for (const f of report.findings) io.out(`${red(io, '✘')} ${f.text}\n`);
  }
  return report.findings.length === 0 ? EXIT.ok : EXIT.invalid;
}
