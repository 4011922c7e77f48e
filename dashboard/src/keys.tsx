import { useState } from 'preact/hooks';
import { admin, money, when, type Connection, type Key } from './api.ts';
import { Failure, useAdmin } from './pages.tsx';

function lockSummary(k: Key): string[] {
  const locks: string[] = [];
  locks.push(k.boundIp ? `IP ${k.boundIp}` : 'IP: binds on first use');
  if (k.allowedCities.length) locks.push(`cities ${k.allowedCities.join(', ')}`);
  if (k.autoLock.includes('city')) locks.push(k.boundCity ? `city ${k.boundCity}` : 'city: binds on first use');
  if (k.deviceBound) locks.push('device bound');
  else if (k.autoLock.includes('device')) locks.push('device: binds on first use');
  if (k.allowedModels.length) locks.push(`models ${k.allowedModels.join(', ')}`);
  if (k.requireSignature) locks.push('signed requests');
  if (k.inactiveExpiryMs) locks.push(`expires after ${Math.round(k.inactiveExpiryMs / 86_400_000)}d idle`);
  return locks;
}

const list = (text: FormDataEntryValue | null) =>
  String(text ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
const dollars = (text: FormDataEntryValue | null) => (String(text ?? '').trim() === '' ? null : Number(text));

/** The Edit Key dialog: cities, models, limits, expiry, signature and auto-lock. */
function EditKey({ k, onClose }: { k: Key; onClose: (changed: boolean) => void }) {
  const [failure, setFailure] = useState<unknown>();
  const [secret, setSecret] = useState('');
  const days = k.inactiveExpiryMs ? `${Math.round(k.inactiveExpiryMs / 86_400_000)}d` : '';
  const save = async (e: Event) => {
    e.preventDefault();
    const f = new FormData(e.currentTarget as HTMLFormElement);
    const autoLock = ['ip', ...(f.get('autoDevice') ? ['device'] : []), ...(f.get('autoCity') ? ['city'] : [])];
    const requireSignature = f.get('requireSignature') === 'on';
    // Only what changed is sent: an unchanged lock is never "new use" of a plan feature.
    const same = (a: string[], b: string[]) => a.length === b.length && a.every((x, i) => x === b[i]);
    const patch: Record<string, unknown> = {};
    if (String(f.get('name')) !== k.name) patch.name = String(f.get('name'));
    if (!same(list(f.get('cities')), k.allowedCities)) patch.cities = list(f.get('cities'));
    if (!same(list(f.get('models')), k.allowedModels)) patch.models = list(f.get('models'));
    if (dollars(f.get('dailyLimit')) !== k.dailyLimit) patch.dailyLimit = dollars(f.get('dailyLimit'));
    if (dollars(f.get('lifetimeLimit')) !== k.lifetimeLimit) patch.lifetimeLimit = dollars(f.get('lifetimeLimit'));
    if (String(f.get('inactiveExpiry')) !== days) patch.inactiveExpiry = String(f.get('inactiveExpiry') || 'off');
    if (!same(autoLock, k.autoLock)) patch.autoLock = autoLock;
    if (requireSignature !== k.requireSignature) patch.requireSignature = requireSignature;
    try {
      const r = Object.keys(patch).length ? await admin<{ signingSecret?: string }>('PATCH', `/keys/${k.id}`, patch) : {};
      if (r.signingSecret) setSecret(r.signingSecret);
      else onClose(true);
    } catch (err) {
      setFailure(err);
    }
  };
  return (
    <div class="modal-backdrop" role="dialog" aria-label="Edit key">
      <form class="modal" onSubmit={save}>
        <h3>Edit key {k.name}</h3>
        <label>
          Name <input name="name" value={k.name} />
        </label>
        <label>
          Cities <input name="cities" value={k.allowedCities.join(', ')} placeholder="e.g. London, GB, Paris — empty: any city" />
        </label>
        <label>
          Models <input name="models" value={k.allowedModels.join(', ')} placeholder="empty: any model" />
        </label>
        <label>
          Daily limit ($) <input name="dailyLimit" type="number" step="0.01" min="0" value={k.dailyLimit ?? ''} />
        </label>
        <label>
          Lifetime limit ($) <input name="lifetimeLimit" type="number" step="0.01" min="0" value={k.lifetimeLimit ?? ''} />
        </label>
        <label>
          Expire after idle <input name="inactiveExpiry" value={days} placeholder="e.g. 7d, 12h — empty: never" />
        </label>
        <label class="check">
          <input name="requireSignature" type="checkbox" checked={k.requireSignature} /> Require signed requests
        </label>
        <fieldset>
          <legend>Self-healing identity: bind on first use to</legend>
          <label class="check">
            <input type="checkbox" checked disabled /> IP
          </label>
          <label class="check">
            <input name="autoDevice" type="checkbox" checked={k.autoLock.includes('device')} /> device
          </label>
          <label class="check">
            <input name="autoCity" type="checkbox" checked={k.autoLock.includes('city')} /> city
          </label>
        </fieldset>
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
          {!secret && <button type="submit">Save</button>}
        </div>
      </form>
    </div>
  );
}

export function Keys() {
  const { data: keys, error, reload } = useAdmin<Key[]>('/keys');
  const { data: connections } = useAdmin<Connection[]>('/connections');
  const [editing, setEditing] = useState<Key>();
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
    try {
      const k = await admin<{ id: string; key: string }>('POST', '/keys', { connectionId: String(f.get('connectionId')), ...(f.get('name') ? { name: String(f.get('name')) } : {}) });
      setCreated(k);
      reload();
    } catch (err) {
      setFailure(err);
    }
  };

  return (
    <section>
      <h2>Keys</h2>
      <Failure error={error ?? failure} />
      {created && (
        <p class="notice" data-testid="new-key">
          New key (shown once — copy it now): <code data-testid="new-key-value">{created.key}</code>
        </p>
      )}
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
        <button type="submit" disabled={!connections?.length}>
          Create key
        </button>
      </form>
      <table data-testid="keys">
        <thead>
          <tr>
            <th>Name</th>
            <th>Key</th>
            <th>Status</th>
            <th>Locks</th>
            <th>Limits</th>
            <th>Last used</th>
            <th />
          </tr>
        </thead>
        <tbody>
          {(keys ?? []).map((k) => (
            <tr key={k.id} data-key-id={k.id}>
              <td>{k.name}</td>
              <td class="mono">{k.hint}</td>
              <td>
                <span class={`status ${k.status}`} data-testid="status">
                  {k.status}
                </span>
              </td>
              <td data-testid="locks">{lockSummary(k).join(' · ')}</td>
              <td>
                {money(k.dailyLimit)}/day · {money(k.lifetimeLimit)} total
              </td>
              <td>{when(k.lastUsedAt)}</td>
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
