/**
 * SecureGate dashboard: log in, then manage connections, keys and their locks, models, usage,
 * the audit log, alerts and the enclave's attestation. Hash routes (#/keys …); every call goes
 * through api.ts with the session cookie and CSRF token.
 */
import { render } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { api, setCsrf, type Session } from './api.ts';
import { Login } from './login.tsx';
import { Keys } from './keys.tsx';
import { Alerts, Attestation, Connections, Models, Overview } from './pages.tsx';
import { AuditLog, Usage } from './reports.tsx';
import { UsageVerify } from './usage-verify.tsx';
import './style.css';

const PAGES = [
  ['overview', 'Overview'],
  ['connections', 'Connections'],
  ['keys', 'Keys'],
  ['models', 'Models'],
  ['usage', 'Usage'],
  ['usage-verify', 'Usage check'],
  ['audit', 'Audit log'],
  ['alerts', 'Alerts'],
  ['attestation', 'Attestation'],
] as const;
type Page = (typeof PAGES)[number][0];

function currentPage(): Page {
  const name = location.hash.replace(/^#\/?/, '');
  return (PAGES.find(([id]) => id === name)?.[0] ?? 'overview') as Page;
}

function App() {
  const [session, setSession] = useState<Session | null | undefined>(undefined);
  const [page, setPage] = useState<Page>(currentPage());

  useEffect(() => {
    const onHash = () => setPage(currentPage());
    addEventListener('hashchange', onHash);
    api<Session>('GET', '/auth/v1/session')
      .then((s) => {
        setCsrf(s.csrfToken);
        setSession(s);
      })
      .catch(() => setSession(null));
    return () => removeEventListener('hashchange', onHash);
  }, []);

  if (session === undefined) return <p class="muted">Loading…</p>;
  if (session === null) {
    return (
      <Login
        onLogin={(s) => {
          setCsrf(s.csrfToken);
          setSession(s);
        }}
      />
    );
  }
  const logout = async () => {
    await api('POST', '/auth/v1/logout');
    setSession(null);
  };
  return (
    <div class="shell">
      <header>
        <strong>SecureGate</strong>
        <span class="account" data-testid="account">
          {session.account.name} · <span class="badge" data-testid="plan-badge">{session.account.plan}</span> · {session.role}
        </span>
        <button class="link" onClick={logout}>
          Log out
        </button>
      </header>
      <nav>
        {PAGES.map(([id, label]) => (
          <a key={id} href={`#/${id}`} class={page === id ? 'active' : ''}>
            {label}
          </a>
        ))}
      </nav>
      <main>
        {page === 'overview' && <Overview />}
        {page === 'connections' && <Connections />}
        {page === 'keys' && <Keys />}
        {page === 'models' && <Models />}
        {page === 'usage' && <Usage />}
        {page === 'usage-verify' && <UsageVerify />}
        {page === 'audit' && <AuditLog />}
        {page === 'alerts' && <Alerts />}
        {page === 'attestation' && <Attestation />}
      </main>
    </div>
  );
}

render(<App />, document.getElementById('app')!);
