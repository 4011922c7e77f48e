import { useState } from 'preact/hooks';
import { money, when } from './api.ts';
import { Failure, useAdmin } from './pages.tsx';

interface UsageRow {
  day: string;
  keyId: string;
  model: string | null;
  requests: number;
  tokensIn: number;
  tokensOut: number;
  cost: number;
}

/** Horizontal bars (SVG, no chart library): one row per label, scaled to the largest value. */
function Bars({ rows, testid, format }: { rows: Array<[string, number]>; testid: string; format: (n: number) => string }) {
  const max = Math.max(...rows.map(([, v]) => v), 0) || 1;
  const h = 26;
  return (
    <svg class="chart" data-testid={testid} width="640" height={Math.max(rows.length, 1) * h + 4} viewBox={`0 0 640 ${Math.max(rows.length, 1) * h + 4}`} role="img" aria-label={testid}>
      {rows.length === 0 && (
        <text x="4" y="18" class="muted">
          no traffic yet
        </text>
      )}
      {rows.map(([label, value], i) => (
        <g key={label} transform={`translate(0, ${i * h + 2})`} data-label={label} data-value={value}>
          <text x="0" y="17">
            {label}
          </text>
          <rect x="190" y="4" height="16" width={Math.max(2, (value / max) * 330)} />
          <text x={196 + (value / max) * 330} y="17">
            {format(value)}
          </text>
        </g>
      ))}
    </svg>
  );
}

export function Usage() {
  const [days, setDays] = useState(30);
  const { data, error } = useAdmin<UsageRow[]>(`/usage?days=${days}`);
  const rows = data ?? [];
  const sum = (key: (r: UsageRow) => string) => {
    const m = new Map<string, { cost: number; requests: number }>();
    for (const r of rows) {
      const g = m.get(key(r)) ?? { cost: 0, requests: 0 };
      g.cost += r.cost;
      g.requests += r.requests;
      m.set(key(r), g);
    }
    return [...m.entries()];
  };
  const perDay = sum((r) => r.day).sort(([a], [b]) => a.localeCompare(b));
  const perModel = sum((r) => r.model ?? '(none)').sort(([, a], [, b]) => b.cost - a.cost || b.requests - a.requests);
  const total = rows.reduce((n, r) => n + r.cost, 0);
  const requests = rows.reduce((n, r) => n + r.requests, 0);
  return (
    <section>
      <h2>Usage</h2>
      <label>
        Period{' '}
        <select value={days} onChange={(e) => setDays(Number((e.currentTarget as HTMLSelectElement).value))}>
          <option value={1}>today</option>
          <option value={7}>7 days</option>
          <option value={30}>30 days</option>
          <option value={90}>90 days</option>
        </select>
      </label>
      <Failure error={error} />
      <p data-testid="usage-total">
        {money(total)} over {requests} requests
      </p>
      {data && data.length === 0 && (
        <p class="muted" data-testid="empty">
          No requests in this period. Send one with a key (see the Keys page for client snippets) and its spend shows here per day and model.
        </p>
      )}
      <h3>Spend per day</h3>
      <Bars testid="chart-day" rows={perDay.map(([d, g]) => [d, g.cost])} format={money} />
      <h3>Spend per model</h3>
      <Bars testid="chart-model" rows={perModel.map(([m, g]) => [m, g.cost])} format={money} />
      <h3>Requests per model</h3>
      <Bars testid="chart-model-requests" rows={perModel.map(([m, g]) => [m, g.requests])} format={(n) => String(n)} />
    </section>
  );
}

interface AuditItem {
  id: string;
  at: number;
  keyId: string | null;
  /** What the request called ("POST /v1/chat/completions"), never the query; null on rows from before it was recorded. */
  endpoint: string | null;
  modelRequested: string | null;
  modelResolved: string | null;
  tokensIn: number;
  tokensOut: number;
  cost: number;
  status: number;
  code: string | null;
  clientIp: string | null;
  city: string | null;
  latencyMs: number;
}

const AUDIT_CSV_FIELDS = [
  'at', 'requestId', 'keyId', 'projectId', 'provider', 'endpoint', 'modelRequested', 'modelResolved', 'tokensIn', 'tokensOut', 'tokensCached', 'cost', 'status', 'code', 'clientIp', 'city',
  'deviceMatch', 'latencyMs',
] as const;

/** The rows shown, as CSV (the same columns as `securegate audit --csv`, ISO times). */
function auditCsv(items: AuditItem[]): string {
  const cell = (v: unknown) => {
    const s = v === null || v === undefined ? '' : String(v);
    return /[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
  };
  const rows = items.map((i) => AUDIT_CSV_FIELDS.map((f) => cell(f === 'at' ? new Date(i.at).toISOString() : (i as unknown as Record<string, unknown>)[f])).join(','));
  return `${AUDIT_CSV_FIELDS.join(',')}\n${rows.join('\n')}\n`;
}

export function AuditLog() {
  const [filters, setFilters] = useState({ keyId: '', model: '', hours: '', outcome: '' });
  const { data: keys } = useAdmin<Array<{ id: string; name: string; hint: string }>>('/keys');
  const q = new URLSearchParams();
  if (filters.keyId) q.set('keyId', filters.keyId);
  if (filters.model) q.set('model', filters.model);
  if (filters.outcome) q.set('outcome', filters.outcome);
  if (filters.hours) q.set('since', String(Date.now() - Number(filters.hours) * 3_600_000));
  q.set('limit', '200');
  const { data, error, reload } = useAdmin<{ items: AuditItem[] }>(`/audit?${q}`);
  const apply = (e: Event) => {
    e.preventDefault();
    const f = new FormData(e.currentTarget as HTMLFormElement);
    // A key by id, name or hint, as the CLI takes it.
    const ref = String(f.get('keyId') ?? '').trim();
    const byName = keys?.find((k) => k.name === ref || k.hint === ref);
    setFilters({ keyId: byName ? byName.id : ref, model: String(f.get('model') ?? '').trim(), hours: String(f.get('hours') ?? ''), outcome: String(f.get('outcome') ?? '') });
  };
  const exportCsv = () => {
    const url = URL.createObjectURL(new Blob([auditCsv(data?.items ?? [])], { type: 'text/csv' }));
    const a = document.createElement('a');
    a.href = url;
    a.download = `securegate-audit-${new Date().toISOString().slice(0, 10)}.csv`;
    a.click();
    URL.revokeObjectURL(url);
  };
  return (
    <section>
      <h2>Audit log</h2>
      <form class="grid" onSubmit={apply}>
        <label>
          Key <input name="keyId" placeholder="key id, name or hint" list="audit-keys" />
          <datalist id="audit-keys">
            {(keys ?? []).map((k) => (
              <option key={k.id} value={k.name} />
            ))}
          </datalist>
        </label>
        <label>
          Model <input name="model" />
        </label>
        <label>
          Outcome
          <select name="outcome">
            <option value="">all</option>
            <option value="allowed">allowed</option>
            <option value="refused">refused</option>
          </select>
        </label>
        <label>
          Since
          <select name="hours">
            <option value="">all</option>
            <option value="1">1 hour</option>
            <option value="24">24 hours</option>
            <option value="168">7 days</option>
          </select>
        </label>
        <button type="submit">Filter</button>
        <button type="button" onClick={reload}>
          Refresh
        </button>
        <button type="button" onClick={exportCsv} disabled={!data?.items.length}>
          Export CSV
        </button>
      </form>
      {data && data.items.length === 0 && (
        <p class="muted" data-testid="audit-empty">
          No requests match. Every request through the gateway — allowed or refused — appears here with its key, model, cost and client.
        </p>
      )}
      <Failure error={error} />
      <table data-testid="audit" class="cards">
        <thead>
          <tr>
            <th>Time (UTC)</th>
            <th>Key</th>
            <th>Endpoint</th>
            <th>Model</th>
            <th>Outcome</th>
            <th>Tokens in/out</th>
            <th>Cost</th>
            <th>Client</th>
            <th>ms</th>
          </tr>
        </thead>
        <tbody>
          {(data?.items ?? []).map((i) => (
            <tr key={i.id} data-key-id={i.keyId ?? ''} data-code={i.code ?? ''}>
              <td data-label="Time">{when(i.at)}</td>
              <td data-label="Key" class="mono">{i.keyId}</td>
              <td data-label="Endpoint" class="mono" data-testid="endpoint">
                {i.endpoint ?? '—'}
              </td>
              <td data-label="Model">{i.modelResolved ?? i.modelRequested ?? '—'}</td>
              <td data-label="Outcome" class={i.code ? 'bad' : 'ok'}>{i.code ?? i.status}</td>
              <td>
                {i.tokensIn}/{i.tokensOut}
              </td>
              <td data-label="Cost">{money(i.cost)}</td>
              <td>
                {i.clientIp}
                {i.city ? ` (${i.city})` : ''}
              </td>
              <td data-label="ms">{i.latencyMs}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </section>
  );
}
