/**
 * The host's repository: connections (sealed records and metadata only — never a plaintext key
 * or DEK) and SG_ keys (HMAC hashes only). One interface; this file is the embedded engine
 * (SQLite via node:sqlite, WAL, one file under the data directory). Methods are async so the
 * PostgreSQL engine fits the same interface.
 */
import { DatabaseSync } from 'node:sqlite';
import { join } from 'node:path';
import type { AuthScheme } from '../protocol/index.ts';

export interface ConnectionRecord {
  id: string;
  name: string;
  provider: string;
  origin: string;
  authScheme: AuthScheme;
  /** Base64 of the sealed key record. */
  sealedRecord: string;
  threshold: number;
  shareholders: string[];
  createdAt: string;
}

export interface KeyRecord {
  id: string;
  hash: string;
  hint: string;
  connectionId: string;
  status: 'active' | 'revoked';
  createdAt: string;
}

export interface HostStore {
  insertConnection(c: ConnectionRecord): Promise<boolean>;
  getConnection(id: string): Promise<ConnectionRecord | undefined>;
  listConnections(): Promise<ConnectionRecord[]>;
  insertKey(k: KeyRecord): Promise<void>;
  findKeyByHash(hash: string): Promise<KeyRecord | undefined>;
  listKeys(): Promise<KeyRecord[]>;
  close(): Promise<void>;
}

const MIGRATIONS = [
  `CREATE TABLE connections (
     id TEXT PRIMARY KEY, name TEXT NOT NULL, provider TEXT NOT NULL, origin TEXT NOT NULL,
     auth_scheme TEXT NOT NULL, sealed_record TEXT NOT NULL, threshold INTEGER NOT NULL,
     shareholders TEXT NOT NULL, created_at TEXT NOT NULL);
   CREATE TABLE sg_keys (
     id TEXT PRIMARY KEY, hash TEXT NOT NULL UNIQUE, hint TEXT NOT NULL,
     connection_id TEXT NOT NULL REFERENCES connections(id), status TEXT NOT NULL, created_at TEXT NOT NULL);`,
];

type Row = Record<string, unknown>;

export function openSqliteHostStore(dataDir: string): HostStore {
  const db = new DatabaseSync(join(dataDir, 'host.sqlite'));
  db.exec('PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;');
  db.exec('CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)');
  const applied = new Set((db.prepare('SELECT version FROM schema_migrations').all() as Row[]).map((r) => Number(r.version)));
  MIGRATIONS.forEach((sql, i) => {
    if (applied.has(i + 1)) return;
    db.exec('BEGIN');
    db.exec(sql);
    db.prepare('INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)').run(i + 1, new Date().toISOString());
    db.exec('COMMIT');
  });
  const toConnection = (r: Row): ConnectionRecord => ({
    id: r.id as string,
    name: r.name as string,
    provider: r.provider as string,
    origin: r.origin as string,
    authScheme: r.auth_scheme as AuthScheme,
    sealedRecord: r.sealed_record as string,
    threshold: Number(r.threshold),
    shareholders: JSON.parse(r.shareholders as string) as string[],
    createdAt: r.created_at as string,
  });
  const toKey = (r: Row): KeyRecord => ({
    id: r.id as string,
    hash: r.hash as string,
    hint: r.hint as string,
    connectionId: r.connection_id as string,
    status: r.status as KeyRecord['status'],
    createdAt: r.created_at as string,
  });
  const q = {
    insertConnection: db.prepare(
      'INSERT OR IGNORE INTO connections (id, name, provider, origin, auth_scheme, sealed_record, threshold, shareholders, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)',
    ),
    getConnection: db.prepare('SELECT * FROM connections WHERE id = ?'),
    listConnections: db.prepare('SELECT * FROM connections ORDER BY created_at'),
    insertKey: db.prepare('INSERT INTO sg_keys (id, hash, hint, connection_id, status, created_at) VALUES (?, ?, ?, ?, ?, ?)'),
    findKey: db.prepare('SELECT * FROM sg_keys WHERE hash = ?'),
    listKeys: db.prepare('SELECT * FROM sg_keys ORDER BY created_at'),
  };
  return {
    insertConnection: async (c) =>
      q.insertConnection.run(c.id, c.name, c.provider, c.origin, c.authScheme, c.sealedRecord, c.threshold, JSON.stringify(c.shareholders), c.createdAt)
        .changes === 1,
    getConnection: async (id) => {
      const r = q.getConnection.get(id) as Row | undefined;
      return r ? toConnection(r) : undefined;
    },
    listConnections: async () => (q.listConnections.all() as Row[]).map(toConnection),
    insertKey: async (k) => {
      q.insertKey.run(k.id, k.hash, k.hint, k.connectionId, k.status, k.createdAt);
    },
    findKeyByHash: async (hash) => {
      const r = q.findKey.get(hash) as Row | undefined;
      return r ? toKey(r) : undefined;
    },
    listKeys: async () => (q.listKeys.all() as Row[]).map(toKey),
    close: async () => db.close(),
  };
}
