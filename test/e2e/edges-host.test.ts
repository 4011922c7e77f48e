/**
 * The host's edges against real listeners: request targets that could reach another route, a
 * stalled body, slow headers, /metrics and /readyz, and alert webhooks to internal addresses.
 * The host runs in-process on embedded SQLite; the enclave is a small stand-in on a unix socket
 * (these tests are about the host's own surface, not the request path). Raw TCP sockets are used
 * wherever a normal client would normalise what is being tested.
 */
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { Pool } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildHostApp, metricsAddress, sha256Hex, type HostConfig } from '../../host/app.ts';
import { HostStore } from '../../host/store.ts';
import { openSqlite } from '../../storage/db.ts';
import { eventually } from './helpers.ts';

const ADMIN = `sgadm_${randomBytes(16).toString('hex')}`;
const METRICS_TOKEN = `sgmet_${randomBytes(16).toString('hex')}`;
let dir: string;
let enclave: Server;
let enclaveSocket: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sg-edges-'));
  enclaveSocket = join(dir, 'enclave.sock');
  enclave = createServer((req, res) => {
    if (req.url === '/healthz') return void res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true,"phase":"serving"}');
    if (req.url === '/metrics') return void res.writeHead(200).end('securegate_enclave_stand_in 1\n');
    if (req.url?.startsWith('/anomalies')) return void res.writeHead(200, { 'content-type': 'application/json' }).end('{"anomalies":[]}');
    res.writeHead(404).end();
  });
  await new Promise<void>((r) => enclave.listen(enclaveSocket, r));
  await mkdir(join(dir, 'dashboard'));
  await writeFile(join(dir, 'dashboard', 'index.html'), '<!doctype html><title>SecureGate</title>');
});
afterAll(async () => {
  enclave?.close();
  await rm(dir, { recursive: true, force: true });
});

interface Host {
  app: FastifyInstance;
  store: HostStore;
  url: string;
  port: number;
  close(): Promise<void>;
}

async function startHost(options: Partial<HostConfig> = {}): Promise<Host> {
  const store = new HostStore(openSqlite(join(dir, `host-${randomBytes(4).toString('hex')}.sqlite`)));
  await store.migrate();
  const pool = new Pool('http://enclave.local', { connect: { socketPath: enclaveSocket } });
  const app = await buildHostApp({
    store, enclave: pool, pepper: new Uint8Array(randomBytes(32)), adminTokenHash: sha256Hex(ADMIN), dashboardDir: join(dir, 'dashboard'), alertPollMs: 50, ...options,
  });
  const url = await app.listen({ port: 0, host: '127.0.0.1' });
  return {
    app, store, url, port: Number(new URL(url).port),
    async close() {
      await app.close();
      await pool.close();
      await store.close();
    },
  };
}

/** One request over a raw TCP connection, exactly as written; resolves with status, headers and body. */
function raw(port: number, head: string): Promise<{ status: number; head: string; body: string }> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    let data = '';
    socket.on('data', (c: Buffer) => (data += c.toString('latin1')));
    socket.on('error', reject);
    socket.on('close', () => {
      const m = /^HTTP\/1\.1 (\d{3})/.exec(data);
      if (!m) return reject(new Error(`no HTTP answer: ${JSON.stringify(data.slice(0, 200))}`));
      const split = data.indexOf('\r\n\r\n');
      resolve({ status: Number(m[1]), head: data.slice(0, split).toLowerCase(), body: data.slice(split + 4) });
    });
    socket.write(`${head}\r\nhost: localhost\r\nconnection: close\r\n\r\n`);
  });
}

const adminAuth = `\r\nauthorization: Bearer ${ADMIN}`;

describe('request targets on the real routes', () => {
  let host: Host;
  beforeAll(async () => {
    host = await startHost({ dev: true });
  });
  afterAll(() => host?.close());

  it('refuses an absolute-form target that names the admin API, even with the admin token', async () => {
    const res = await raw(host.port, `GET http://x/admin/v1/keys HTTP/1.1${adminAuth}`);
    expect(res.status).toBe(400);
    expect(JSON.parse(res.body).error.code).toBe('invalid_request');
  });

  it('refuses dotted, encoded and double-encoded paths into the admin API from the proxy\'s prefix', async () => {
    for (const target of ['/v1/../admin/v1/keys', '/v1/%2e%2e/admin/v1/keys', '/v1/..%2fadmin/v1/keys', '/v1%2f..%2fadmin/v1/keys', '/v1/%252e%252e/admin/v1/keys', '/v1/..%5cadmin/v1/keys', '/dashboard/%2e%2e/host.sqlite', '/dashboard/..%2f..%2fhost.sqlite']) {
      const res = await raw(host.port, `GET ${target} HTTP/1.1${adminAuth}`);
      expect(res.status, target).toBe(400);
      expect(JSON.parse(res.body).error.code, target).toBe('invalid_request');
    }
  });

  it('refuses paths the router cannot decode in the same error shape', async () => {
    for (const target of ['/v1/%zz', '/admin/v1/keys/%c0%ae', '/v1/chat/completions/%E0%A4%A']) {
      const res = await raw(host.port, `GET ${target} HTTP/1.1${adminAuth}`);
      expect(res.status, target).toBe(400);
      expect(JSON.parse(res.body).error.code, target).toBe('invalid_request');
    }
  });

  it('still serves the admin API, percent-encoded query values included', async () => {
    expect((await raw(host.port, `GET /admin/v1/keys HTTP/1.1${adminAuth}`)).status).toBe(200);
    await host.store.addEvent({ id: 'evt_edges', at: Date.now(), projectId: 'proj_default', keyId: null, type: 'ip_bound', detail: {} });
    const events = await raw(host.port, `GET /admin/v1/events?type=ip%5Fbound HTTP/1.1${adminAuth}`);
    expect(events.status).toBe(200);
    expect(JSON.parse(events.body)).toEqual([expect.objectContaining({ id: 'evt_edges', type: 'ip_bound' })]);
  });

  it('still serves the dashboard', async () => {
    const res = await raw(host.port, 'GET /dashboard/ HTTP/1.1');
    expect(res.status).toBe(200);
    expect(res.body).toContain('SecureGate');
  });
});

describe('slow clients', () => {
  let host: Host;
  beforeAll(async () => {
    host = await startHost({ dev: true, bodyTimeout: { windowMs: 300 }, clientTimeouts: { headersMs: 1_000 } });
  });
  afterAll(() => host?.close());

  it('answers 408 and closes the connection when a body stalls after complete headers', async () => {
    const socket = connect(host.port, '127.0.0.1');
    await once(socket, 'connect');
    let data = '';
    socket.on('data', (c: Buffer) => (data += c.toString('latin1')));
    socket.write(`POST /admin/v1/keys HTTP/1.1\r\nhost: localhost${adminAuth}\r\ncontent-type: application/json\r\ncontent-length: 500\r\n\r\n{"connectionId":`);
    await once(socket, 'close');
    expect(Number(/^HTTP\/1\.1 (\d{3})/.exec(data)?.[1])).toBe(408);
    expect(JSON.parse(data.slice(data.indexOf('\r\n\r\n') + 4)).error.code).toBe('request_timeout');
  });

  it('closes a connection whose headers never complete', async () => {
    const socket = connect(host.port, '127.0.0.1');
    await once(socket, 'connect');
    socket.on('error', () => undefined);
    socket.resume();
    socket.write('GET /healthz HTTP/1.1\r\nhost: localhost\r\nx-slow: ');
    const started = Date.now();
    await once(socket, 'close');
    expect(Date.now() - started).toBeLessThan(5_000);
  });
});

describe('/metrics and /readyz', () => {
  it('refuses /metrics on the public listener when neither a token nor a metrics listener is configured', async () => {
    const host = await startHost();
    try {
      const res = await fetch(`${host.url}/metrics`);
      expect(res.status).toBe(403);
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe('forbidden');
    } finally {
      await host.close();
    }
  });

  it('serves /metrics only to a request carrying the metrics token', async () => {
    const host = await startHost({ metricsToken: METRICS_TOKEN });
    try {
      for (const authorization of [undefined, 'Bearer wrong', `Bearer ${METRICS_TOKEN}x`, `Basic ${METRICS_TOKEN}`, `Bearer ${ADMIN}`]) {
        const res = await fetch(`${host.url}/metrics`, { headers: authorization ? { authorization } : {} });
        expect(res.status, authorization).toBe(401);
        expect(((await res.json()) as { error: { code: string } }).error.code).toBe('admin_unauthorized');
      }
      const res = await fetch(`${host.url}/metrics`, { headers: { authorization: `Bearer ${METRICS_TOKEN}` } });
      expect(res.status).toBe(200);
      const text = await res.text();
      expect(text).toContain('securegate_requests_total');
      expect(text).toContain('securegate_enclave_stand_in 1');
    } finally {
      await host.close();
    }
  });

  it('serves /metrics on a separate listener and refuses it on the public one', async () => {
    const host = await startHost({ metricsListen: { host: '127.0.0.1', port: 0 } });
    const metrics = metricsAddress(host.app)!;
    try {
      expect((await fetch(`${host.url}/metrics`)).status).toBe(403);
      const res = await fetch(`http://127.0.0.1:${metrics.port}/metrics`);
      expect(res.status).toBe(200);
      expect(await res.text()).toContain('securegate_requests_total');
      expect((await fetch(`http://127.0.0.1:${metrics.port}/admin/v1/keys`, { headers: { authorization: `Bearer ${ADMIN}` } })).status).toBe(404);
    } finally {
      await host.close();
    }
    // Closing the host closes its metrics listener too.
    await expect(fetch(`http://127.0.0.1:${metrics.port}/metrics`)).rejects.toThrow();
  });

  it('says "database unavailable" and "enclave unavailable" in /readyz, never the driver\'s or enclave\'s words', async () => {
    const host = await startHost({ enclave: new Pool('http://enclave.local', { connect: { socketPath: join(dir, 'no-enclave.sock') } }) });
    const query = host.store.db.query.bind(host.store.db);
    host.store.db.query = () => Promise.reject(new Error('connection to server at "10.0.0.5", port 5432 failed: FATAL: password authentication failed for user "sg_prod"'));
    try {
      const res = await fetch(`${host.url}/readyz`);
      expect(res.status).toBe(503);
      expect(await res.json()).toEqual({ ready: false, checks: { database: 'database unavailable', enclave: 'enclave unavailable' } });
    } finally {
      host.store.db.query = query;
      await host.close();
    }
  });
});

describe('alert webhooks to internal addresses', () => {
  let receiver: Server;
  let hits = 0;
  beforeAll(async () => {
    receiver = createServer((req, res) => {
      hits++;
      req.resume();
      res.writeHead(204).end();
    });
    await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
  });
  afterAll(() => receiver?.close());

  async function deliverKillAlert(options: Partial<HostConfig>) {
    const host = await startHost(options);
    try {
      const target = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hook`;
      const add = await fetch(`${host.url}/admin/v1/alerts`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' }, body: JSON.stringify({ kind: 'webhook', target }) });
      if (options.allowPrivateWebhooks) expect(add.status).toBe(201);
      else {
        // Refused when it is added; a target stored earlier (or by hand) is still refused at delivery.
        expect(add.status).toBe(400);
        await host.store.db.query('INSERT INTO alert_targets (id, project_id, kind, target, secret, created_at) VALUES ($1, $2, $3, $4, $5, $6)', [
          'alt_direct', 'proj_default', 'webhook', target, 'whsec_x', Date.now(),
        ]);
      }
      await host.store.addEvent({ id: `evt_${randomBytes(6).toString('hex')}`, at: Date.now(), projectId: 'proj_default', keyId: 'key_x', type: 'key_killed', detail: {} });
      return await eventually(async () => {
        const [row] = await host.store.db.query('SELECT attempts, delivered_at, last_status, last_error FROM alert_outbox');
        return row && Number(row.attempts) > 0 ? row : undefined;
      });
    } finally {
      await host.close();
    }
  }

  it('does not deliver to a loopback webhook outside dev mode', async () => {
    hits = 0;
    const row = await deliverKillAlert({});
    expect(hits).toBe(0);
    expect(row).toMatchObject({ delivered_at: null, last_error: 'target address not allowed' });
  });

  it('delivers to a loopback webhook when the operator allows private webhooks', async () => {
    hits = 0;
    const row = await deliverKillAlert({ allowPrivateWebhooks: true });
    expect(hits).toBe(1);
    expect(row).toMatchObject({ last_status: 204, last_error: null });
  });
});
