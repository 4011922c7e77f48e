/**
 * The owner's usage check (SPEC.md §10.2, `securegate usage --verify` and the dashboard's
 * `#/usage-verify`): the receipts the host stored, compared with themselves (chain, replays,
 * regressions), with the enclave's fresh head, with what the host recorded and with the
 * shareholders' release logs. Runs on the owner's machine, never in the enclave. Pure.
 */
import type { ReceiptHead, SignedReceiptHead, SignedUsageReceipt, UsageReceipt } from '../usage-receipt.ts';
import { verifyReceiptHead, verifyUsageReceipt } from '../usage-receipt-verify.ts';

export type UsageDisagreement =
  | { kind: 'under_reported'; connectionId: string; day: number; field: 'requests' | 'tokens' | 'microUsd'; host: number; enclave: number }
  | { kind: 'receipt_regressed'; connectionId: string; day: number; seq: number };

/**
 * What `usage --verify` reports for one enclave key: receipts must only grow (a host replaying an
 * older receipt, or dropping counts, shows as a regression), and the host's recorded totals for a
 * connection and day must be at least what the enclave's newest receipt says it served.
 * `receipts` must already be verified.
 */
export function compareUsage(
  receipts: UsageReceipt[],
  host: Array<{ connectionId: string; day: number; requests: number; tokens: number; microUsd?: number }>,
): UsageDisagreement[] {
  const out: UsageDisagreement[] = [];
  const newest = new Map<string, UsageReceipt>();
  for (const r of [...receipts].sort((a, b) => a.seq - b.seq)) {
    const id = `${r.connectionId}\u0000${r.day}`;
    const prev = newest.get(id);
    if (prev && (r.requests < prev.requests || r.tokens < prev.tokens || r.microUsd < prev.microUsd)) {
      out.push({ kind: 'receipt_regressed', connectionId: r.connectionId, day: r.day, seq: r.seq });
      continue;
    }
    newest.set(id, r);
  }
  for (const r of newest.values()) {
    const h = host.find((x) => x.connectionId === r.connectionId && x.day === r.day) ?? { requests: 0, tokens: 0, microUsd: 0 };
    for (const field of ['requests', 'tokens', 'microUsd'] as const) {
      const recorded = h[field] ?? 0;
      if (recorded < r[field] && !(field === 'microUsd' && h.microUsd === undefined)) {
        out.push({ kind: 'under_reported', connectionId: r.connectionId, day: r.day, field, host: recorded, enclave: r[field] });
      }
    }
  }
  return out;
}

/** Everything `usage --verify` compares; see `verifyUsage`. */
export interface UsageEvidence {
  /** The receipts as the host stored them: any order, possibly duplicated, tampered or missing. */
  receipts: SignedUsageReceipt[];
  /** Receipt keys that verified attestation documents vouch for (the caller verified them). */
  attestedKeys: ReadonlySet<string>;
  /** Fresh heads already verified against the verifier's nonce, per enclave key. */
  heads?: ReadonlyMap<string, ReceiptHead>;
  /** What the host recorded per connection and UTC day (its audit trail). */
  host: Array<{ connectionId: string; day: number; requests: number; tokens: number; microUsd?: number }>;
  /** Releases the shareholders' signed logs show per connection and UTC day (all shareholders summed). */
  leaseLog?: {
    threshold: number;
    /** `enclaveKey`: the receipt key the releasing shareholder read from the enclave's verified document, when it named one. */
    releases: Array<{ connectionId: string; day: number; releases: number; enclaveKey?: string }>;
  };
}

export type UsageFinding =
  | UsageDisagreement
  | { kind: 'signature_invalid'; enclaveKey: string; seq: number | null }
  | { kind: 'enclave_key_unattested'; enclaveKey: string }
  | { kind: 'receipt_replayed'; enclaveKey: string; seq: number }
  | { kind: 'receipts_missing'; enclaveKey: string; connectionId: string; day: number | null; fromSeq: number; toSeq: number }
  | { kind: 'leases_exceeded'; connectionId: string; day: number; enclaveLeases: number; leasesLogged: number }
  | { kind: 'leases_unaccounted'; connectionId: string; day: number; releases: number; enclaveKey?: string }
  /** No head of the running enclave verified over the verifier's nonce: the tail of its chain could not be checked. */
  | { kind: 'head_unverified'; reason: string };

/** One sentence per finding, for people: says which side disagrees with which and by how much. */
export function describeFinding(f: UsageFinding): string {
  switch (f.kind) {
    case 'under_reported':
      return `${f.connectionId} day ${f.day}: the host recorded ${f.host} ${f.field} but the enclave's signed receipts say ${f.enclave} — the host under-reports`;
    case 'receipt_regressed':
      return `${f.connectionId} day ${f.day}: receipt #${f.seq} counts less than an earlier one — counts were dropped or an old receipt replayed`;
    case 'signature_invalid':
      return `a stored receipt${f.seq !== null ? ` (#${f.seq})` : ''} of enclave ${f.enclaveKey.slice(0, 16)}… does not verify — it was edited after the enclave signed it`;
    case 'enclave_key_unattested':
      return `receipts signed by ${f.enclaveKey.slice(0, 16)}… are not vouched for by any verified attestation document — not from an attested enclave`;
    case 'receipt_replayed':
      return `receipt #${f.seq} of enclave ${f.enclaveKey.slice(0, 16)}… is stored more than once — a replay`;
    case 'receipts_missing':
      return `${f.connectionId}${f.day !== null ? ` day ${f.day}` : ''}: receipts of enclave ${f.enclaveKey.slice(0, 16)}… between #${f.fromSeq} and #${f.toSeq} are missing from the host's store — dropped`;
    case 'leases_exceeded':
      return `${f.connectionId} day ${f.day}: the enclave served under ${f.enclaveLeases} leases but the shareholders' logs account for at most ${f.leasesLogged}`;
    case 'head_unverified':
      return `the host did not relay a head of the running enclave signed over this check's nonce (${f.reason}) — receipts it dropped from the end of the chain cannot be ruled out`;
    case 'leases_unaccounted':
      return f.enclaveKey
        ? `${f.connectionId} day ${f.day}: the shareholders released ${f.releases} lease shares to enclave ${f.enclaveKey.slice(0, 16)}… but the host holds no receipt of that enclave for it — its receipts were dropped`
        : `${f.connectionId} day ${f.day}: the shareholders released ${f.releases} lease shares but the host shows no request and no receipt — hidden traffic`;
  }
}

/**
 * The whole comparison of `securegate usage --verify` (SPEC.md §10.2): receipts must verify, come
 * from attested keys, form a gapless, duplicate-free chain per enclave key up to its fresh head,
 * never count less than an earlier receipt; the host's totals per connection and day must be at
 * least the sum over enclaves of the newest receipts; and the leases the receipts were served
 * under must fit in what the shareholders logged (⌊releases / t⌋, the previous day's included for
 * a lease that crossed midnight), while logged releases with no request and no receipt at all are
 * named too. Pure.
 */
export function verifyUsage(e: UsageEvidence): UsageFinding[] {
  const out: UsageFinding[] = [];
  const byKey = new Map<string, UsageReceipt[]>();
  const unattested = new Set<string>();
  for (const signed of e.receipts) {
    const key = typeof signed?.enclaveKey === 'string' ? signed.enclaveKey : '';
    try {
      const r = verifyUsageReceipt(signed, key);
      if (!e.attestedKeys.has(key)) {
        if (!unattested.has(key)) out.push({ kind: 'enclave_key_unattested', enclaveKey: key });
        unattested.add(key);
        continue;
      }
      const list = byKey.get(key) ?? [];
      list.push(r);
      byKey.set(key, list);
    } catch {
      out.push({ kind: 'signature_invalid', enclaveKey: key, seq: typeof signed?.receipt?.seq === 'number' ? signed.receipt.seq : null });
    }
  }
  // A running enclave whose receipts were all dropped still has its head to compare with.
  for (const key of e.heads?.keys() ?? []) if (e.attestedKeys.has(key) && !byKey.has(key)) byKey.set(key, []);
  // Newest receipt per (enclave, connection, day), summed over enclaves per (connection, day).
  const totals = new Map<string, { connectionId: string; day: number; requests: number; tokens: number; microUsd: number; leases: Set<string> }>();
  for (const [key, list] of byKey) {
    list.sort((a, b) => a.seq - b.seq);
    const unique = list.filter((r, i) => {
      const dup = i > 0 && r.seq === list[i - 1]!.seq;
      if (dup) out.push({ kind: 'receipt_replayed', enclaveKey: key, seq: r.seq });
      return !dup;
    });
    // Per connection and day the receipts chain through prevSeq: a dropped one leaves a gap.
    const last = new Map<string, UsageReceipt>();
    for (const r of unique) {
      const id = `${r.connectionId}\u0000${r.day}`;
      const prev = last.get(id);
      if (r.prevSeq !== (prev?.seq ?? 0)) out.push({ kind: 'receipts_missing', enclaveKey: key, connectionId: r.connectionId, day: r.day, fromSeq: prev ? prev.seq + 1 : 1, toSeq: r.prevSeq });
      last.set(id, r);
    }
    // The tail: the running enclave's signed head names its newest receipt per connection.
    const head = e.heads?.get(key);
    for (const [connectionId, newestSeq] of Object.entries(head?.newest ?? {})) {
      const stored = Math.max(0, ...unique.filter((r) => r.connectionId === connectionId).map((r) => r.seq));
      if (newestSeq > stored) out.push({ kind: 'receipts_missing', enclaveKey: key, connectionId, day: null, fromSeq: stored + 1, toSeq: newestSeq });
    }
    out.push(...compareUsage(unique, []).filter((d) => d.kind === 'receipt_regressed'));
    const newest = new Map<string, UsageReceipt>();
    for (const r of unique) {
      const id = `${r.connectionId}\u0000${r.day}`;
      const n = newest.get(id);
      if (!n || (r.requests >= n.requests && r.tokens >= n.tokens && r.microUsd >= n.microUsd)) newest.set(id, r);
      const t = totals.get(id) ?? { connectionId: r.connectionId, day: r.day, requests: 0, tokens: 0, microUsd: 0, leases: new Set<string>() };
      t.leases.add(`${key}\u0000${r.lease}`);
      totals.set(id, t);
    }
    for (const [id, r] of newest) {
      const t = totals.get(id)!;
      t.requests += r.requests;
      t.tokens += r.tokens;
      t.microUsd += r.microUsd;
    }
  }
  for (const t of totals.values()) {
    const h = e.host.find((x) => x.connectionId === t.connectionId && x.day === t.day);
    for (const field of ['requests', 'tokens', 'microUsd'] as const) {
      if (field === 'microUsd' && (h === undefined ? true : h.microUsd === undefined)) continue;
      const recorded = h?.[field] ?? 0;
      if (recorded < t[field]) out.push({ kind: 'under_reported', connectionId: t.connectionId, day: t.day, field, host: recorded, enclave: t[field] });
    }
  }
  if (e.leaseLog) {
    const { threshold, releases } = e.leaseLog;
    const logged = (connectionId: string, day: number) => releases.filter((r) => r.connectionId === connectionId && (r.day === day || r.day === day - 1)).reduce((a, r) => a + r.releases, 0);
    for (const t of totals.values()) {
      const leasesLogged = Math.floor(logged(t.connectionId, t.day) / threshold);
      if (t.leases.size > leasesLogged) out.push({ kind: 'leases_exceeded', connectionId: t.connectionId, day: t.day, enclaveLeases: t.leases.size, leasesLogged });
    }
    // A lease taken just before midnight may serve only the next day: either day accounts for it.
    const accounted = (connectionId: string, day: number) =>
      totals.has(`${connectionId}\u0000${day}`) || e.host.some((x) => x.connectionId === connectionId && x.day === day && x.requests > 0);
    const perDay = new Map<string, { connectionId: string; day: number; releases: number }>();
    for (const r of releases) {
      const id = `${r.connectionId}\u0000${r.day}`;
      const d = perDay.get(id) ?? { connectionId: r.connectionId, day: r.day, releases: 0 };
      d.releases += r.releases;
      perDay.set(id, d);
    }
    const hidden = new Set<string>();
    for (const [id, r] of perDay) {
      if (r.releases === 0 || accounted(r.connectionId, r.day) || accounted(r.connectionId, r.day + 1)) continue;
      hidden.add(id);
      out.push({ kind: 'leases_unaccounted', connectionId: r.connectionId, day: r.day, releases: r.releases });
    }
    // Per enclave: every enclave that took a lease issues a receipt for it (refused requests' too),
    // so releases to an enclave whose receipts for that connection-day are all gone were hidden.
    const receipted = new Set<string>();
    for (const [key, list] of byKey) for (const r of list) receipted.add(`${key}\u0000${r.connectionId}\u0000${r.day}`);
    for (const r of releases) {
      if (!r.enclaveKey || r.releases === 0 || hidden.has(`${r.connectionId}\u0000${r.day}`)) continue;
      const has = (day: number) => receipted.has(`${r.enclaveKey}\u0000${r.connectionId}\u0000${day}`);
      if (!has(r.day) && !has(r.day + 1)) out.push({ kind: 'leases_unaccounted', connectionId: r.connectionId, day: r.day, releases: r.releases, enclaveKey: r.enclaveKey });
    }
  }
  return out;
}

/**
 * The running enclave's head over the verifier's nonce, checked: signed by `head.enclaveKey`
 * (which `attested` must vouch for), over this nonce, naming every connection asked for. Without
 * such a head the host alone would decide whether the tail of a chain is checked, so a missing or
 * failing one is `problem` (the `head_unverified` finding), never silence.
 */
export function checkedHead(
  head: SignedReceiptHead | null | undefined,
  nonce: string,
  named: readonly string[],
  attested: (enclaveKey: string) => boolean,
): { heads: Map<string, ReceiptHead>; problem?: string } {
  const heads = new Map<string, ReceiptHead>();
  if (!head) return { heads, problem: 'the host sent none' };
  try {
    if (!attested(head.enclaveKey)) throw new Error('its key is not attested');
    const verified = verifyReceiptHead(head, head.enclaveKey, nonce);
    if (named.some((id) => !Object.hasOwn(verified.newest, id))) throw new Error('it does not cover every connection asked for');
    heads.set(head.enclaveKey, verified);
    return { heads };
  } catch (e) {
    return { heads, problem: (e as Error).message };
  }
}

/** One connection-day of the comparison both verifiers show. */
export interface UsageRow {
  connectionId: string;
  day: number;
  hostRequests: number;
  hostTokens: number;
  receiptRequests: number;
  receiptTokens: number;
  /** Shareholder releases (filled by a verifier that read the lease logs). */
  releases: number;
}

/** Which evidence `usageRows` counts: days in range, receipts of attested keys; all when omitted. */
export interface UsageRowFilter {
  day?: (day: number) => boolean;
  enclaveKey?: (enclaveKey: string) => boolean;
}

/**
 * Per connection and UTC day: what the host recorded beside the sum, over enclaves, of each
 * enclave's newest receipt, and (when the lease logs were read) the shareholders' releases.
 */
export function usageRows(
  host: UsageEvidence['host'],
  receipts: readonly SignedUsageReceipt[],
  filter: UsageRowFilter = {},
  releases: ReadonlyArray<{ connectionId: string; day: number; releases: number }> = [],
): Map<string, UsageRow> {
  const inDays = filter.day ?? (() => true);
  const attested = filter.enclaveKey ?? (() => true);
  const rows = new Map<string, UsageRow>();
  const row = (connectionId: string, day: number) => {
    const k = `${connectionId}\u0000${day}`;
    let r = rows.get(k);
    if (!r) rows.set(k, (r = { connectionId, day, hostRequests: 0, hostTokens: 0, receiptRequests: 0, receiptTokens: 0, releases: 0 }));
    return r;
  };
  for (const h of host) if (inDays(h.day)) Object.assign(row(h.connectionId, h.day), { hostRequests: h.requests, hostTokens: h.tokens });
  const newest = new Map<string, SignedUsageReceipt>();
  for (const s of receipts) {
    if (!inDays(s.receipt.day) || !attested(s.enclaveKey)) continue;
    const k = `${s.enclaveKey}\u0000${s.receipt.connectionId}\u0000${s.receipt.day}`;
    if ((newest.get(k)?.receipt.seq ?? -1) < s.receipt.seq) newest.set(k, s);
  }
  for (const s of newest.values()) {
    const r = row(s.receipt.connectionId, s.receipt.day);
    r.receiptRequests += s.receipt.requests;
    r.receiptTokens += s.receipt.tokens;
  }
  for (const l of releases) if (inDays(l.day)) row(l.connectionId, l.day).releases += l.releases;
  return rows;
}
