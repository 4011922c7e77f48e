import type { ComponentChildren } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { PROVIDERS, type AttestationReport } from '../../protocol/index.ts';
import { admin, ago, ApiError, money, when, type Account, type Connection, type Key } from './api.ts';
import { cancelWidenings, connectInBrowser, pendingWidenings, type PendingWidening } from './enroll.ts';

/** Loads `path` and re-loads on demand; errors (e.g. plan_feature) are shown, not thrown. */
export function useAdmin<T>(path: string): { data: T | undefined; error: ApiError | undefined; reload: () => void } {
  const [data, setData] = useState<T>();
  const [error, setError] = useState<ApiError>();
  const [tick, setTick] = useState(0);
  useEffect(() => {
    admin<T>('GET', path)
      .then((d) => {
        setData(d);
        setError(undefined);
      })
      .catch((e: ApiError) => setError(e));
  }, [path, tick]);
  return { data, error, reload: () => setTick((t) => t + 1) };
}

/** A table row of cells and a Remove button. */
function RemovableRow({ cells, onRemove }: { cells: ComponentChildren[]; onRemove: () => Promise<void> }) {
  return (
    <tr>
      {cells.map((c, i) => (
        <td key={i}>{c}</td>
      ))}
      <td>
        <button class="link" onClick={onRemove}>
          Remove
        </button>
      </td>
    </tr>
  );
}

export function Failure({ error }: { error: unknown }) {
  if (!error) return null;
  return (
    <p class="error" role="alert" data-testid="error">
      {error instanceof Error ? error.message : String(error)}
    </p>
  );
}

const FEATURES: Array<[string, string]> = [
  ['ip_lock', 'IP locks'],
  ['city_lock', 'City locks'],
  ['device_lock', 'Device locks'],
  ['any_api', 'Any-API connections'],
  ['attestation', 'Attestation page'],
];

/** Spend today, the last requests and a getting-started checklist, from what the account already has. */
function Activity({ connections }: { connections: number }) {
  const { data: keys } = useAdmin<Key[]>('/keys');
  const { data: audit } = useAdmin<{ items: Array<{ id: string; at: number; keyId: string | null; modelResolved: string | null; modelRequested: string | null; code: string | null; status: number; cost: number }> }>('/audit?limit=5');
  const { data: alerts } = useAdmin<unknown[]>('/alerts');
  if (!keys) return null;
  const spent = keys.reduce((n, k) => n + (k.spentToday ?? 0), 0);
  const names = new Map(keys.map((k) => [k.id, k.name]));
  const steps: Array<[boolean, string, string]> = [
    [connections > 0, 'Connect a provider (sealed and split in this page)', '#/connections'],
    [keys.length > 0, 'Create an SG_ key for an agent', '#/keys'],
    [keys.some((k) => k.lastUsedAt !== null), 'Send a first request with the key (it binds to that IP)', '#/keys'],
    [keys.some((k) => k.dailyLimit !== null), 'Give a key a daily cap', '#/keys'],
    [(alerts?.length ?? 0) > 0, 'Add an alert target (webhook or email)', '#/alerts'],
  ];
  return (
    <>
      <p data-testid="spend-today">
        Spent today (UTC): <strong>{money(spent)}</strong> across {keys.length} key{keys.length === 1 ? '' : 's'}
      </p>
      {steps.some(([done]) => !done) && (
        <>
          <h3>Getting started</h3>
          <ul class="checklist" data-testid="checklist">
            {steps.map(([done, text, href]) => (
              <li key={text} class={done ? 'yes' : 'no'}>
                {done ? '✓' : '○'} <a href={href}>{text}</a>
              </li>
            ))}
          </ul>
        </>
      )}
      <h3>Recent activity</h3>
      {audit && audit.items.length === 0 && <p class="muted">No requests yet. They appear here and in the audit log as they happen.</p>}
      <ul data-testid="recent">
        {(audit?.items ?? []).map((i) => (
          <li key={i.id}>
            {ago(i.at)} · {i.keyId ? (names.get(i.keyId) ?? i.keyId) : '—'} · {i.modelResolved ?? i.modelRequested ?? '—'} ·{' '}
            <span class={i.code ? 'bad' : 'ok'}>{i.code ?? i.status}</span> · {money(i.cost)}
          </li>
        ))}
      </ul>
    </>
  );
}

export function Overview() {
  const { data: a, error } = useAdmin<Account>('/account');
  if (error) return <Failure error={error} />;
  if (!a) return <p class="muted">Loading…</p>;
  const limit = (n: number | null | undefined) => (n === undefined || n === null ? 'unlimited' : n);
  return (
    <section>
      <h2>{a.name}</h2>
      <p>
        Plan <strong data-testid="plan">{a.plan.name}</strong> — you are {a.role}.
      </p>
      <Activity connections={a.usage.connections} />
      <table>
        <tbody>
          <tr>
            <th>Connections</th>
            <td data-testid="connections-usage">
              {a.usage.connections} of {limit(a.plan.limits.connections)}
            </td>
          </tr>
          <tr>
            <th>Keys</th>
            <td>
              {a.usage.keys} of {limit(a.plan.limits.keys)}
            </td>
          </tr>
          <tr>
            <th>Members</th>
            <td>{a.usage.members}</td>
          </tr>
        </tbody>
      </table>
      <h3>What your plan allows</h3>
      <ul class="features">
        {FEATURES.map(([id, label]) => (
          <li key={id} class={a.plan.features.includes(id) ? 'yes' : 'no'} data-feature={id}>
            {a.plan.features.includes(id) ? '✓' : '✗'} {label}
          </li>
        ))}
      </ul>
    </section>
  );
}

/** Comma-separated form field → list (empty: none). */
const listField = (v: FormDataEntryValue | null) => String(v ?? '').split(',').map((x) => x.trim()).filter(Boolean);

/** A whole number from the form, or undefined when left empty. */
function countField(v: FormDataEntryValue | null, label: string): number | undefined {
  const t = String(v ?? '').trim();
  if (t === '') return undefined;
  if (!/^\d{1,15}$/.test(t)) throw new Error(`${label} must be a whole number`);
  return Number(t);
}

/**
 * Widenings of the enclave policy waiting out the owner's delay (the shareholders' public view):
 * a widening the owner did not make is cancelled here before it takes effect.
 */
function PendingWidenings({ connections }: { connections: Connection[] }) {
  const [pending, setPending] = useState<PendingWidening[]>();
  const [failure, setFailure] = useState<unknown>();
  const [tick, setTick] = useState(0);
  const ids = connections.map((c) => c.id).join(',');
  useEffect(() => {
    pendingWidenings(ids ? ids.split(',') : []).then(setPending, setFailure);
  }, [ids, tick]);
  if (!pending || pending.length === 0) return null;
  const byConnection = [...new Set(pending.map((p) => p.connectionId))];
  return (
    <div data-testid="pending-widenings">
      <h3>Pending enclave widenings</h3>
      <p class="notice">
        These policy updates admit new enclave measurements. They take effect at the time shown (the delay you chose when connecting); if you did not approve them, cancel them now.
      </p>
      <table class="cards">
        <thead>
          <tr>
            <th>Connection</th>
            <th>Admits (PCR0)</th>
            <th>Takes effect</th>
            <th>Shareholders</th>
            <th />
          </tr>
        </thead>
        <tbody>
          {byConnection.map((id) => {
            const rows = pending.filter((p) => p.connectionId === id);
            return (
              <tr key={id} data-connection={id}>
                <td data-label="Connection" class="mono">{id}</td>
                <td data-label="Admits" class="mono">{[...new Set(rows.flatMap((r) => r.admits))].map((p) => `${p.slice(0, 16)}…`).join(', ')}</td>
                <td data-label="Takes effect">{rows.map((r) => r.effectiveAt).sort().at(-1)}</td>
                <td data-label="Shareholders">{rows.map((r) => r.shareholder.id).join(', ')}</td>
                <td>
                  <button
                    type="button"
                    onClick={() => {
                      setFailure(undefined);
                      cancelWidenings(rows).then(() => setTick((t) => t + 1), setFailure);
                    }}
                  >
                    Cancel widening
                  </button>
                </td>
              </tr>
            );
          })}
        </tbody>
      </table>
      <Failure error={failure} />
    </div>
  );
}

export function Connections() {
  const { data, error, reload } = useAdmin<Connection[]>('/connections');
  const [progress, setProgress] = useState('');
  const [failure, setFailure] = useState<unknown>();
  const submit = async (e: Event) => {
    e.preventDefault();
    const formEl = e.currentTarget as HTMLFormElement;
    const form = new FormData(formEl);
    setFailure(undefined);
    try {
      const delayHours = countField(form.get('wideningDelayHours'), 'Widening delay');
      const dailyRequests = countField(form.get('dailyRequests'), 'Daily requests');
      const dailyTokens = countField(form.get('dailyTokens'), 'Daily tokens');
      const dollarsText = String(form.get('dailyDollars') ?? '').trim().replace(/^\$/, '');
      const dailyDollars = dollarsText === '' ? undefined : Number(dollarsText);
      if (dailyDollars !== undefined && !(Number.isFinite(dailyDollars) && dailyDollars >= 0)) throw new Error('Daily dollars must be an amount in USD, e.g. 5 or 0.50');
      const models = listField(form.get('models'));
      await connectInBrowser({
        provider: String(form.get('provider')),
        apiKey: String(form.get('apiKey')),
        baseUrl: String(form.get('baseUrl') ?? '') || undefined,
        name: String(form.get('name') ?? ''),
        policy: {
          operations: listField(form.get('operations')),
          ...(models.length ? { models } : {}),
          ...(dailyRequests !== undefined ? { dailyRequests } : {}),
          ...(dailyTokens !== undefined ? { dailyTokens } : {}),
          ...(dailyDollars !== undefined ? { dailyDollars } : {}),
        },
        ...(delayHours !== undefined ? { wideningDelayMs: delayHours * 3_600_000 } : {}),
        onProgress: setProgress,
      });
      formEl.reset();
      setProgress('connected');
      reload();
    } catch (err) {
      setProgress('');
      setFailure(err);
    }
  };
  return (
    <section>
      <h2>Connections</h2>
      <Failure error={error} />
      {data && data.length === 0 && (
        <p class="muted" data-testid="empty">
          No connections yet. Add your provider's API key below: it is sealed and split in this page, and the gateway only ever holds the sealed record. (From a terminal:{' '}
          <code>securegate connect openai</code>.)
        </p>
      )}
      <table data-testid="connections" class="cards">
        <thead>
          <tr>
            <th>Name</th>
            <th>Provider</th>
            <th>Origin</th>
            <th>Shares</th>
            <th>Created</th>
            <th>Id</th>
          </tr>
        </thead>
        <tbody>
          {(data ?? []).map((c) => (
            <tr key={c.id}>
              <td data-label="Name">{c.name}</td>
              <td data-label="Provider">{c.provider}</td>
              <td data-label="Origin">{c.origin}</td>
              <td data-label="Shares">{c.threshold}-of-n</td>
              <td data-label="Created">{when(c.createdAt)}</td>
              <td data-label="Id" class="mono">{c.id}</td>
            </tr>
          ))}
        </tbody>
      </table>
      {data && data.length > 0 && <PendingWidenings connections={data} />}
      <h3>Add a provider</h3>
      <p class="notice">
        This page seals your key and splits it across the shareholders <em>in your browser</em>, with the same code as the CLI; the gateway receives only the sealed record. But this page is
        served by the gateway host, so using it means trusting that host's page. The path that does not trust the host is the CLI: <code>securegate connect &lt;provider&gt;</code>.
      </p>
      <form class="grid" onSubmit={submit}>
        <label>
          Provider
          <select name="provider">
            {Object.values(PROVIDERS).filter((p) => p.id !== 'any').map((p) => (
              <option key={p.id} value={p.id}>
                {p.name}
              </option>
            ))}
          </select>
        </label>
        <label>
          API key <input name="apiKey" type="password" autocomplete="off" required />
        </label>
        <label>
          Base URL <input name="baseUrl" placeholder="default: the provider's API" />
        </label>
        <label>
          Name <input name="name" />
        </label>
        <label>
          Operations <input name="operations" placeholder="inference" title="what the enclave lets this connection do, e.g. inference,files:read" />
        </label>
        <label>
          Models <input name="models" placeholder="any (e.g. gpt-4o-mini)" title="only these models, comma-separated: the enclave refuses others" />
        </label>
        <label>
          Daily requests <input name="dailyRequests" inputMode="numeric" placeholder="no cap" />
        </label>
        <label>
          Daily tokens <input name="dailyTokens" inputMode="numeric" placeholder="no cap" />
        </label>
        <label>
          Daily dollars <input name="dailyDollars" inputMode="decimal" placeholder="no cap (needs Models)" title="USD per UTC day at the models' prices, signed into the policy" />
        </label>
        <label>
          Widening delay (hours) <input name="wideningDelayHours" inputMode="numeric" placeholder="24" title="how long a policy update admitting a new enclave waits before it takes effect" />
        </label>
        <button type="submit">Seal, split and connect</button>
      </form>
      {progress && <p class="muted" data-testid="progress">{progress}</p>}
      <Failure error={failure} />
    </section>
  );
}

export function Models() {
  const { data: account } = useAdmin<Account>('/account');
  const project = account?.defaultProject ?? '';
  const [aliases, setAliases] = useState<Record<string, string>>({});
  const [failure, setFailure] = useState<unknown>();
  const load = () => project && admin<Record<string, string>>('GET', `/projects/${project}/aliases`).then(setAliases, setFailure);
  useEffect(() => void load(), [project]);
  const add = async (e: Event) => {
    e.preventDefault();
    const form = new FormData(e.currentTarget as HTMLFormElement);
    try {
      setAliases(await admin('PUT', `/projects/${project}/aliases/${encodeURIComponent(String(form.get('alias')))}`, { target: String(form.get('target')) }));
      (e.currentTarget as HTMLFormElement | null)?.reset();
    } catch (err) {
      setFailure(err);
    }
  };
  return (
    <section>
      <h2>Model management</h2>
      <p class="muted">
        Aliases of project <span class="mono">{project}</span>: clients ask for the alias, the gateway calls the target. Which models each key may use is set in its Edit Key dialog.
      </p>
      {Object.keys(aliases).length === 0 && (
        <p class="muted" data-testid="empty">
          No aliases yet. Add one so clients can ask for a stable name (e.g. <code>gpt-4</code>) while you choose the exact model (e.g. <code>gpt-4-0613</code>).
        </p>
      )}
      <table>
        <tbody>
          {Object.entries(aliases).map(([alias, target]) => (
            <RemovableRow key={alias} cells={[<span class="mono">{alias}</span>, `→ ${target}`]} onRemove={async () => setAliases(await admin('DELETE', `/projects/${project}/aliases/${encodeURIComponent(alias)}`))} />
          ))}
        </tbody>
      </table>
      <form class="grid" onSubmit={add}>
        <label>
          Alias <input name="alias" required pattern="[A-Za-z0-9._:-]+" />
        </label>
        <label>
          Target model <input name="target" required />
        </label>
        <button type="submit">Add alias</button>
      </form>
      <Failure error={failure} />
    </section>
  );
}

interface AlertTarget {
  id: string;
  kind: string;
  target: string;
  createdAt: number;
}

export function Alerts() {
  const { data, error, reload } = useAdmin<AlertTarget[]>('/alerts');
  const [secret, setSecret] = useState('');
  const [failure, setFailure] = useState<unknown>();
  const add = async (e: Event) => {
    e.preventDefault();
    const form = new FormData(e.currentTarget as HTMLFormElement);
    try {
      const r = await admin<{ secret?: string }>('POST', '/alerts', { kind: String(form.get('kind')), target: String(form.get('target')) });
      setSecret(r.secret ?? '');
      reload();
    } catch (err) {
      setFailure(err);
    }
  };
  return (
    <section>
      <h2>Alert settings</h2>
      <p class="muted">Budget, IP, device, city and suspension events go to every target of the project: signed webhooks (Standard Webhooks) and email.</p>
      <Failure error={error} />
      {data && data.length === 0 && (
        <p class="muted" data-testid="empty">
          No alert targets yet: budget, IP-mismatch and suspension alerts go nowhere until you add a webhook or an email address below.
        </p>
      )}
      <table>
        <tbody>
          {(data ?? []).map((t) => (
            <RemovableRow key={t.id} cells={[t.kind, t.target, new Date(t.createdAt).toISOString().slice(0, 10)]} onRemove={async () => (await admin('DELETE', `/alerts/${t.id}`), reload())} />
          ))}
        </tbody>
      </table>
      <form class="grid" onSubmit={add}>
        <label>
          Kind
          <select name="kind">
            <option value="webhook">Webhook</option>
            <option value="email">Email</option>
          </select>
        </label>
        <label>
          URL or address <input name="target" required />
        </label>
        <button type="submit">Add target</button>
        <button type="button" onClick={() => admin('POST', '/alerts/test', {}).catch(setFailure)}>
          Send a test alert
        </button>
      </form>
      {secret && (
        <p class="notice">
          Webhook signing secret (shown once): <code>{secret}</code>
        </p>
      )}
      <Failure error={failure} />
    </section>
  );
}

export function Attestation() {
  const { data: r, error, reload } = useAdmin<AttestationReport>('/attestation');
  if (error) return <Failure error={error} />;
  if (!r) return <p class="muted">Asking the enclave for a fresh attestation…</p>;
  return (
    <section>
      <h2>Enclave attestation</h2>
      <p data-testid="attestation-verdict" class={r.verified && r.matchesRelease ? 'ok' : 'bad'}>
        {r.verified ? (r.matchesRelease ? '✓ The enclave runs the published release.' : '✗ The enclave does NOT match the published release.') : `✗ Not verified: ${r.error}`}
      </p>
      <table class="pcrs">
        <thead>
          <tr>
            <th>PCR</th>
            <th>Enclave (fresh document)</th>
            <th>Published release</th>
            <th />
          </tr>
        </thead>
        <tbody>
          {['0', '1', '2'].map((i) => (
            <tr key={i} data-pcr={i}>
              <td>PCR{i}</td>
              <td class="mono">{r.pcrs[i]?.slice(0, 24)}…</td>
              <td class="mono">{r.release?.pcrs[i]?.slice(0, 24)}…</td>
              <td>{r.pcrs[i] && r.pcrs[i] === r.release?.pcrs[i] ? '✓' : '✗'}</td>
            </tr>
          ))}
        </tbody>
      </table>
      <p class="muted">
        Module {r.moduleId} · attested {when(r.timestamp)} to root {r.root} · nonce {r.nonce.slice(0, 16)}… · release {r.release?.release} ({r.release?.gitCommit.slice(0, 12)}), signed by{' '}
        <span class="mono">{r.release?.releaseKey.slice(0, 16)}…</span>
      </p>
      <p class="notice">
        The gateway host ran this check. To check without trusting the host, run on your machine: <code>securegate attest verify --server {location.origin} --manifest &lt;published manifest&gt; --release-key &lt;key&gt;</code>
      </p>
      <button onClick={reload}>Attest again</button>
    </section>
  );
}
