import { useState } from 'preact/hooks';
import { ACCESS, ENDPOINT_KINDS, type KeyLimitsView } from '../../protocol/index.ts';
import { admin, ago, ApiError, money, when, type Connection, type Key } from './api.ts';
import { Failure, useAdmin } from './pages.tsx';

/** A key as the admin API lists it, with the limits beyond today's cap (protocol/views.ts). */
type LimitedKey = Key & Partial<KeyLimitsView>;

/** "2027-01-31" for a midnight UTC, else "2027-01-31T18:00:00Z": what the expiry field shows and the API takes. */
const expiryText = (ms: number | null | undefined) => {
  if (!ms) return '';
  const iso = new Date(ms).toISOString();
  return iso.endsWith('T00:00:00.000Z') ? iso.slice(0, 10) : iso.replace('.000Z', 'Z');
};
const ISO_DATE = /^\d{4}-\d{2}-\d{2}$/;
const ISO_DATE_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,3})?)?(Z|[+-]\d{2}:\d{2})$/;
/** The instant an expiry field names, as the server reads it (a date is 00:00 UTC); NaN when it names none. */
function expiryMs(text: string): number {
  const t = text.trim();
  if (ISO_DATE.test(t)) {
    const at = Date.parse(`${t}T00:00:00Z`);
    return new Date(at).toISOString().slice(0, 10) === t ? at : NaN;
  }
  return ISO_DATE_TIME.test(t) ? Date.parse(t) : NaN;
}

/** Week and month spend against their caps, rate limits and the expiry date, for the Keys table. */
function limitsSummary(k: LimitedKey): string[] {
  const parts: string[] = [];
  if (k.weeklyLimit !== null && k.weeklyLimit !== undefined) parts.push(`week ${money(k.spentWeek ?? 0)} / ${money(k.weeklyLimit)}`);
  if (k.monthlyLimit !== null && k.monthlyLimit !== undefined) parts.push(`month ${money(k.spentMonth ?? 0)} / ${money(k.monthlyLimit)}`);
  if (k.rpm) parts.push(`${k.rpm} req/min`);
  if (k.tpm) parts.push(`${k.tpm} tokens/min`);
  if (k.expiresAt) parts.push(`${k.expiresAt <= Date.now() ? 'expired' : 'expires'} ${when(k.expiresAt).slice(0, 16)} UTC`);
  return parts;
}

function lockSummary(k: Key): string[] {
  const locks: string[] = [];
  locks.push(k.boundIp ? `IP ${k.boundIp}` : 'IP: binds on first use');
  if (k.allowedCities.length) locks.push(`cities ${k.allowedCities.join('; ')}`);
  if (k.autoLock.includes('city')) locks.push(k.boundCity ? `city ${k.boundCity}` : 'city: binds on first use');
  if (k.deviceBound) locks.push('device bound');
  else if (k.autoLock.includes('device')) locks.push('device: binds on first use');
  if (k.allowedModels.length) locks.push(`models ${k.allowedModels.join(', ')}`);
  if (k.scopes && !(k.scopes.length === 1 && k.scopes[0] === 'inference')) locks.push(`scopes ${k.scopes.join(', ')}`);
  if (k.requireSignature) locks.push('signed requests');
  if (k.inactiveExpiryMs) locks.push(`expires after ${Math.round(k.inactiveExpiryMs / 86_400_000)}d idle`);
  return locks;
}

/** Cities are separated by ";" everywhere (a city may carry its country: "London, GB; Paris"). */
const cityList = (text: string) =>
  text
    .split(';')
    .map((s) => s.trim())
    .filter(Boolean);
const modelList = (text: string) =>
  text
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);

/** Scope kinds a key can be granted besides `inference` (host/request/scopes.ts has the grammar). */
const SCOPE_KINDS = ENDPOINT_KINDS.filter((k) => k !== 'any' && k !== 'inference');

/**
 * A scope checkbox's accessible name: the atom, except that the models row says "model:…", so the
 * dialog's "Models" field keeps a label no checkbox shares.
 */
const scopeLabel = (kind: string, access: string) => `${kind === 'models' ? 'model' : kind}:${access}`;

/** A stored scope list as atoms ("files" → files:read + files:write; "inference" stays itself). */
function scopeAtoms(scopes: readonly string[]): Set<string> {
  const atoms = new Set<string>();
  for (const s of scopes) {
    if (s === 'inference' || s.includes(':')) atoms.add(s);
    else {
      atoms.add(`${s}:read`);
      atoms.add(`${s}:write`);
    }
  }
  return atoms;
}

interface KeyForm {
  name: string;
  cities: string;
  models: string;
  dailyLimit: string;
  weeklyLimit: string;
  monthlyLimit: string;
  lifetimeLimit: string;
  rpm: string;
  tpm: string;
  expiresAt: string;
  inactiveExpiry: string;
  requireSignature: boolean;
  autoDevice: boolean;
  autoCity: boolean;
  scopes: Set<string>;
}
type Field = 'name' | 'cities' | 'models' | 'dailyLimit' | 'weeklyLimit' | 'monthlyLimit' | 'lifetimeLimit' | 'rpm' | 'tpm' | 'expiresAt' | 'inactiveExpiry' | 'scopes' | 'autoLock' | 'requireSignature';
type TextField = 'name' | 'cities' | 'models' | 'dailyLimit' | 'weeklyLimit' | 'monthlyLimit' | 'lifetimeLimit' | 'rpm' | 'tpm' | 'expiresAt' | 'inactiveExpiry';

const idleText = (ms: number | null) => {
  if (!ms) return '';
  for (const [unit, size] of [['w', 604_800_000], ['d', 86_400_000], ['h', 3_600_000], ['m', 60_000]] as const) if (ms % size === 0) return `${ms / size}${unit}`;
  return `${Math.round(ms / 1000)}s`;
};

const optionalText = (v: number | null | undefined) => (v === null || v === undefined ? '' : String(v));

function formOf(k: LimitedKey): KeyForm {
  return {
    name: k.name,
    cities: k.allowedCities.join('; '),
    models: k.allowedModels.join(', '),
    dailyLimit: k.dailyLimit === null ? '' : String(k.dailyLimit),
    weeklyLimit: optionalText(k.weeklyLimit),
    monthlyLimit: optionalText(k.monthlyLimit),
    lifetimeLimit: k.lifetimeLimit === null ? '' : String(k.lifetimeLimit),
    rpm: optionalText(k.rpm),
    tpm: optionalText(k.tpm),
    expiresAt: expiryText(k.expiresAt),
    inactiveExpiry: idleText(k.inactiveExpiryMs),
    requireSignature: k.requireSignature,
    autoDevice: k.autoLock.includes('device'),
    autoCity: k.autoLock.includes('city'),
    scopes: scopeAtoms(k.scopes ?? ['inference']),
  };
}

/** What the browser can tell before sending: every problem, by field. */
export function validateKeyForm(f: KeyForm): Partial<Record<Field, string>> {
  const errors: Partial<Record<Field, string>> = {};
  if (f.name.length > 100) errors.name = 'at most 100 characters';
  for (const city of cityList(f.cities)) {
    const parts = city.split(',').map((s) => s.trim());
    if (parts.length > 2) {
      errors.cities = `"${city}": one city per entry, as "City" or "City, CC" — separate cities with ";"`;
      break;
    }
    if (parts.length === 2 && !/^[A-Za-z]{2}$/.test(parts[1]!)) {
      errors.cities = `"${city}": after the comma comes a two-letter country code (GB, US, FR…)`;
      break;
    }
  }
  if (modelList(f.models).some((m) => m.length > 128)) errors.models = 'a model name is at most 128 characters';
  for (const field of ['dailyLimit', 'weeklyLimit', 'monthlyLimit', 'lifetimeLimit'] as const) {
    const text = f[field].trim().replace(/^\$/, '');
    if (text !== '' && !(Number.isFinite(Number(text)) && Number(text) >= 0)) errors[field] = 'a dollar amount, e.g. 5 or 0.50 — empty for no cap';
  }
  for (const field of ['rpm', 'tpm'] as const) {
    const text = f[field].trim();
    if (text !== '' && !(/^\d+$/.test(text) && Number(text) >= 1)) errors[field] = 'a whole number of at least 1 — empty for no limit';
  }
  const expiry = f.expiresAt.trim();
  if (expiry !== '') {
    const at = expiryMs(expiry);
    if (Number.isNaN(at)) errors.expiresAt = 'a date (2027-01-31, meaning 00:00 UTC) or a date-time with its zone (2027-01-31T18:00:00Z) — empty for never';
    else if (at <= Date.now()) errors.expiresAt = 'this moment has passed: a key that expires now is a kill (use Kill)';
  }
  const idle = f.inactiveExpiry.trim();
  if (idle !== '' && idle !== 'off' && !/^\d+\s*(s|m|h|d|w)$/.test(idle)) errors.inactiveExpiry = 'a duration such as 7d, 12h or 30m — empty for never';
  if (f.scopes.size === 0) errors.scopes = 'choose at least one scope (inference lets the key call models)';
  return errors;
}

/** Only what changed is sent: an unchanged lock is never "new use" of a plan feature. */
function patchOf(f: KeyForm, k: LimitedKey): Record<string, unknown> {
  const same = (a: readonly string[], b: readonly string[]) => a.length === b.length && a.every((x, i) => x === b[i]);
  const amount = (t: string) => (t.trim() === '' ? null : Number(t.trim().replace(/^\$/, '')));
  const patch: Record<string, unknown> = {};
  if (f.name !== k.name) patch.name = f.name;
  if (!same(cityList(f.cities), k.allowedCities)) patch.cities = cityList(f.cities);
  if (!same(modelList(f.models), k.allowedModels)) patch.models = modelList(f.models);
  if (amount(f.dailyLimit) !== k.dailyLimit) patch.dailyLimit = amount(f.dailyLimit);
  if (amount(f.lifetimeLimit) !== k.lifetimeLimit) patch.lifetimeLimit = amount(f.lifetimeLimit);
  if (amount(f.weeklyLimit) !== (k.weeklyLimit ?? null)) patch.weeklyLimit = amount(f.weeklyLimit);
  if (amount(f.monthlyLimit) !== (k.monthlyLimit ?? null)) patch.monthlyLimit = amount(f.monthlyLimit);
  if (amount(f.rpm) !== (k.rpm ?? null)) patch.rpm = amount(f.rpm);
  if (amount(f.tpm) !== (k.tpm ?? null)) patch.tpm = amount(f.tpm);
  const expiry = f.expiresAt.trim();
  if ((expiry === '' ? null : expiryMs(expiry)) !== (k.expiresAt ?? null)) patch.expiresAt = expiry === '' ? null : expiry;
  if (f.inactiveExpiry.trim() !== idleText(k.inactiveExpiryMs)) patch.inactiveExpiry = f.inactiveExpiry.trim() || 'off';
  const autoLock = ['ip', ...(f.autoDevice ? ['device'] : []), ...(f.autoCity ? ['city'] : [])];
  if (!same(autoLock, k.autoLock)) patch.autoLock = autoLock;
  if (f.requireSignature !== k.requireSignature) patch.requireSignature = f.requireSignature;
  const atoms = [...f.scopes].sort();
  if (!same(atoms, [...scopeAtoms(k.scopes ?? ['inference'])].sort())) patch.scopes = atoms;
  return patch;
}

/** A label, its input and the message for that field (linked by aria-describedby). */
function FieldError({ field, errors }: { field: Field; errors: Partial<Record<Field, string>> }) {
  if (!errors[field]) return null;
  return (
    <span class="field-error" id={`err-${field}`} role="alert" data-testid={`error-${field}`}>
      {errors[field]}
    </span>
  );
}

/**
 * The Edit Key dialog: cities, models, scopes, limits, expiry, signature and auto-lock. The form
 * keeps everything typed until it is saved: a refusal (in the browser or by the server) marks the
 * field it is about and changes nothing else, so the next Save sends every change again.
 */
function EditKey({ k, onClose }: { k: LimitedKey; onClose: (changed: boolean) => void }) {
  const [form, setForm] = useState<KeyForm>(() => formOf(k));
  const [errors, setErrors] = useState<Partial<Record<Field, string>>>({});
  const [unknown, setUnknown] = useState<ApiError>();
  const [failure, setFailure] = useState<unknown>();
  const [secret, setSecret] = useState('');
  const [busy, setBusy] = useState(false);
  const set = <F extends keyof KeyForm>(field: F, value: KeyForm[F]) => {
    setForm((f) => ({ ...f, [field]: value }));
    setUnknown(undefined);
  };
  const text = (field: TextField) => ({
    name: field,
    value: form[field],
    onInput: (e: Event) => set(field, (e.currentTarget as HTMLInputElement).value),
    'aria-invalid': errors[field] ? ('true' as const) : undefined,
    'aria-describedby': errors[field] ? `err-${field}` : undefined,
  });
  const toggleScope = (atom: string) => {
    const next = new Set(form.scopes);
    if (next.has(atom)) next.delete(atom);
    else next.add(atom);
    set('scopes', next);
  };

  const save = async (confirmUnknown: boolean) => {
    const found = validateKeyForm(form);
    setErrors(found);
    setFailure(undefined);
    if (Object.keys(found).length) return;
    const patch = patchOf(form, k);
    if (Object.keys(patch).length === 0) return onClose(false);
    setBusy(true);
    try {
      const r = await admin<{ signingSecret?: string }>('PATCH', `/keys/${k.id}`, confirmUnknown ? { ...patch, confirmUnknown: true } : patch);
      if (r.signingSecret) setSecret(r.signingSecret);
      else onClose(true);
    } catch (err) {
      if (err instanceof ApiError && (err.code === 'unknown_city' || err.code === 'unknown_model')) setUnknown(err);
      if (err instanceof ApiError && err.param) setErrors({ [err.param]: err.message });
      else setFailure(err);
    } finally {
      setBusy(false);
    }
  };

  return (
    <div class="modal-backdrop" role="dialog" aria-label="Edit key">
      <form
        class="modal"
        noValidate
        onSubmit={(e) => {
          e.preventDefault();
          void save(false);
        }}
      >
        <h3>Edit key {k.name}</h3>
        <div class="field">
          <label>
            Name <input {...text('name')} />
          </label>
          <FieldError field="name" errors={errors} />
        </div>
        <div class="field">
          <label>
            Cities <input {...text('cities')} placeholder='e.g. London, GB; Paris — empty: any city' />
          </label>
            <span class="hint" id="hint-cities">Separate cities with ";". A city may carry its country code: "London, GB".</span>
          <FieldError field="cities" errors={errors} />
        </div>
        <div class="field">
          <label>
            Models <input {...text('models')} placeholder="e.g. gpt-4o-mini, gpt-4o — empty: any model" />
          </label>
          <FieldError field="models" errors={errors} />
        </div>
        <div class="field">
          <label>
            Daily limit ($) <input {...text('dailyLimit')} inputMode="decimal" placeholder="empty: no cap" />
          </label>
          <FieldError field="dailyLimit" errors={errors} />
        </div>
        <div class="field">
          <label>
            Weekly limit ($) <input {...text('weeklyLimit')} inputMode="decimal" placeholder="UTC week from Monday — empty: no cap" />
          </label>
          <FieldError field="weeklyLimit" errors={errors} />
        </div>
        <div class="field">
          <label>
            Monthly limit ($) <input {...text('monthlyLimit')} inputMode="decimal" placeholder="UTC calendar month — empty: no cap" />
          </label>
          <FieldError field="monthlyLimit" errors={errors} />
        </div>
        <div class="field">
          <label>
            Lifetime limit ($) <input {...text('lifetimeLimit')} inputMode="decimal" placeholder="empty: no cap" />
          </label>
          <FieldError field="lifetimeLimit" errors={errors} />
        </div>
        <div class="field">
          <label>
            Requests per minute <input {...text('rpm')} inputMode="numeric" placeholder="empty: no limit" />
          </label>
          <FieldError field="rpm" errors={errors} />
        </div>
        <div class="field">
          <label>
            Tokens per minute <input {...text('tpm')} inputMode="numeric" placeholder="input + output — empty: no limit" />
          </label>
          <FieldError field="tpm" errors={errors} />
        </div>
        <div class="field">
          <label>
            Expires at <input {...text('expiresAt')} placeholder="e.g. 2027-01-31 (00:00 UTC) — empty: never" />
          </label>
          <FieldError field="expiresAt" errors={errors} />
        </div>
        <div class="field">
          <label>
            Expire after idle <input {...text('inactiveExpiry')} placeholder="e.g. 7d, 12h — empty: never" />
          </label>
          <FieldError field="inactiveExpiry" errors={errors} />
        </div>
        <label class="check">
          <input type="checkbox" checked={form.requireSignature} onChange={(e) => set('requireSignature', (e.currentTarget as HTMLInputElement).checked)} /> Require signed
          requests
        </label>
        <fieldset>
          <legend>Self-healing identity: bind on first use to</legend>
          <label class="check">
            <input type="checkbox" checked disabled /> IP
          </label>
          <label class="check">
            <input type="checkbox" checked={form.autoDevice} onChange={(e) => set('autoDevice', (e.currentTarget as HTMLInputElement).checked)} /> device
          </label>
          <label class="check">
            <input type="checkbox" checked={form.autoCity} onChange={(e) => set('autoCity', (e.currentTarget as HTMLInputElement).checked)} /> city
          </label>
          <FieldError field="autoLock" errors={errors} />
        </fieldset>
        <fieldset class="scopes" data-testid="scopes" aria-invalid={errors.scopes ? 'true' : undefined}>
          <legend>Scopes: what the key may do (nothing else is allowed)</legend>
          <label class="check">
            <input type="checkbox" aria-label="inference" checked={form.scopes.has('inference')} onChange={() => toggleScope('inference')} /> inference — call models and list
            them
          </label>
          <table class="scope-grid">
            <thead>
              <tr>
                <th />
                {ACCESS.map((a) => (
                  <th key={a}>{a}</th>
                ))}
              </tr>
            </thead>
            <tbody>
              {SCOPE_KINDS.map((kind) => (
                <tr key={kind}>
                  <th>{kind.replace('_', ' ')}</th>
                  {ACCESS.map((a) => (
                    <td key={a}>
                      <input type="checkbox" aria-label={scopeLabel(kind, a)} checked={form.scopes.has(`${kind}:${a}`)} onChange={() => toggleScope(`${kind}:${a}`)} />
                    </td>
                  ))}
                </tr>
              ))}
            </tbody>
          </table>
          <span class="hint">Deleting is never implied: tick delete only where the key must delete.</span>
          <FieldError field="scopes" errors={errors} />
        </fieldset>
        {unknown && (
          <p class="notice" data-testid="unknown-warning">
            {unknown.code === 'unknown_city' ? 'Unknown city' : 'Unknown model'}: {unknown.unknown.join(', ')}. A key limited to it would refuse every request.{' '}
            <button type="button" onClick={() => void save(true)} disabled={busy}>
              Save anyway
            </button>
          </p>
        )}
        <Failure error={failure} />
        {secret && (
          <p class="notice">
            Signing secret (shown once): <code>{secret}</code>
          </p>
        )}
        <div class="actions">
          <button type="button" onClick={() => onClose(secret !== '')}>
            {secret ? 'Done' : 'Cancel'}
          </button>
          {!secret && (
            <button type="submit" disabled={busy}>
              Save
            </button>
          )}
        </div>
      </form>
    </div>
  );
}

/** The new key, once: a copy button and ready client snippets (as `securegate env` prints them). */
function NewKey({ created }: { created: { id: string; key: string } }) {
  const [copied, setCopied] = useState(false);
  const base = `${location.origin}/v1`;
  const snippets: Array<[string, string]> = [
    ['env', `export OPENAI_BASE_URL=${base}\nexport OPENAI_API_KEY=${created.key}`],
    ['node', `import OpenAI from 'openai';\nconst client = new OpenAI({ baseURL: '${base}', apiKey: process.env.OPENAI_API_KEY });`],
    ['python', `from openai import OpenAI\nclient = OpenAI(base_url="${base}", api_key=os.environ["OPENAI_API_KEY"])`],
  ];
  const copy = async () => {
    await navigator.clipboard?.writeText(created.key).catch(() => undefined);
    setCopied(true);
  };
  return (
    <div class="notice" data-testid="new-key">
      <p>
        New key (shown once — copy it now): <code data-testid="new-key-value">{created.key}</code>{' '}
        <button type="button" onClick={copy}>
          {copied ? 'Copied' : 'Copy'}
        </button>
      </p>
      {snippets.map(([lang, code]) => (
        <details key={lang}>
          <summary>{lang}</summary>
          <pre data-testid={`snippet-${lang}`}>{code}</pre>
        </details>
      ))}
    </div>
  );
}

export function Keys() {
  const { data: keys, error, reload } = useAdmin<LimitedKey[]>('/keys');
  const { data: connections } = useAdmin<Connection[]>('/connections');
  const [editing, setEditing] = useState<LimitedKey>();
  const [created, setCreated] = useState<{ id: string; key: string }>();
  const [failure, setFailure] = useState<unknown>();

  const act = (k: Key, action: string) => async () => {
    if (action === 'revoke' && !confirm(`Revoke ${k.name}? This cannot be undone.`)) return;
    try {
      await admin('POST', `/keys/${k.id}/${action}`);
      reload();
    } catch (err) {
      setFailure(err);
    }
  };
  const create = async (e: Event) => {
    e.preventDefault();
    const f = new FormData(e.currentTarget as HTMLFormElement);
    const daily = String(f.get('dailyLimit') ?? '').trim();
    const models = modelList(String(f.get('models') ?? ''));
    if (daily !== '' && !(Number(daily) >= 0)) return setFailure(new Error('Daily limit: a dollar amount, e.g. 5 or 0.50 — empty for no cap'));
    try {
      const k = await admin<{ id: string; key: string }>('POST', '/keys', {
        connectionId: String(f.get('connectionId')),
        ...(f.get('name') ? { name: String(f.get('name')) } : {}),
        ...(daily !== '' ? { dailyLimit: Number(daily) } : {}),
        ...(models.length ? { models } : {}),
      });
      setCreated(k);
      setFailure(undefined);
      reload();
    } catch (err) {
      setFailure(err);
    }
  };

  return (
    <section>
      <h2>Keys</h2>
      <Failure error={error ?? failure} />
      {created && <NewKey created={created} />}
      {connections && connections.length === 0 && <p class="muted">Connect a provider first (Connections page); then create keys for it here.</p>}
      <form class="grid" onSubmit={create}>
        <label>
          Connection
          <select name="connectionId">
            {(connections ?? []).map((c) => (
              <option key={c.id} value={c.id}>
                {c.name} ({c.provider})
              </option>
            ))}
          </select>
        </label>
        <label>
          Name <input name="name" placeholder="e.g. agent on laptop" />
        </label>
        <label>
          Daily limit ($) <input name="dailyLimit" inputMode="decimal" placeholder="empty: no cap" />
        </label>
        <label>
          Models <input name="models" placeholder="empty: any model" />
        </label>
        <button type="submit" disabled={!connections?.length}>
          Create key
        </button>
      </form>
      {keys && keys.length === 0 && <p class="muted" data-testid="keys-empty">No keys yet. Create one above; it is shown once.</p>}
      <table data-testid="keys" class="cards">
        <thead>
          <tr>
            <th>Name</th>
            <th>Key</th>
            <th>Status</th>
            <th>Spent today / cap</th>
            <th>Lifetime</th>
            <th>Limits</th>
            <th>Last used</th>
            <th>Locks</th>
            <th />
          </tr>
        </thead>
        <tbody>
          {(keys ?? []).map((k) => (
            <tr key={k.id} data-key-id={k.id}>
              <td data-label="Name">{k.name}</td>
              <td data-label="Key" class="mono">
                {k.hint}
              </td>
              <td data-label="Status">
                <span class={`status ${k.status}`} data-testid="status">
                  {k.status}
                </span>
              </td>
              <td data-label="Today / cap" data-testid="spend-today">
                {money(k.spentToday ?? 0)} / {k.dailyLimit === null ? 'no cap' : money(k.dailyLimit)}
              </td>
              <td data-label="Lifetime" data-testid="spend-lifetime">
                {money(k.spentLifetime ?? 0)}
                {k.lifetimeLimit === null ? '' : ` / ${money(k.lifetimeLimit)}`}
              </td>
              <td data-label="Limits" data-testid="limits">
                {limitsSummary(k).join(' · ') || '—'}
              </td>
              <td data-label="Last used" data-testid="last-used" title={when(k.lastUsedAt)}>
                {ago(k.lastUsedAt)}
              </td>
              <td data-label="Locks" data-testid="locks">
                {lockSummary(k).join(' · ')}
              </td>
              <td class="actions">
                {k.status !== 'revoked' && <button onClick={() => setEditing(k)}>Edit</button>}
                {k.status === 'active' && (
                  <button class="danger" onClick={act(k, 'kill')}>
                    Kill
                  </button>
                )}
                {(k.status === 'killed' || k.status === 'expired') && <button onClick={act(k, 'activate')}>Activate</button>}
                {k.status !== 'revoked' && <button onClick={act(k, 'repin')}>Repin</button>}
                {k.status !== 'revoked' && (
                  <button class="danger" onClick={act(k, 'revoke')}>
                    Revoke
                  </button>
                )}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      {editing && (
        <EditKey
          k={editing}
          onClose={(changed) => {
            setEditing(undefined);
            if (changed) reload();
          }}
        />
      )}
    </section>
  );
}
