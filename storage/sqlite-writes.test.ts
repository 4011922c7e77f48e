/**
 * SQLite serves everything over one connection with group commit: a write issued outside any
 * transaction while a batch is open must not become part of that batch (and vanish when it rolls
 * back), a transaction's callback may still read through the top-level handle, and the
 * transactions asked for in one turn of the event loop share one batch and one COMMIT.
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

  it('runs the transactions asked for in one turn of the event loop in one batch, released after its one COMMIT', async () => {
    // Issue 22: each request's reservation was a commit of its own; now a turn's requests share one.
    const events: string[] = [];
    const ask = (id: string) =>
      db
        .transaction(async (tx) => {
          events.push(`run ${id}`);
          await tx.query('INSERT INTO items (id) VALUES ($1)', [id]);
        })
        .then(() => void events.push(`done ${id}`));
    await Promise.all([ask('turn-1'), ask('turn-2'), ask('turn-3')]);
    expect(events).toEqual(['run turn-1', 'run turn-2', 'run turn-3', 'done turn-1', 'done turn-2', 'done turn-3']);
    expect((await db.query("SELECT id FROM items WHERE id LIKE 'turn-%' ORDER BY id")).map((r) => r.id)).toEqual(['turn-1', 'turn-2', 'turn-3']);
  });
});
