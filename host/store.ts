/**
 * The host's repository over either engine (host/db.ts): projects, connections (sealed records
 * and metadata only — never a plaintext key or DEK), SG_ keys (HMAC hashes only) with their
 * locks, model aliases, the signature replay cache and lock/alert events. Schema changes are
 * numbered migrations, applied at start and by `node host/main.ts migrate`.
 * Key changes are announced on the `sg_key_changed` channel so every instance drops its cache.
 */
import { randomBytes } from 'node:crypto';
import type { AuthScheme } from '../protocol/index.ts';
import type { Row, SqlDb, SqlValue } from '../storage/db.ts';

export const DEFAULT_PROJECT = 'proj_default';
/** The plan the operator's own account starts on (change it with the admin API). */
export const DEFAULT_ACCOUNT_PLAN = 'enterprise';
export const KEY_CHANGED_CHANNEL = 'sg_key_changed';

export interface ConnectionRecord {
  id: string;
  projectId: string;
  name: string;
  provider: string;
  origin: string;
  authScheme: AuthScheme;
  /** Base64 of the sealed key record. */
  sealedRecord: string;
  threshold: number;
  shareholders: string[];
  /** Any-API connections: the canonical allow-list sealed into the record. */
  allow: string | null;
  /** JSON SignedOwnerMessage of a 0x03 record (protocol/SPEC.md §9); null (or absent) for older records. */
  policy?: string | null;
  /**
   * JSON `[{ id, publicKey }]`: the shareholder set a 0x04 record is sealed with, as the owner's
   * CLI or dashboard pinned it (protocol/SPEC.md §1); relayed in every descriptor. Null (or
   * absent) for older records, which the enclave serves with its configured shareholder keys.
   */
  shareholderSet?: string | null;
  createdAt: number;
}

export type KeyStatus = 'active' | 'killed' | 'revoked' | 'expired';

export interface KeyRecord {
  id: string;
  hash: string;
  hint: string;
  name: string;
  projectId: string;
  connectionId: string;
  status: KeyStatus;
  boundIp: string | null;
  boundAt: number | null;
  allowedCities: string[];
  deviceHash: string | null;
  deviceSalt: string | null;
  allowedModels: string[];
  requireSignature: boolean;
  signingSecret: string | null;
  inactiveExpiryMs: number | null;
  lastUsedAt: number | null;
  suspendedUntil: number | null;
  dailyLimitMicros: number | null;
  lifetimeLimitMicros: number | null;
  dailyRequestLimit: number | null;
  /** Spend caps per UTC week (from Monday 00:00) and per UTC calendar month, micro-dollars. */
  weeklyLimitMicros: number | null;
  monthlyLimitMicros: number | null;
  /** Absolute expiry (ms since the epoch): from then on every request is refused `key_expired`. */
  expiresAt: number | null;
  /** Requests and tokens (input + output) per UTC minute. */
  rpmLimit: number | null;
  tpmLimit: number | null;
  autoLock: AutoLock[];
  /**
   * What the key may be used for (host/request/scopes.ts): `inference` by default; files,
   * batches, fine-tuning, vector stores, stored responses and anything that deletes only when the
   * owner grants them (`files:read`, `files:write`, `files:delete`, …).
   */
  scopes: string[];
  /** "City, CC" seen on first use, when the key auto-locks to its city. */
  boundCity: string | null;
  boundCityAt: number | null;
  deviceBoundAt: number | null;
  createdAt: number;
  updatedAt: number;
}

export interface LockEvent {
  id: string;
  at: number;
  projectId: string;
  keyId: string | null;
  type: string;
  detail: Record<string, unknown>;
}

export type KeyPatch = Partial<
  Pick<
    KeyRecord,
    | 'name'
    | 'projectId'
    | 'status'
    | 'boundIp'
    | 'boundAt'
    | 'allowedCities'
    | 'deviceHash'
    | 'deviceSalt'
    | 'allowedModels'
    | 'requireSignature'
    | 'signingSecret'
    | 'inactiveExpiryMs'
    | 'suspendedUntil'
    | 'dailyLimitMicros'
    | 'lifetimeLimitMicros'
    | 'dailyRequestLimit'
    | 'weeklyLimitMicros'
    | 'monthlyLimitMicros'
    | 'expiresAt'
    | 'rpmLimit'
    | 'tpmLimit'
    | 'autoLock'
    | 'scopes'
    | 'boundCity'
    | 'boundCityAt'
    | 'deviceBoundAt'
  >
>;

const MIGRATIONS: string[] = [
  `CREATE TABLE projects (id TEXT PRIMARY KEY, name TEXT NOT NULL, created_at BIGINT NOT NULL);
   CREATE TABLE connections (
     id TEXT PRIMARY KEY, project_id TEXT NOT NULL REFERENCES projects(id), name TEXT NOT NULL,
     provider TEXT NOT NULL, origin TEXT NOT NULL, auth_scheme TEXT NOT NULL, sealed_record TEXT NOT NULL,
     threshold INTEGER NOT NULL, shareholders TEXT NOT NULL, created_at BIGINT NOT NULL);
   CREATE TABLE sg_keys (
     id TEXT PRIMARY KEY, hash TEXT NOT NULL UNIQUE, hint TEXT NOT NULL, name TEXT NOT NULL,
     project_id TEXT NOT NULL REFERENCES projects(id), connection_id TEXT NOT NULL REFERENCES connections(id),
     status TEXT NOT NULL, bound_ip TEXT, bound_at BIGINT, allowed_cities TEXT NOT NULL,
     device_hash TEXT, device_salt TEXT, allowed_models TEXT NOT NULL, require_signature INTEGER NOT NULL,
     signing_secret TEXT, inactive_expiry_ms BIGINT, last_used_at BIGINT, suspended_until BIGINT,
     created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL);
   CREATE TABLE model_aliases (project_id TEXT NOT NULL REFERENCES projects(id), alias TEXT NOT NULL, target TEXT NOT NULL, PRIMARY KEY (project_id, alias));
   CREATE TABLE signature_replay (signature TEXT PRIMARY KEY, expires_at BIGINT NOT NULL);
   CREATE TABLE events (id TEXT PRIMARY KEY, at BIGINT NOT NULL, project_id TEXT NOT NULL, key_id TEXT, type TEXT NOT NULL, detail TEXT NOT NULL);
   CREATE INDEX events_at ON events (at);
   CREATE INDEX sg_keys_project ON sg_keys (project_id);`,
  `ALTER TABLE sg_keys ADD COLUMN daily_limit_micros BIGINT;
   ALTER TABLE sg_keys ADD COLUMN lifetime_limit_micros BIGINT;
   ALTER TABLE projects ADD COLUMN daily_limit_micros BIGINT;
   CREATE TABLE spend_counters (scope TEXT NOT NULL, scope_id TEXT NOT NULL, period TEXT NOT NULL, spent BIGINT NOT NULL, reserved BIGINT NOT NULL, requests BIGINT NOT NULL, PRIMARY KEY (scope, scope_id, period));
   CREATE TABLE reservations (id TEXT PRIMARY KEY, key_id TEXT NOT NULL, project_id TEXT NOT NULL, day TEXT NOT NULL, amount BIGINT NOT NULL, created_at BIGINT NOT NULL, expires_at BIGINT NOT NULL);
   CREATE INDEX reservations_expiry ON reservations (expires_at);
   CREATE TABLE audit_log (
     id TEXT PRIMARY KEY, at BIGINT NOT NULL, request_id TEXT NOT NULL, key_id TEXT, project_id TEXT, connection_id TEXT, provider TEXT,
     model_requested TEXT, model_resolved TEXT, tokens_in BIGINT NOT NULL, tokens_out BIGINT NOT NULL, tokens_cached BIGINT NOT NULL,
     cost_micros BIGINT NOT NULL, status INTEGER NOT NULL, code TEXT, client_ip TEXT, city TEXT, device_match INTEGER, latency_ms INTEGER NOT NULL);
   CREATE INDEX audit_key_at ON audit_log (key_id, at);
   CREATE INDEX audit_at ON audit_log (at);`,
  `CREATE TABLE alert_targets (id TEXT PRIMARY KEY, project_id TEXT NOT NULL, kind TEXT NOT NULL, target TEXT NOT NULL, secret TEXT, created_at BIGINT NOT NULL);
   CREATE TABLE alert_outbox (
     id TEXT PRIMARY KEY, target_id TEXT NOT NULL, event_id TEXT NOT NULL, payload TEXT NOT NULL, attempts INTEGER NOT NULL,
     next_attempt_at BIGINT NOT NULL, delivered_at BIGINT, failed_at BIGINT, last_status INTEGER, last_error TEXT, created_at BIGINT NOT NULL);
   CREATE INDEX alert_outbox_due ON alert_outbox (next_attempt_at);`,
  `ALTER TABLE reservations ADD COLUMN reclaimed INTEGER NOT NULL DEFAULT 0;
   ALTER TABLE connections ADD COLUMN allow_list TEXT;
   ALTER TABLE sg_keys ADD COLUMN daily_request_limit BIGINT;`,
  `ALTER TABLE sg_keys ADD COLUMN auto_lock TEXT NOT NULL DEFAULT '["ip"]';
   ALTER TABLE sg_keys ADD COLUMN bound_city TEXT;
   ALTER TABLE sg_keys ADD COLUMN bound_city_at BIGINT;
   ALTER TABLE sg_keys ADD COLUMN device_bound_at BIGINT;`,
  `CREATE TABLE accounts (id TEXT PRIMARY KEY, name TEXT NOT NULL, plan TEXT NOT NULL, default_project TEXT NOT NULL, created_at BIGINT NOT NULL);
   ALTER TABLE projects ADD COLUMN account_id TEXT NOT NULL DEFAULT 'acct_default';
   CREATE INDEX projects_account ON projects (account_id);
   CREATE TABLE users (id TEXT PRIMARY KEY, email TEXT NOT NULL UNIQUE, password_hash TEXT NOT NULL, created_at BIGINT NOT NULL);
   CREATE TABLE memberships (account_id TEXT NOT NULL, user_id TEXT NOT NULL, role TEXT NOT NULL, created_at BIGINT NOT NULL, PRIMARY KEY (account_id, user_id));
   CREATE TABLE admin_tokens (id TEXT PRIMARY KEY, account_id TEXT NOT NULL, hash TEXT NOT NULL UNIQUE, name TEXT NOT NULL, role TEXT NOT NULL, created_at BIGINT NOT NULL, last_used_at BIGINT, revoked_at BIGINT);
   CREATE TABLE sessions (hash TEXT PRIMARY KEY, user_id TEXT NOT NULL, account_id TEXT NOT NULL, csrf TEXT NOT NULL, created_at BIGINT NOT NULL, expires_at BIGINT NOT NULL);
   CREATE TABLE invites (hash TEXT PRIMARY KEY, account_id TEXT, role TEXT NOT NULL, created_at BIGINT NOT NULL, expires_at BIGINT NOT NULL, used_at BIGINT)`,
  `ALTER TABLE projects ADD COLUMN default_auto_lock TEXT`,
  `ALTER TABLE admin_tokens ADD COLUMN user_id TEXT`,
  `ALTER TABLE memberships ADD COLUMN projects TEXT;
   ALTER TABLE invites ADD COLUMN projects TEXT`,
  // Existing keys get the default too (inference only): an upgrade closes the endpoints a stolen
  // key could reach; owners grant more with `securegate keys update --scopes`.
  `ALTER TABLE sg_keys ADD COLUMN scopes TEXT NOT NULL DEFAULT '["inference"]'`,
  // Every request is now reserved (host/spend.ts): `held` says whether the counters' `reserved`
  // include the amount (capped keys) or not (uncapped: only the row); `charged` is what the sweep
  // charged when it reclaimed the reservation (NULL: reclaimed before that rule, nothing charged).
  `ALTER TABLE reservations ADD COLUMN held INTEGER NOT NULL DEFAULT 1;
   ALTER TABLE reservations ADD COLUMN charged BIGINT`,
  // The owner-signed connection policy of a 0x03 sealed record (protocol/SPEC.md §9): relayed to
  // the enclave, which verifies it against the record and enforces it; the host only stores it.
  `ALTER TABLE connections ADD COLUMN connection_policy TEXT`,
  // What a request called ("POST /v1/chat/completions"), refused ones included.
  `ALTER TABLE audit_log ADD COLUMN endpoint TEXT`,
  // Budget periods and limits per key (issue 20): weekly and monthly caps, an absolute expiry,
  // requests and tokens per minute. A reservation of a rate-limited key names the UTC minute whose
  // counters it holds and the token bound it holds there (host/spend.ts).
  `ALTER TABLE sg_keys ADD COLUMN weekly_limit_micros BIGINT;
   ALTER TABLE sg_keys ADD COLUMN monthly_limit_micros BIGINT;
   ALTER TABLE sg_keys ADD COLUMN expires_at BIGINT;
   ALTER TABLE sg_keys ADD COLUMN rpm_limit BIGINT;
   ALTER TABLE sg_keys ADD COLUMN tpm_limit BIGINT;
   ALTER TABLE reservations ADD COLUMN minute TEXT;
   ALTER TABLE reservations ADD COLUMN tokens BIGINT NOT NULL DEFAULT 0`,
  // The enclave's signed usage receipts, kept as signed beside the audit trail, and the attestation
  // document that binds each receipt key (protocol/SPEC.md §10; host/receipts.ts). Duplicates are
  // representable on purpose: `usage --verify` must be able to see a replay, not have it hidden.
  `CREATE TABLE usage_receipts (id TEXT PRIMARY KEY, enclave_key TEXT NOT NULL, seq BIGINT NOT NULL, connection_id TEXT NOT NULL, day INTEGER NOT NULL, signed TEXT NOT NULL, received_at BIGINT NOT NULL);
   CREATE INDEX usage_receipts_conn_day ON usage_receipts (connection_id, day);
   CREATE INDEX usage_receipts_key_seq ON usage_receipts (enclave_key, seq);
   CREATE TABLE receipt_keys (enclave_key TEXT PRIMARY KEY, document TEXT NOT NULL, first_seen BIGINT NOT NULL)`,
  // The shareholder set (ids and identity keys) a 0x04 sealed record binds (protocol/SPEC.md §1):
  // the host only stores and relays it; the enclave checks it against the record's AAD.
  `ALTER TABLE connections ADD COLUMN shareholder_set TEXT`,
];

/** What a key locks itself to on first successful use ("self-healing identity"). */
export const AUTO_LOCKS = ['ip', 'device', 'city'] as const;
export type AutoLock = (typeof AUTO_LOCKS)[number];

/** Event types that are alerts (delivered to the project's webhooks and email addresses). */
export const ALERT_TYPES = new Set([
  'budget_50', 'budget_80', 'budget_100', 'budget_refused', 'ip_mismatch', 'device_mismatch', 'key_suspended', 'key_killed', 'key_expired', 'shareholder_anomaly', 'test',
]);

const KEY_COLUMNS: Record<keyof KeyPatch, string> = {
  name: 'name',
  projectId: 'project_id',
  status: 'status',
  boundIp: 'bound_ip',
  boundAt: 'bound_at',
  allowedCities: 'allowed_cities',
  deviceHash: 'device_hash',
  deviceSalt: 'device_salt',
  allowedModels: 'allowed_models',
  requireSignature: 'require_signature',
  signingSecret: 'signing_secret',
  inactiveExpiryMs: 'inactive_expiry_ms',
  suspendedUntil: 'suspended_until',
  dailyLimitMicros: 'daily_limit_micros',
  lifetimeLimitMicros: 'lifetime_limit_micros',
  dailyRequestLimit: 'daily_request_limit',
  weeklyLimitMicros: 'weekly_limit_micros',
  monthlyLimitMicros: 'monthly_limit_micros',
  expiresAt: 'expires_at',
  rpmLimit: 'rpm_limit',
  tpmLimit: 'tpm_limit',
  autoLock: 'auto_lock',
  scopes: 'scopes',
  boundCity: 'bound_city',
  boundCityAt: 'bound_city_at',
  deviceBoundAt: 'device_bound_at',
};

const num = (v: unknown) => (v === null || v === undefined ? null : Number(v));

function toKey(r: Row): KeyRecord {
  return {
    id: r.id as string,
    hash: r.hash as string,
    hint: r.hint as string,
    name: r.name as string,
    projectId: r.project_id as string,
    connectionId: r.connection_id as string,
    status: r.status as KeyStatus,
    boundIp: (r.bound_ip as string | null) ?? null,
    boundAt: num(r.bound_at),
    allowedCities: JSON.parse(r.allowed_cities as string) as string[],
    deviceHash: (r.device_hash as string | null) ?? null,
    deviceSalt: (r.device_salt as string | null) ?? null,
    allowedModels: JSON.parse(r.allowed_models as string) as string[],
    requireSignature: Number(r.require_signature) === 1,
    signingSecret: (r.signing_secret as string | null) ?? null,
    inactiveExpiryMs: num(r.inactive_expiry_ms),
    lastUsedAt: num(r.last_used_at),
    suspendedUntil: num(r.suspended_until),
    dailyLimitMicros: num(r.daily_limit_micros),
    lifetimeLimitMicros: num(r.lifetime_limit_micros),
    dailyRequestLimit: num(r.daily_request_limit),
    weeklyLimitMicros: num(r.weekly_limit_micros),
    monthlyLimitMicros: num(r.monthly_limit_micros),
    expiresAt: num(r.expires_at),
    rpmLimit: num(r.rpm_limit),
    tpmLimit: num(r.tpm_limit),
    autoLock: JSON.parse((r.auto_lock as string | null) ?? '["ip"]') as AutoLock[],
    scopes: JSON.parse((r.scopes as string | null) ?? '["inference"]') as string[],
    boundCity: (r.bound_city as string | null) ?? null,
    boundCityAt: num(r.bound_city_at),
    deviceBoundAt: num(r.device_bound_at),
    createdAt: Number(r.created_at),
    updatedAt: Number(r.updated_at),
  };
}

function toConnection(r: Row): ConnectionRecord {
  return {
    id: r.id as string,
    projectId: r.project_id as string,
    name: r.name as string,
    provider: r.provider as string,
    origin: r.origin as string,
    authScheme: r.auth_scheme as AuthScheme,
    sealedRecord: r.sealed_record as string,
    threshold: Number(r.threshold),
    shareholders: JSON.parse(r.shareholders as string) as string[],
    allow: (r.allow_list as string | null) ?? null,
    policy: (r.connection_policy as string | null) ?? null,
    shareholderSet: (r.shareholder_set as string | null) ?? null,
    createdAt: Number(r.created_at),
  };
}

function columnValue(field: keyof KeyPatch, value: unknown): SqlValue {
  if (field === 'allowedCities' || field === 'allowedModels' || field === 'autoLock' || field === 'scopes') return JSON.stringify(value);
  if (field === 'requireSignature') return value ? 1 : 0;
  return value as SqlValue;
}

export class HostStore {
  readonly db: SqlDb;
  constructor(db: SqlDb) {
    this.db = db;
  }

  /** Applies pending numbered migrations; returns the versions applied. */
  async migrate(): Promise<number[]> {
    await this.db.exec('CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)');
    const applied = new Set((await this.db.query('SELECT version FROM schema_migrations')).map((r) => Number(r.version)));
    const done: number[] = [];
    for (const [i, sql] of MIGRATIONS.entries()) {
      const version = i + 1;
      if (applied.has(version)) continue;
      await this.db.transaction(async (tx) => {
        // Another instance may be migrating concurrently: the primary key makes one of us lose.
        const claimed = await tx.query('INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING version', [version, Date.now()]);
        if (claimed.length === 0) return;
        for (const statement of sql.split(';').map((s) => s.trim()).filter(Boolean)) await tx.exec(statement);
      });
      done.push(version);
    }
    // The operator's own account (self-hosted single tenant): every project made before accounts existed.
    await this.db.query("INSERT INTO accounts (id, name, plan, default_project, created_at) VALUES ('acct_default', 'Default', $1, $2, $3) ON CONFLICT DO NOTHING", [DEFAULT_ACCOUNT_PLAN, DEFAULT_PROJECT, Date.now()]);
    await this.ensureProject(DEFAULT_PROJECT, 'Default');
    return done;
  }

  /** Creates the project in `accountId` unless it exists; false when it exists in another account. */
  async ensureProject(id: string, name: string, accountId = 'acct_default'): Promise<boolean> {
    await this.db.query('INSERT INTO projects (id, name, created_at, account_id) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING', [id, name, Date.now(), accountId]);
    const [r] = await this.db.query('SELECT account_id FROM projects WHERE id = $1', [id]);
    return r?.account_id === accountId;
  }

  async listProjects(accountId?: string): Promise<Array<{ id: string; name: string; accountId: string; createdAt: number; dailyLimitMicros: number | null; defaultAutoLock: AutoLock[] | null }>> {
    const rows = accountId
      ? await this.db.query('SELECT * FROM projects WHERE account_id = $1 ORDER BY created_at', [accountId])
      : await this.db.query('SELECT * FROM projects ORDER BY created_at');
    return rows.map((r) => ({
      id: r.id as string,
      name: r.name as string,
      accountId: r.account_id as string,
      createdAt: Number(r.created_at),
      dailyLimitMicros: num(r.daily_limit_micros),
      defaultAutoLock: r.default_auto_lock ? (JSON.parse(r.default_auto_lock as string) as AutoLock[]) : null,
    }));
  }

  /** What new keys of the project bind themselves to on first use when they say nothing (null: IP only). */
  async projectDefaultAutoLock(id: string): Promise<AutoLock[] | null> {
    const [r] = await this.db.query('SELECT default_auto_lock FROM projects WHERE id = $1', [id]);
    return r?.default_auto_lock ? (JSON.parse(r.default_auto_lock as string) as AutoLock[]) : null;
  }

  async setProjectDefaultAutoLock(id: string, autoLock: AutoLock[] | null): Promise<void> {
    await this.db.query('UPDATE projects SET default_auto_lock = $1 WHERE id = $2', [autoLock ? JSON.stringify(autoLock) : null, id]);
  }

  async projectDailyLimit(id: string): Promise<number | null> {
    const [r] = await this.db.query('SELECT daily_limit_micros FROM projects WHERE id = $1', [id]);
    return r ? num(r.daily_limit_micros) : null;
  }

  async setProjectDailyLimit(id: string, micros: number | null): Promise<void> {
    await this.db.query('UPDATE projects SET daily_limit_micros = $1 WHERE id = $2', [micros, id]);
    await this.db.notify(KEY_CHANGED_CHANNEL, `project:${id}`);
  }

  async projectExists(id: string): Promise<boolean> {
    return (await this.db.query('SELECT id FROM projects WHERE id = $1', [id])).length === 1;
  }

  async insertConnection(c: ConnectionRecord, db: SqlDb = this.db): Promise<boolean> {
    const rows = await db.query(
      `INSERT INTO connections (id, project_id, name, provider, origin, auth_scheme, sealed_record, threshold, shareholders, created_at, allow_list, connection_policy, shareholder_set)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) ON CONFLICT DO NOTHING RETURNING id`,
      [c.id, c.projectId, c.name, c.provider, c.origin, c.authScheme, c.sealedRecord, c.threshold, JSON.stringify(c.shareholders), c.createdAt, c.allow, c.policy ?? null, c.shareholderSet ?? null],
    );
    return rows.length === 1;
  }

  async getConnection(id: string): Promise<ConnectionRecord | undefined> {
    const [r] = await this.db.query('SELECT * FROM connections WHERE id = $1', [id]);
    return r ? toConnection(r) : undefined;
  }

  async listConnections(projectId?: string): Promise<ConnectionRecord[]> {
    const rows = projectId
      ? await this.db.query('SELECT * FROM connections WHERE project_id = $1 ORDER BY created_at', [projectId])
      : await this.db.query('SELECT * FROM connections ORDER BY created_at');
    return rows.map(toConnection);
  }

  async insertKey(k: KeyRecord): Promise<void> {
    await this.db.query(
      `INSERT INTO sg_keys (id, hash, hint, name, project_id, connection_id, status, bound_ip, bound_at, allowed_cities, device_hash, device_salt,
         allowed_models, require_signature, signing_secret, inactive_expiry_ms, last_used_at, suspended_until, created_at, updated_at,
         daily_limit_micros, lifetime_limit_micros, daily_request_limit, auto_lock, bound_city, bound_city_at, device_bound_at, scopes,
         weekly_limit_micros, monthly_limit_micros, expires_at, rpm_limit, tpm_limit)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26, $27, $28,
         $29, $30, $31, $32, $33)`,
      [
        k.id, k.hash, k.hint, k.name, k.projectId, k.connectionId, k.status, k.boundIp, k.boundAt, JSON.stringify(k.allowedCities), k.deviceHash,
        k.deviceSalt, JSON.stringify(k.allowedModels), k.requireSignature ? 1 : 0, k.signingSecret, k.inactiveExpiryMs, k.lastUsedAt,
        k.suspendedUntil, k.createdAt, k.updatedAt, k.dailyLimitMicros, k.lifetimeLimitMicros, k.dailyRequestLimit,
        JSON.stringify(k.autoLock), k.boundCity, k.boundCityAt, k.deviceBoundAt, JSON.stringify(k.scopes),
        k.weeklyLimitMicros, k.monthlyLimitMicros, k.expiresAt, k.rpmLimit, k.tpmLimit,
      ],
    );
  }

  /** Moves every key of one connection to another (rotation); announces each change. */
  async moveKeys(from: string, to: string, now = Date.now()): Promise<number> {
    const rows = await this.db.query('UPDATE sg_keys SET connection_id = $1, updated_at = $2 WHERE connection_id = $3 RETURNING id', [to, now, from]);
    for (const r of rows) await this.#changed(r.id as string);
    return rows.length;
  }

  async getKey(id: string): Promise<KeyRecord | undefined> {
    const [r] = await this.db.query('SELECT * FROM sg_keys WHERE id = $1', [id]);
    return r ? toKey(r) : undefined;
  }

  async findKeyByHash(hash: string): Promise<KeyRecord | undefined> {
    const [r] = await this.db.query('SELECT * FROM sg_keys WHERE hash = $1', [hash]);
    return r ? toKey(r) : undefined;
  }

  async listKeys(projectId?: string): Promise<KeyRecord[]> {
    const rows = projectId
      ? await this.db.query('SELECT * FROM sg_keys WHERE project_id = $1 ORDER BY created_at', [projectId])
      : await this.db.query('SELECT * FROM sg_keys ORDER BY created_at');
    return rows.map(toKey);
  }

  async #changed(id: string): Promise<void> {
    await this.db.notify(KEY_CHANGED_CHANNEL, id);
  }

  /** Applies `patch`; a revoked key stays revoked whatever the patch says. */
  async updateKey(id: string, patch: KeyPatch, now = Date.now()): Promise<KeyRecord | undefined> {
    const fields = (Object.keys(patch) as Array<keyof KeyPatch>).filter((f) => patch[f] !== undefined);
    const sets = fields.map((f, i) => `${KEY_COLUMNS[f]} = $${i + 1}`);
    const params = fields.map((f) => columnValue(f, patch[f]));
    sets.push(`updated_at = $${params.length + 1}`);
    params.push(now, id);
    const guard = patch.status !== undefined ? " AND status <> 'revoked'" : '';
    const [r] = await this.db.query(`UPDATE sg_keys SET ${sets.join(', ')} WHERE id = $${params.length}${guard} RETURNING *`, params);
    await this.#changed(id);
    return r ? toKey(r) : await this.getKey(id);
  }

  /** First-use IP binding: succeeds for exactly one caller while the key is unbound. */
  async bindIpIfUnbound(id: string, ip: string, now = Date.now()): Promise<boolean> {
    const rows = await this.db.query('UPDATE sg_keys SET bound_ip = $1, bound_at = $2, updated_at = $2 WHERE id = $3 AND bound_ip IS NULL RETURNING id', [ip, now, id]);
    if (rows.length === 1) await this.#changed(id);
    return rows.length === 1;
  }

  /**
   * Undoes a first-use IP binding whose request then failed: only the binding made at `at` for
   * `ip`, and only if nothing re-bound the key since.
   */
  async unbindIpIfBoundAt(id: string, ip: string, at: number): Promise<boolean> {
    const rows = await this.db.query('UPDATE sg_keys SET bound_ip = NULL, bound_at = NULL WHERE id = $1 AND bound_ip = $2 AND bound_at = $3 RETURNING id', [id, ip, at]);
    if (rows.length === 1) await this.#changed(id);
    return rows.length === 1;
  }

  /** First-use device binding (auto-lock): exactly one caller wins while the key has no device. */
  async bindDeviceIfUnbound(id: string, salt: string, hash: string, now = Date.now()): Promise<boolean> {
    const rows = await this.db.query(
      'UPDATE sg_keys SET device_salt = $1, device_hash = $2, device_bound_at = $3, updated_at = $3 WHERE id = $4 AND device_hash IS NULL RETURNING id',
      [salt, hash, now, id],
    );
    if (rows.length === 1) await this.#changed(id);
    return rows.length === 1;
  }

  /** First-use city binding (auto-lock): exactly one caller wins while the key has no city. */
  async bindCityIfUnbound(id: string, city: string, now = Date.now()): Promise<boolean> {
    const rows = await this.db.query('UPDATE sg_keys SET bound_city = $1, bound_city_at = $2, updated_at = $2 WHERE id = $3 AND bound_city IS NULL RETURNING id', [city, now, id]);
    if (rows.length === 1) await this.#changed(id);
    return rows.length === 1;
  }

  /** Records last use, at most once a minute per key (not worth a write per request). */
  async touchKey(id: string, now = Date.now()): Promise<void> {
    await this.db.query('UPDATE sg_keys SET last_used_at = $1 WHERE id = $2 AND (last_used_at IS NULL OR last_used_at < $3)', [now, id, now - 60_000]);
  }

  /** Marks active keys unused for longer than their inactivity limit, or past their expiry date, as expired. */
  async expireInactive(now = Date.now()): Promise<string[]> {
    const rows = await this.db.query(
      `UPDATE sg_keys SET status = 'expired', updated_at = $1
       WHERE status = 'active' AND ((inactive_expiry_ms IS NOT NULL AND COALESCE(last_used_at, created_at) + inactive_expiry_ms < $1)
         OR (expires_at IS NOT NULL AND expires_at <= $1)) RETURNING id`,
      [now],
    );
    for (const r of rows) await this.#changed(r.id as string);
    return rows.map((r) => r.id as string);
  }

  /** Replay cache: true the first time a signature is seen, false on any reuse (all instances). */
  async recordSignature(signature: string, expiresAt: number, now = Date.now()): Promise<boolean> {
    await this.db.query('DELETE FROM signature_replay WHERE expires_at < $1', [now]);
    const rows = await this.db.query('INSERT INTO signature_replay (signature, expires_at) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING signature', [signature, expiresAt]);
    return rows.length === 1;
  }

  async setAlias(projectId: string, alias: string, target: string): Promise<void> {
    await this.db.query('INSERT INTO model_aliases (project_id, alias, target) VALUES ($1, $2, $3) ON CONFLICT (project_id, alias) DO UPDATE SET target = $3', [projectId, alias, target]);
    await this.db.notify(KEY_CHANGED_CHANNEL, `project:${projectId}`);
  }

  async deleteAlias(projectId: string, alias: string): Promise<void> {
    await this.db.query('DELETE FROM model_aliases WHERE project_id = $1 AND alias = $2', [projectId, alias]);
    await this.db.notify(KEY_CHANGED_CHANNEL, `project:${projectId}`);
  }

  async listAliases(projectId: string): Promise<Record<string, string>> {
    const rows = await this.db.query('SELECT alias, target FROM model_aliases WHERE project_id = $1 ORDER BY alias', [projectId]);
    return Object.fromEntries(rows.map((r) => [r.alias as string, r.target as string]));
  }

  /**
   * Records an event; alert events also get one outbox row per alert target of the project, in
   * the same transaction (durable outbox: an alert is never lost between "happened" and "sent").
   */
  async addEvent(e: LockEvent): Promise<void> {
    await this.db.transaction(async (tx) => {
      await tx.query('INSERT INTO events (id, at, project_id, key_id, type, detail) VALUES ($1, $2, $3, $4, $5, $6)', [e.id, e.at, e.projectId, e.keyId, e.type, JSON.stringify(e.detail)]);
      if (!ALERT_TYPES.has(e.type)) return;
      const targets = await tx.query('SELECT id FROM alert_targets WHERE project_id = $1', [e.projectId]);
      const payload = JSON.stringify({ type: e.type, timestamp: new Date(e.at).toISOString(), data: { eventId: e.id, projectId: e.projectId, keyId: e.keyId, ...e.detail } });
      for (const t of targets) {
        await tx.query(
          'INSERT INTO alert_outbox (id, target_id, event_id, payload, attempts, next_attempt_at, created_at) VALUES ($1, $2, $3, $4, 0, $5, $5)',
          [`msg_${randomBytes(12).toString('hex')}`, t.id as string, e.id, payload, e.at],
        );
      }
    });
    if (ALERT_TYPES.has(e.type)) await this.db.notify('sg_alerts', e.id);
  }

  async listEvents(filter: { keyId?: string; type?: string; limit?: number; projectIds?: string[] | null } = {}): Promise<LockEvent[]> {
    const where: string[] = [];
    const params: SqlValue[] = [];
    if (filter.projectIds) where.push(`project_id IN ${sqlList(params, filter.projectIds)}`);
    if (filter.keyId) where.push(`key_id = $${params.push(filter.keyId)}`);
    if (filter.type) where.push(`type = $${params.push(filter.type)}`);
    params.push(Math.min(filter.limit ?? 100, 1000));
    const rows = await this.db.query(`SELECT * FROM events ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY at DESC, id LIMIT $${params.length}`, params);
    return rows.map((r) => ({
      id: r.id as string,
      at: Number(r.at),
      projectId: r.project_id as string,
      keyId: (r.key_id as string | null) ?? null,
      type: r.type as string,
      detail: JSON.parse(r.detail as string) as Record<string, unknown>,
    }));
  }

  onKeyChanged(handler: (idOrProject: string) => void): Promise<void> {
    return this.db.listen(KEY_CHANGED_CHANNEL, handler);
  }

  close(): Promise<void> {
    return this.db.close();
  }
}

/** `($n, $n+1, …)` for `values`, pushed onto `params`; an empty list matches nothing. */
export function sqlList(params: SqlValue[], values: readonly string[]): string {
  if (values.length === 0) return '(NULL)';
  return `(${values.map((v) => `$${params.push(v)}`).join(', ')})`;
}
