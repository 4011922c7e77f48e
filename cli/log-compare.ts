/**
 * Cross-checks the shareholders' logs with each other (`attest audit`): every shareholder of a
 * connection receives the same owner messages, so their enroll, policy and delete histories must
 * tell the same story, and — an enclave asking t of n for every lease — none should have released
 * far more than the rest. A shareholder that logged a policy update the others did not, or that
 * released many times more often, is either compromised or being used around the others.
 * Pure: log entries in, disagreements out, each said in plain words.
 */
import { canonicalJson } from '../protocol/index.ts';

export interface LogEvent {
  action: string;
  outcome: string;
  connectionId?: string;
  policy?: unknown;
}

export interface ConnectionDisagreement {
  connectionId: string;
  problem: 'policy_history_differs' | 'release_count_outlier' | 'delete_differs' | 'enrollment_missing';
  /** `failure` fails the audit; `warning` is reported only (a retired shareholder still holding a share). */
  severity: 'failure' | 'warning';
  message: string;
}

/** Policy events, as the owner made them: the same at every shareholder, whatever the timing. */
const POLICY_OUTCOMES = new Set(['enrolled', 'policy_updated', 'widening_pending', 'widening_cancelled']);

interface Story {
  policies: string[];
  releases: number;
  deleted: boolean;
}

/**
 * A release count is an outlier when it exceeds three times the median of the other shareholders
 * plus 20: honest counts differ (an enclave asks t of n, retries, prepares tickets) but not by
 * that much.
 */
export const RELEASE_OUTLIER = { factor: 3, slack: 20 } as const;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length === 0 ? 0 : s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

const describePolicy = (p: string) => {
  const { outcome, policy } = JSON.parse(p) as { outcome: string; policy: { allow?: Array<Record<string, string>> } | null };
  const sets = policy?.allow?.map((s) => `PCR0 ${String(s['0']).slice(0, 12)}…`).join(' + ') ?? '';
  return `${outcome.replace(/_/g, ' ')}${sets ? ` (${sets})` : ''}`;
};

/**
 * Compares, per connection, the shareholders that logged its enrollment. `logs` maps shareholder
 * id → its verified entries' events. Connections only some shareholders ever enrolled (another
 * owner's split, a re-split onto a new set) are compared among those that did.
 */
export function compareShareholderLogs(logs: Map<string, LogEvent[]>, only?: string, expected?: Map<string, string[]>): ConnectionDisagreement[] {
  const stories = new Map<string, Map<string, Story>>();
  for (const [sh, events] of logs) {
    for (const e of events) {
      const id = e.connectionId;
      if (!id || (only && id !== only)) continue;
      if (e.outcome === 'enrolled' && !stories.has(id)) stories.set(id, new Map());
      const byShareholder = stories.get(id);
      if (!byShareholder) continue; // events before (or without) any enrollment: refusals of unknown ids
      if (e.outcome === 'enrolled' && !byShareholder.has(sh)) byShareholder.set(sh, { policies: [], releases: 0, deleted: false });
      const story = byShareholder.get(sh);
      if (!story) continue;
      if (POLICY_OUTCOMES.has(e.outcome)) story.policies.push(canonicalJson({ outcome: e.outcome, policy: (e.policy ?? null) as never }));
      if (e.outcome === 'released') story.releases++;
      if (e.outcome === 'deleted') story.deleted = true;
    }
  }
  const out: ConnectionDisagreement[] = [];
  // Which shareholders this machine enrolled each connection with (its own record): one that never
  // logged the enrollment lost it, or its log was rewritten before this machine first saw it.
  for (const [connectionId, holders] of expected ?? []) {
    if (only && connectionId !== only) continue;
    const missing = holders.filter((sh) => logs.has(sh) && !stories.get(connectionId)?.has(sh));
    if (missing.length === 0) continue;
    const present = holders.filter((sh) => stories.get(connectionId)?.has(sh));
    out.push({
      connectionId,
      problem: 'enrollment_missing',
      severity: 'failure',
      message: `${missing.join(', ')} logged no enrollment of it${present.length ? `, though ${present.join(', ')} did` : ''} (this machine enrolled it with ${holders.join(', ')})`,
    });
  }
  for (const [connectionId, byShareholder] of stories) {
    const holders = [...byShareholder.keys()];
    if (holders.length < 2) continue;
    // Policy history: the longest common story, then who logged what the others did not.
    const histories = holders.map((sh) => byShareholder.get(sh)!.policies);
    const keys = new Set(histories.map((h) => h.join('\n')));
    if (keys.size > 1) {
      const counts = new Map<string, string[]>();
      holders.forEach((sh) => {
        for (const p of new Set(byShareholder.get(sh)!.policies)) counts.set(p, [...(counts.get(p) ?? []), sh]);
      });
      const partial = [...counts].filter(([, who]) => who.length < holders.length);
      const parts = partial.map(([p, who]) => `${who.join(', ')} logged "${describePolicy(p)}" that ${holders.filter((h) => !who.includes(h)).join(', ')} did not`);
      out.push({
        connectionId,
        problem: 'policy_history_differs',
        severity: 'failure',
        message: parts.length ? parts.join('; ') : `the shareholders logged the same policy events in a different order (${holders.join(', ')})`,
      });
    }
    for (const sh of holders) {
      const mine = byShareholder.get(sh)!.releases;
      const others = holders.filter((h) => h !== sh).map((h) => byShareholder.get(h)!.releases);
      const m = median(others);
      if (mine > RELEASE_OUTLIER.factor * m + RELEASE_OUTLIER.slack) {
        out.push({ connectionId, problem: 'release_count_outlier', severity: 'failure', message: `${sh} released ${mine} times, the others ${others.join(', ')} (median ${m}): shares went out of ${sh} far more often than an enclave asking t of n explains` });
      }
    }
    const deleted = holders.filter((sh) => byShareholder.get(sh)!.deleted);
    if (deleted.length > 0 && deleted.length < holders.length) {
      out.push({ connectionId, problem: 'delete_differs', severity: 'warning', message: `deleted at ${deleted.join(', ')} but ${holders.filter((h) => !deleted.includes(h)).join(', ')} still hold a share (a retired shareholder? delete it there too)` });
    }
  }
  return out;
}
