import { useState } from 'preact/hooks';
import { api, ApiError, type Session } from './api.ts';

export function Login({ onLogin }: { onLogin: (s: Session) => void }) {
  const [mode, setMode] = useState<'login' | 'signup'>('login');
  const [error, setError] = useState('');
  const [busy, setBusy] = useState(false);

  const submit = async (e: Event) => {
    e.preventDefault();
    const form = new FormData(e.currentTarget as HTMLFormElement);
    const body: Record<string, string> = { email: String(form.get('email')), password: String(form.get('password')) };
    if (mode === 'signup' && form.get('invite')) body.invite = String(form.get('invite'));
    setBusy(true);
    setError('');
    try {
      onLogin(await api<Session>('POST', mode === 'login' ? '/auth/v1/login' : '/auth/v1/signup', body));
    } catch (err) {
      setError(err instanceof ApiError ? err.message : 'cannot reach the server');
    } finally {
      setBusy(false);
    }
  };

  return (
    <div class="login">
      <h1>SecureGate</h1>
      <form onSubmit={submit}>
        <label>
          Email <input name="email" type="email" autocomplete="username" required />
        </label>
        <label>
          Password <input name="password" type="password" autocomplete={mode === 'login' ? 'current-password' : 'new-password'} minLength={mode === 'signup' ? 10 : 1} required />
        </label>
        {mode === 'signup' && (
          <label>
            Invite <input name="invite" placeholder="sgi_… (from an owner or the operator)" />
          </label>
        )}
        {error && (
          <p class="error" role="alert">
            {error}
          </p>
        )}
        <button type="submit" disabled={busy}>
          {mode === 'login' ? 'Log in' : 'Sign up'}
        </button>
      </form>
      <button class="link" onClick={() => setMode(mode === 'login' ? 'signup' : 'login')}>
        {mode === 'login' ? 'I have an invite — sign up' : 'I have an account — log in'}
      </button>
    </div>
  );
}
