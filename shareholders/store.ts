/**
 * The shareholder's own store (never the host's database): enrolled share envelopes with the
 * owner's signed policy, single-use challenge nonces, and the hash-chained audit log.
 * Embedded engine: SQLite via node:sqlite (WAL), one file under the data directory.
 */
import { DatabaseSync } from 'node:sqlite';
import { join } from 'node:path';
import { auditHash, GENESIS_HASH, type AuditEntry, type AuditEvent } from './audit.ts';

export interface EnrolledShare {
  connectionId: string;
  ownerPublicKey: string;
  envelope: Uint8Array;
  policy: string;
  maxReleasesPerMinute: number;
  lastIssuedAt: number;
}

export interface ShareStore {
  getShare(connectionId: string): EnrolledShare | undefined;
  insertShare(share: EnrolledShare): boolean;
  updatePolicy(connectionId: string, policy: string, maxReleasesPerMinute: number, issuedAt: number): boolean;
  deleteShare(connectionId: string, issuedAt: number): boolean;
  addNonce(nonce: string, expiresAt: number): void;
  /** Marks a nonce used; returns 'ok', 'unknown', 'used' or 'expired'. Atomic. */
  consumeNonce(nonce: string, now: number): 'ok' | 'unknown' | 'used' | 'expired';
  appendAudit(at: Date, event: AuditEvent): AuditEntry;
  readAudit(afterSeq?: number, limit?: number): AuditEntry[];
  close(): void;
}

export function openShareStore(dataDir: string): ShareStore {
  const db = new DatabaseSync(join(dataDir, 'shareholder.sqlite'));
  db.exec(`
    PRAGMA journal_mode = WAL;
    PRAGMA synchronous = NORMAL;
    CREATE TABLE IF NOT EXISTS shares (
      connection_id TEXT PRIMARY KEY,
      owner_public_key TEXT NOT NULL,
      envelope BLOB NOT NULL,
      policy TEXT NOT NULL,
      max_releases_per_minute INTEGER NOT NULL,
      last_issued_at INTEGER NOT NULL
    );
    CREATE TABLE IF NOT EXISTS nonces (nonce TEXT PRIMARY KEY, expires_at INTEGER NOT NULL, used_at INTEGER);
    CREATE TABLE IF NOT EXISTS audit (seq INTEGER PRIMARY KEY, at TEXT NOT NULL, event TEXT NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL);
    CREATE TRIGGER IF NOT EXISTS audit_append_only_u BEFORE UPDATE ON audit BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END;
    CREATE TRIGGER IF NOT EXISTS audit_append_only_d BEFORE DELETE ON audit BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END;
  `);
  const q = {
    get: db.prepare('SELECT * FROM shares WHERE connection_id = ?'),
    insert: db.prepare(
      'INSERT OR IGNORE INTO shares (connection_id, owner_public_key, envelope, policy, max_releases_per_minute, last_issued_at) VALUES (?, ?, ?, ?, ?, ?)',
    ),
    policy: db.prepare(
      'UPDATE shares SET policy = ?, max_releases_per_minute = ?, last_issued_at = ? WHERE connection_id = ? AND last_issued_at < ?',
    ),
    del: db.prepare('DELETE FROM shares WHERE connection_id = ? AND last_issued_at < ?'),
    addNonce: db.prepare('INSERT INTO nonces (nonce, expires_at) VALUES (?, ?)'),
    useNonce: db.prepare('UPDATE nonces SET used_at = ? WHERE nonce = ? AND used_at IS NULL AND expires_at > ?'),
    nonce: db.prepare('SELECT expires_at, used_at FROM nonces WHERE nonce = ?'),
    purge: db.prepare('DELETE FROM nonces WHERE expires_at < ?'),
    last: db.prepare('SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1'),
    append: db.prepare('INSERT INTO audit (seq, at, event, prev_hash, hash) VALUES (?, ?, ?, ?, ?)'),
    read: db.prepare('SELECT * FROM audit WHERE seq > ? ORDER BY seq LIMIT ?'),
  };
  type Row = Record<string, unknown>;
  const toShare = (r: Row): EnrolledShare => ({
    connectionId: r.connection_id as string,
    ownerPublicKey: r.owner_public_key as string,
    envelope: new Uint8Array(r.envelope as Uint8Array),
    policy: r.policy as string,
    maxReleasesPerMinute: Number(r.max_releases_per_minute),
    lastIssuedAt: Number(r.last_issued_at),
  });
  return {
    getShare: (id) => {
      const r = q.get.get(id) as Row | undefined;
      return r ? toShare(r) : undefined;
    },
    insertShare: (s) =>
      q.insert.run(s.connectionId, s.ownerPublicKey, s.envelope, s.policy, s.maxReleasesPerMinute, s.lastIssuedAt).changes === 1,
    updatePolicy: (id, policy, max, issuedAt) => q.policy.run(policy, max, issuedAt, id, issuedAt).changes === 1,
    deleteShare: (id, issuedAt) => q.del.run(id, issuedAt).changes === 1,
    addNonce: (nonce, expiresAt) => {
      q.purge.run(Date.now() - 3600_000);
      q.addNonce.run(nonce, expiresAt);
    },
    consumeNonce: (nonce, now) => {
      if (q.useNonce.run(now, nonce, now).changes === 1) return 'ok';
      const r = q.nonce.get(nonce) as Row | undefined;
      if (!r) return 'unknown';
      return r.used_at !== null ? 'used' : 'expired';
    },
    appendAudit: (at, event) => {
      // node:sqlite is synchronous, so read-last + insert cannot interleave within this process.
      const last = q.last.get() as Row | undefined;
      const seq = last ? Number(last.seq) + 1 : 1;
      const prevHash = last ? (last.hash as string) : GENESIS_HASH;
      const iso = at.toISOString();
      const hash = auditHash(seq, iso, event, prevHash);
      q.append.run(seq, iso, JSON.stringify(event), prevHash, hash);
      return { seq, at: iso, event, prevHash, hash };
    },
    readAudit: (afterSeq = 0, limit = 1000) =>
      (q.read.all(afterSeq, limit) as Row[]).map((r) => ({
        seq: Number(r.seq),
        at: r.at as string,
        event: JSON.parse(r.event as string) as AuditEvent,
        prevHash: r.prev_hash as string,
        hash: r.hash as string,
      })),
    close: () => db.close(),
  };
}
