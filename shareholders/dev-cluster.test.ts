/**
 * The dev stack's shareholders in one process: each instance behaves like a process of its own
 * towards its callers — stopped, it refuses connections and drops kept-alive ones; restarted, it
 * serves on the same port from the same identity and store.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Pool } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadRoot } from '../attestation/index.ts';
import { createDevRoot } from '../attestation/dev.ts';
import { DevShareholderCluster } from './dev-cluster.ts';
import { initIdentity } from './identity.ts';

let dir: string;
let cluster: DevShareholderCluster;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sg-dev-cluster-'));
  const root = await createDevRoot();
  cluster = new DevShareholderCluster([loadRoot('securegate-dev-root', root.certificatePem)]);
  for (const id of ['sh-1', 'sh-2']) initIdentity(join(dir, id), id);
});

afterAll(async () => {
  await cluster.stopAll();
  await rm(dir, { recursive: true, force: true });
});

const start = (id: string, port = 0) => cluster.start(id, join(dir, id), port, join(dir, `${id}.log`));

describe('DevShareholderCluster', () => {
  it('serves each shareholder on its own port with its own identity', async () => {
    const [a, b] = await Promise.all([start('sh-1'), start('sh-2')]);
    expect(a).not.toBe(b);
    const ids = await Promise.all([a, b].map(async (url) => ((await (await fetch(`${url}/v1/identity`)).json()) as { id: string }).id));
    expect(ids).toEqual(['sh-1', 'sh-2']);
  });

  it('drops kept-alive connections and refuses new ones once a shareholder is stopped, leaving the others serving', async () => {
    const url = await start('sh-1');
    const pool = new Pool(url, { connections: 1 });
    try {
      expect((await pool.request({ path: '/healthz', method: 'GET' })).statusCode).toBe(200);
      await cluster.stop('sh-1');
      await expect(pool.request({ path: '/healthz', method: 'GET' }).then((r) => r.body.text())).rejects.toMatchObject({ code: 'ECONNREFUSED' });
      await expect(fetch(`${url}/healthz`)).rejects.toThrow();
      expect((await fetch(`${await start('sh-2')}/healthz`)).status).toBe(200);
    } finally {
      await pool.close();
    }
  });

  it('restarts a stopped shareholder on the same port, with the same identity and audit log', async () => {
    const url = await start('sh-1');
    const head = async () => ((await (await fetch(`${url}/v1/audit/head`)).json()) as Record<string, unknown>);
    const before = { identity: await (await fetch(`${url}/v1/identity`)).json(), head: await head() };
    await cluster.stop('sh-1');
    expect(await start('sh-1', Number(new URL(url).port))).toBe(url);
    expect(await (await fetch(`${url}/v1/identity`)).json()).toEqual(before.identity);
    expect((await head()).seq).toEqual(before.head.seq);
  });

  it('refuses to serve a data directory under another shareholder id', async () => {
    await expect(cluster.start('sh-3', join(dir, 'sh-2'), 0, join(dir, 'sh-3.log'))).rejects.toThrow(/identity of sh-2/);
  });
});
