/**
 * SQLite serves everything over one connection with group commit: a write issued outside any
 * transaction while a batch is open must not become part of that batch (and vanish when it rolls
 * back), and a transaction's callback may still read through the top-level handle.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openSqlite, type SqlDb } from './db.ts';

describe('SQLite writes outside a transaction', () => {
  let dir: string;
  let db: SqlDb;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sg-sqlite-writes-'));
    db = openSqlite(join(dir, 'db.sqlite'));
    await db.exec('CREATE TABLE items (id TEXT PRIMARY KEY)');
  });
  afterAll(async () => {
    await db.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('keeps a write made while a concurrent transaction is open and then rolls back', async () => {
    let opened!: () => void;
    const open = new Promise<void>((r) => (opened = r));
    const refused = db.transaction(async (tx) => {
      await tx.query("INSERT INTO items (id) VALUES ('rolled-back')");
      opened();
      await new Promise((r) => setTimeout(r, 20));
      throw new Error('refused');
    });
    await open;
    // What an admin write (a kill) looks like while a reservation is being refused.
    const kept = db.query("INSERT INTO items (id) VALUES ('kept')");
    await expect(refused).rejects.toThrow('refused');
    await kept;
    const rows = await db.query('SELECT id FROM items ORDER BY id');
    expect(rows.map((r) => r.id)).toEqual(['kept']);
  });

  it('lets a transaction read through the top-level handle and nest a transaction inline', async () => {
    const result = await db.transaction(async (tx) => {
      await tx.query("INSERT INTO items (id) VALUES ('inside')");
      const [seen] = await db.query("SELECT COUNT(*) AS n FROM items WHERE id = 'inside'");
      await tx.transaction((inner) => inner.query("INSERT INTO items (id) VALUES ('nested')"));
      return Number(seen!.n);
    });
    expect(result).toBe(1);
    expect((await db.query("SELECT id FROM items WHERE id IN ('inside', 'nested') ORDER BY id")).map((r) => r.id)).toEqual(['inside', 'nested']);
  });
});
