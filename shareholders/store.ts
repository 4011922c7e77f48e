/**
 * The shareholder's own store (never the host's database): enrolled share envelopes with the
 * owner's signed policy, single-use challenge nonces, and the hash-chained audit log. Either
 * engine of storage/: the embedded default (SQLite, one file under the data directory) or the
 * operator's own PostgreSQL (`--database`).
 */
import { join } from 'node:path';
import { openPostgres, openSqlite, type Row, type SqlDb } from '../storage/db.ts';
import { auditHash, GENESIS_HASH, type AuditEntry, type AuditEvent } from './audit.ts';

export interface EnrolledShare {
  connectionId: string;
  ownerPublicKey: string;
  envelope: Uint8Array;
  policy: string;
  maxReleasesPerMinute: number;
  lastIssuedAt: number;
  /** Owner-signed lease limit k: releases of this share per UTC day (SPEC.md §9); none = unlimited. */
  maxLeasesPerDay?: number;
}

/** The newest connection-policy update applied: its version, policy hash and the signed JSON. */
export interface StoredConnectionPolicy {
  version: number;
  sha256: string;
  signed: string;
}

const SCHEMA = [
  `CREATE TABLE IF NOT EXISTS shares (connection_id TEXT PRIMARY KEY, owner_public_key TEXT NOT NULL, envelope TEXT NOT NULL, policy TEXT NOT NULL, max_releases_per_minute INTEGER NOT NULL, last_issued_at BIGINT NOT NULL)`,
  `CREATE TABLE IF NOT EXISTS nonces (nonce TEXT PRIMARY KEY, expires_at BIGINT NOT NULL, used_at BIGINT)`,
  // Survives deletion of the share: the newest owner message applied per connection, so an enroll
  // message cannot be replayed after the share it created was deleted.
  `CREATE TABLE IF NOT EXISTS tombstones (connection_id TEXT PRIMARY KEY, last_issued_at BIGINT NOT NULL)`,
  // Leases (SPEC.md §9): the owner-signed per-day limit, and releases counted per UTC day. Separate
  // tables so stores made before leases gain them without rewriting \`shares\`.
  `CREATE TABLE IF NOT EXISTS lease_limits (connection_id TEXT PRIMARY KEY, max_per_day INTEGER NOT NULL)`,
  `CREATE TABLE IF NOT EXISTS lease_counts (connection_id TEXT NOT NULL, day INTEGER NOT NULL, count INTEGER NOT NULL, PRIMARY KEY (connection_id, day))`,
  // Connection-policy updates (SPEC.md §9.1): the newest owner-signed version per connection, sent
  // with every lease; never replaced by an older or equal version.
  `CREATE TABLE IF NOT EXISTS connection_policies (connection_id TEXT PRIMARY KEY, version INTEGER NOT NULL, sha256 TEXT NOT NULL, signed TEXT NOT NULL)`,
  // Slow widening (SPEC.md §8.3): the delay the owner signed at enrollment, and the one policy
  // update per connection that admits new measurements and waits for \`effective_at\`.
  `CREATE TABLE IF NOT EXISTS policy_widenings (connection_id TEXT PRIMARY KEY, delay_ms BIGINT NOT NULL, pending TEXT, pending_sha256 TEXT, effective_at BIGINT)`,
  `CREATE TABLE IF NOT EXISTS audit (seq INTEGER PRIMARY KEY, at TEXT NOT NULL, event TEXT NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL)`,
];

/** Append-only enforcement, per engine (triggers are the one dialect difference here). */
const APPEND_ONLY: Record<SqlDb['engine'], string[]> = {
  sqlite: [
    `CREATE TRIGGER IF NOT EXISTS audit_append_only_u BEFORE UPDATE ON audit BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END`,
    `CREATE TRIGGER IF NOT EXISTS audit_append_only_d BEFORE DELETE ON audit BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END`,
  ],
  postgres: [
    `CREATE OR REPLACE FUNCTION sg_audit_append_only() RETURNS trigger AS $f$ BEGIN RAISE EXCEPTION 'audit is append-only'; END $f$ LANGUAGE plpgsql`,
    `DROP TRIGGER IF EXISTS audit_append_only ON audit`,
    `CREATE TRIGGER audit_append_only BEFORE UPDATE OR DELETE ON audit FOR EACH ROW EXECUTE FUNCTION sg_audit_append_only()`,
  ],
};

const toShare = (r: Row): EnrolledShare => ({
  connectionId: r.connection_id as string,
  ownerPublicKey: r.owner_public_key as string,
  envelope: new Uint8Array(Buffer.from(r.envelope as string, 'base64')),
  policy: r.policy as string,
  maxReleasesPerMinute: Number(r.max_releases_per_minute),
  lastIssuedAt: Number(r.last_issued_at),
  ...(r.max_per_day !== null && r.max_per_day !== undefined ? { maxLeasesPerDay: Number(r.max_per_day) } : {}),
});

/** A widening waiting out the owner's delay: the update's fields as the owner signed them. */
export interface PendingWidening {
  update: { policy: string; maxReleasesPerMinute: number; maxLeasesPerDay?: number | null };
  sha256: string;
  effectiveAt: number;
}

/** Shares enrolled before slow widening (no row) wait the default delay. */
export const DEFAULT_WIDENING_DELAY_MS = 86_400_000;

export class ShareStore {
  readonly db: SqlDb;
  constructor(db: SqlDb) {
    this.db = db;
  }

  async migrate(): Promise<void> {
    for (const sql of [...SCHEMA, ...APPEND_ONLY[this.db.engine]]) await this.db.exec(sql);
  }

  async getShare(connectionId: string): Promise<EnrolledShare | undefined> {
    const [r] = await this.db.query('SELECT s.*, l.max_per_day FROM shares s LEFT JOIN lease_limits l ON l.connection_id = s.connection_id WHERE s.connection_id = $1', [connectionId]);
    return r ? toShare(r) : undefined;
  }

  /**
   * Inserts an enrolled share unless one exists ('exists') or the connection was deleted by an
   * owner message at least as new as this enrollment ('replayed': the tombstone outlives the row).
   */
  async insertShare(s: EnrolledShare): Promise<'inserted' | 'exists' | 'replayed'> {
    return this.db.transaction(async (tx) => {
      const [tomb] = await tx.query('SELECT last_issued_at FROM tombstones WHERE connection_id = $1', [s.connectionId]);
      if (tomb && Number(tomb.last_issued_at) >= s.lastIssuedAt) return 'replayed';
      const rows = await tx.query(
        'INSERT INTO shares (connection_id, owner_public_key, envelope, policy, max_releases_per_minute, last_issued_at) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING RETURNING connection_id',
        [s.connectionId, s.ownerPublicKey, Buffer.from(s.envelope).toString('base64'), s.policy, s.maxReleasesPerMinute, s.lastIssuedAt],
      );
      if (rows.length !== 1) return 'exists';
      await setLeaseLimit(tx, s.connectionId, s.maxLeasesPerDay);
      return 'inserted';
    });
  }

  /** Applies a policy only if the owner message is newer than the last one applied (no replays). */
  async updatePolicy(connectionId: string, policy: string, max: number, issuedAt: number, maxLeasesPerDay?: number | null): Promise<boolean> {
    return this.db.transaction(async (tx) => {
      const rows = await tx.query(
        'UPDATE shares SET policy = $1, max_releases_per_minute = $2, last_issued_at = $3 WHERE connection_id = $4 AND last_issued_at < $3 RETURNING connection_id',
        [policy, max, issuedAt, connectionId],
      );
      if (rows.length !== 1) return false;
      // undefined: the message did not speak of leases, the limit stays; null: no limit.
      if (maxLeasesPerDay !== undefined) await setLeaseLimit(tx, connectionId, maxLeasesPerDay ?? undefined);
      return true;
    });
  }

  /**
   * Counts one lease of `connectionId` on UTC day `day` if fewer than `max` were granted that day;
   * false (nothing counted) otherwise. Atomic: concurrent releases cannot pass the limit.
   */
  async takeLease(connectionId: string, day: number, max: number): Promise<boolean> {
    const rows = await this.db.query(
      'INSERT INTO lease_counts (connection_id, day, count) VALUES ($1, $2, 1) ON CONFLICT (connection_id, day) DO UPDATE SET count = lease_counts.count + 1 WHERE lease_counts.count < $3 RETURNING count',
      [connectionId, day, max],
    );
    return rows.length === 1 && Number(rows[0]!.count) <= max;
  }

  async leasesOn(connectionId: string, day: number): Promise<number> {
    const [r] = await this.db.query('SELECT count FROM lease_counts WHERE connection_id = $1 AND day = $2', [connectionId, day]);
    return r ? Number(r.count) : 0;
  }

  /**
   * Stores an owner-signed connection-policy update if its version is above the stored one, and
   * sets the lease limit recomputed from it (null: none), in one transaction. False: not newer.
   */
  async setConnectionPolicy(connectionId: string, update: StoredConnectionPolicy, maxLeasesPerDay: number | null): Promise<boolean> {
    return this.db.transaction(async (tx) => {
      const rows = await tx.query(
        'INSERT INTO connection_policies (connection_id, version, sha256, signed) VALUES ($1, $2, $3, $4) ON CONFLICT (connection_id) DO UPDATE SET version = excluded.version, sha256 = excluded.sha256, signed = excluded.signed WHERE connection_policies.version < excluded.version RETURNING version',
        [connectionId, update.version, update.sha256, update.signed],
      );
      if (rows.length !== 1) return false;
      await setLeaseLimit(tx, connectionId, maxLeasesPerDay ?? undefined);
      return true;
    });
  }

  async getConnectionPolicy(connectionId: string): Promise<StoredConnectionPolicy | undefined> {
    const [r] = await this.db.query('SELECT version, sha256, signed FROM connection_policies WHERE connection_id = $1', [connectionId]);
    return r ? { version: Number(r.version), sha256: r.sha256 as string, signed: r.signed as string } : undefined;
  }

  /** Deletes the share and leaves a tombstone with the delete message's issuedAt (see insertShare). */
  async deleteShare(connectionId: string, issuedAt: number): Promise<boolean> {
    return this.db.transaction(async (tx) => {
      const deleted = await tx.query('DELETE FROM shares WHERE connection_id = $1 AND last_issued_at < $2 RETURNING connection_id', [connectionId, issuedAt]);
      if (deleted.length !== 1) return false;
      await tx.query(
        'INSERT INTO tombstones (connection_id, last_issued_at) VALUES ($1, $2) ON CONFLICT (connection_id) DO UPDATE SET last_issued_at = CASE WHEN excluded.last_issued_at > tombstones.last_issued_at THEN excluded.last_issued_at ELSE tombstones.last_issued_at END',
        [connectionId, issuedAt],
      );
      return true;
    });
  }

  async setWideningDelay(connectionId: string, delayMs: number): Promise<void> {
    await this.db.query(
      'INSERT INTO policy_widenings (connection_id, delay_ms) VALUES ($1, $2) ON CONFLICT (connection_id) DO UPDATE SET delay_ms = excluded.delay_ms, pending = NULL, pending_sha256 = NULL, effective_at = NULL',
      [connectionId, delayMs],
    );
  }

  async getWidening(connectionId: string): Promise<{ delayMs: number; pending?: PendingWidening }> {
    const [r] = await this.db.query('SELECT delay_ms, pending, pending_sha256, effective_at FROM policy_widenings WHERE connection_id = $1', [connectionId]);
    if (!r) return { delayMs: DEFAULT_WIDENING_DELAY_MS };
    return {
      delayMs: Number(r.delay_ms),
      ...(r.pending ? { pending: { update: JSON.parse(r.pending as string), sha256: r.pending_sha256 as string, effectiveAt: Number(r.effective_at) } } : {}),
    };
  }

  /**
   * Records a widening to apply at `pending.effectiveAt`, replacing any pending one, if the owner
   * message is newer than the last applied (the same replay rule as updatePolicy); the entries the
   * update removes (`narrowedPolicy`: the current policy without them) go at once.
   */
  async setPendingWidening(connectionId: string, pending: PendingWidening, issuedAt: number, narrowedPolicy?: string): Promise<boolean> {
    return this.db.transaction(async (tx) => {
      const rows = narrowedPolicy === undefined
        ? await tx.query('UPDATE shares SET last_issued_at = $1 WHERE connection_id = $2 AND last_issued_at < $1 RETURNING connection_id', [issuedAt, connectionId])
        : await tx.query('UPDATE shares SET last_issued_at = $1, policy = $3 WHERE connection_id = $2 AND last_issued_at < $1 RETURNING connection_id', [issuedAt, connectionId, narrowedPolicy]);
      if (rows.length !== 1) return false;
      await tx.query(
        `INSERT INTO policy_widenings (connection_id, delay_ms, pending, pending_sha256, effective_at) VALUES ($1, ${DEFAULT_WIDENING_DELAY_MS}, $2, $3, $4)
         ON CONFLICT (connection_id) DO UPDATE SET pending = excluded.pending, pending_sha256 = excluded.pending_sha256, effective_at = excluded.effective_at`,
        [connectionId, JSON.stringify(pending.update), pending.sha256, pending.effectiveAt],
      );
      return true;
    });
  }

  /** Drops the pending widening (if `sha256` is given, only that one); true when one was dropped. */
  async clearPendingWidening(connectionId: string, sha256?: string): Promise<boolean> {
    const rows = await this.db.query(
      `UPDATE policy_widenings SET pending = NULL, pending_sha256 = NULL, effective_at = NULL WHERE connection_id = $1 AND pending IS NOT NULL${sha256 === undefined ? '' : ' AND pending_sha256 = $2'} RETURNING connection_id`,
      sha256 === undefined ? [connectionId] : [connectionId, sha256],
    );
    return rows.length === 1;
  }

  /** An owner-signed cancel: newer than the last message applied, naming the pending widening. */
  async cancelPendingWidening(connectionId: string, sha256: string, issuedAt: number): Promise<'cancelled' | 'replayed' | 'not_pending'> {
    return this.db.transaction(async (tx) => {
      const [pending] = await tx.query('SELECT connection_id FROM policy_widenings WHERE connection_id = $1 AND pending_sha256 = $2', [connectionId, sha256]);
      if (!pending) return 'not_pending';
      const rows = await tx.query('UPDATE shares SET last_issued_at = $1 WHERE connection_id = $2 AND last_issued_at < $1 RETURNING connection_id', [issuedAt, connectionId]);
      if (rows.length !== 1) return 'replayed';
      await tx.query('UPDATE policy_widenings SET pending = NULL, pending_sha256 = NULL, effective_at = NULL WHERE connection_id = $1', [connectionId]);
      return 'cancelled';
    });
  }

  /**
   * Applies the pending widening if its time has come (`now` ≥ effective_at): the policy and limits
   * it carries replace the current ones, in one transaction. Returns what took effect, if anything.
   */
  async applyDueWidening(connectionId: string, now: number): Promise<PendingWidening | undefined> {
    // The common case — nothing pending, or not yet due — costs one primary-key read, no transaction.
    const [r] = await this.db.query('SELECT pending, pending_sha256, effective_at FROM policy_widenings WHERE connection_id = $1 AND pending IS NOT NULL AND effective_at <= $2', [connectionId, now]);
    if (!r) return undefined;
    const due: PendingWidening = { update: JSON.parse(r.pending as string), sha256: r.pending_sha256 as string, effectiveAt: Number(r.effective_at) };
    return this.db.transaction(async (tx) => {
      // Claimed by clearing it: of two readers racing (two shareholder instances on one database), one applies it.
      const claimed = await tx.query('UPDATE policy_widenings SET pending = NULL, pending_sha256 = NULL, effective_at = NULL WHERE connection_id = $1 AND pending_sha256 = $2 RETURNING connection_id', [connectionId, due.sha256]);
      if (claimed.length !== 1) return undefined;
      const rows = await tx.query('UPDATE shares SET policy = $1, max_releases_per_minute = $2 WHERE connection_id = $3 RETURNING connection_id', [due.update.policy, due.update.maxReleasesPerMinute, connectionId]);
      if (rows.length === 1 && due.update.maxLeasesPerDay !== undefined) await setLeaseLimit(tx, connectionId, due.update.maxLeasesPerDay ?? undefined);
      return rows.length === 1 ? due : undefined;
    });
  }

  async addNonce(nonce: string, expiresAt: number, now: number): Promise<void> {
    await this.db.query('DELETE FROM nonces WHERE expires_at < $1', [now - 3600_000]);
    await this.db.query('INSERT INTO nonces (nonce, expires_at) VALUES ($1, $2)', [nonce, expiresAt]);
  }

  /** Marks a nonce used; returns 'ok', 'unknown', 'used' or 'expired'. Atomic. */
  async consumeNonce(nonce: string, now: number): Promise<'ok' | 'unknown' | 'used' | 'expired'> {
    const used = await this.db.query('UPDATE nonces SET used_at = $1 WHERE nonce = $2 AND used_at IS NULL AND expires_at > $1 RETURNING nonce', [now, nonce]);
    if (used.length === 1) return 'ok';
    const [r] = await this.db.query('SELECT expires_at, used_at FROM nonces WHERE nonce = $1', [nonce]);
    if (!r) return 'unknown';
    return r.used_at !== null ? 'used' : 'expired';
  }

  /** Appends an entry chained to the previous one, in one transaction (one writer at a time). */
  async appendAudit(at: Date, event: AuditEvent): Promise<AuditEntry> {
    return this.db.transaction(async (tx) => {
      if (tx.engine === 'postgres') await tx.query('LOCK TABLE audit IN EXCLUSIVE MODE');
      const [last] = await tx.query('SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1');
      const seq = last ? Number(last.seq) + 1 : 1;
      const prevHash = last ? (last.hash as string) : GENESIS_HASH;
      const iso = at.toISOString();
      const hash = auditHash(seq, iso, event, prevHash);
      await tx.query('INSERT INTO audit (seq, at, event, prev_hash, hash) VALUES ($1, $2, $3, $4, $5)', [seq, iso, JSON.stringify(event), prevHash, hash]);
      return { seq, at: iso, event, prevHash, hash };
    });
  }

  async lastAudit(): Promise<{ seq: number; hash: string } | undefined> {
    const [r] = await this.db.query('SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1');
    return r ? { seq: Number(r.seq), hash: r.hash as string } : undefined;
  }

  async readAudit(afterSeq = 0, limit = 1000): Promise<AuditEntry[]> {
    return (await this.db.query('SELECT * FROM audit WHERE seq > $1 ORDER BY seq LIMIT $2', [afterSeq, limit])).map((r) => ({
      seq: Number(r.seq),
      at: r.at as string,
      event: JSON.parse(r.event as string) as AuditEvent,
      prevHash: r.prev_hash as string,
      hash: r.hash as string,
    }));
  }

  close(): Promise<void> {
    return this.db.close();
  }
}

async function setLeaseLimit(tx: Pick<SqlDb, 'query'>, connectionId: string, max: number | undefined): Promise<void> {
  if (max === undefined) await tx.query('DELETE FROM lease_limits WHERE connection_id = $1', [connectionId]);
  else {
    await tx.query(
      'INSERT INTO lease_limits (connection_id, max_per_day) VALUES ($1, $2) ON CONFLICT (connection_id) DO UPDATE SET max_per_day = excluded.max_per_day',
      [connectionId, max],
    );
  }
}

/** Opens the operator's store: PostgreSQL when `databaseUrl` is given, else SQLite in `dataDir`. */
export async function openShareStore(dataDir: string, databaseUrl?: string, schema?: string): Promise<ShareStore> {
  const db = databaseUrl ? openPostgres({ connectionString: databaseUrl, ...(schema ? { schema } : {}) }) : openSqlite(join(dataDir, 'shareholder.sqlite'));
  const store = new ShareStore(db);
  await store.migrate();
  return store;
}
