/**
 * The dashboard's only way to the server: same-origin fetch with the session cookie (HttpOnly,
 * never readable here) and the session's CSRF token on every write.
 */
import type { AccountView } from '../../protocol/index.ts';

let csrfToken = '';

export function setCsrf(token: string): void {
  csrfToken = token;
}

export class ApiError extends Error {
  readonly status: number;
  readonly code: string;
  /** The request field the server refused, when it named one (e.g. `cities`, `dailyLimit`). */
  readonly param: string | null;
  /** For unknown_city / unknown_model: the entries the server does not know. */
  readonly unknown: string[];
  constructor(status: number, code: string, message: string, param: string | null = null, unknown: string[] = []) {
    super(message);
    this.status = status;
    this.code = code;
    this.param = param;
    this.unknown = unknown;
  }
}

export async function api<T>(method: string, path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = {};
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (method !== 'GET') headers['x-csrf-token'] = csrfToken;
  const res = await fetch(path, { method, headers, credentials: 'same-origin', ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });
  const json = (await res.json().catch(() => ({}))) as { error?: { code?: string; message?: string; param?: string | null; unknown?: string[] } };
  if (!res.ok) throw new ApiError(res.status, json.error?.code ?? 'error', json.error?.message ?? `HTTP ${res.status}`, json.error?.param ?? null, json.error?.unknown ?? []);
  return json as T;
}

export const admin = <T>(method: string, path: string, body?: unknown) => api<T>(method, `/admin/v1${path}`, body);

export interface Session {
  account: { id: string; name: string; plan: string };
  role: string;
  csrfToken: string;
}

export type Account = AccountView;

export interface Connection {
  id: string;
  name: string;
  provider: string;
  origin: string;
  projectId: string;
  threshold: number;
  createdAt: number;
}

export interface Key {
  id: string;
  name: string;
  hint: string;
  projectId: string;
  connectionId: string;
  status: string;
  boundIp: string | null;
  allowedCities: string[];
  deviceBound: boolean;
  allowedModels: string[];
  requireSignature: boolean;
  inactiveExpiryMs: number | null;
  suspendedUntil: number | null;
  dailyLimit: number | null;
  lifetimeLimit: number | null;
  autoLock: string[];
  scopes: string[];
  boundCity: string | null;
  lastUsedAt: number | null;
  /** Settled spend today (UTC) and over the key's life, in dollars. */
  spentToday: number;
  spentLifetime: number;
}

/** Dollars precise enough to read ($0.003, never $0.00) and "3 minutes ago": the same as the CLI's. */
export { formatUsd as money, timeAgo as ago } from '../../protocol/display.ts';
export const when = (t: number | null | undefined) => (t ? new Date(t).toISOString().replace('T', ' ').slice(0, 19) : '—');
