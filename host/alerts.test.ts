/**
 * Alert delivery from the outbox against real receivers on loopback: a webhook server that
 * checks the Standard Webhooks signature and fails twice before accepting, and an SMTP server
 * (smtp-server) that receives the IP-mismatch email.
 */
import { createHmac } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestSmtp, type TestSmtp } from '../test/smtp.ts';
import { AlertDispatcher, backoffMs, MAX_ATTEMPTS, newWebhookSecret } from './alerts.ts';
import { openSqlite, type SqlDb } from '../storage/db.ts';
import { DEFAULT_PROJECT, HostStore } from './store.ts';

let dir: string;
let db: SqlDb;
let store: HostStore;
let webhook: Server;
let webhookUrl: string;
const received: Array<{ headers: Record<string, string | string[] | undefined>; body: string }> = [];
let failuresLeft = 2;
let smtp: TestSmtp;
const silent = { warn() {}, error() {} };

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sg-alerts-'));
  db = openSqlite(join(dir, 'h.sqlite'));
  store = new HostStore(db);
  await store.migrate();
  webhook = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      received.push({ headers: req.headers, body });
      if (failuresLeft-- > 0) {
        res.writeHead(500).end();
        return;
      }
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((r) => webhook.listen(0, '127.0.0.1', r));
  webhookUrl = `http://127.0.0.1:${(webhook.address() as AddressInfo).port}/hook`;
  smtp = await startTestSmtp();
});
afterAll(async () => {
  webhook?.close();
  await smtp.close();
  await db?.close();
  await rm(dir, { recursive: true, force: true });
});

async function addTarget(kind: 'webhook' | 'email', target: string, secret: string | null) {
  const id = `alt_${kind}_${Math.random().toString(36).slice(2)}`;
  await db.query('INSERT INTO alert_targets (id, project_id, kind, target, secret, created_at) VALUES ($1, $2, $3, $4, $5, $6)', [id, DEFAULT_PROJECT, kind, target, secret, Date.now()]);
  return id;
}

describe('alert delivery', () => {
  it('signs webhooks (Standard Webhooks) and retries with backoff until delivered', async () => {
    const secret = newWebhookSecret();
    await addTarget('webhook', webhookUrl, secret);
    const t0 = 1_800_000_000_000;
    let now = t0;
    const dispatcher = new AlertDispatcher({ db, log: silent, now: () => now });
    await store.addEvent({ id: 'evt_budget', at: t0, projectId: DEFAULT_PROJECT, keyId: 'key_1', type: 'budget_80', detail: { spentMicros: 800_000, capMicros: 1_000_000 } });
    expect(await dispatcher.runOnce()).toBe(1); // 500
    now += backoffMs(1) - 1;
    expect(await dispatcher.runOnce()).toBe(0); // not due yet (and leased rows are not re-sent)
    now += 60_001;
    expect(await dispatcher.runOnce()).toBe(1); // 500 again
    now += backoffMs(2) + 60_001;
    expect(await dispatcher.runOnce()).toBe(1); // 204
    expect(received).toHaveLength(3);
    const last = received[2]!;
    const id = last.headers['webhook-id'] as string;
    const ts = last.headers['webhook-timestamp'] as string;
    const expected = createHmac('sha256', Buffer.from(secret.slice('whsec_'.length), 'base64')).update(`${id}.${ts}.${last.body}`).digest('base64');
    expect(last.headers['webhook-signature']).toBe(`v1,${expected}`);
    expect(JSON.parse(last.body)).toMatchObject({ type: 'budget_80', data: { keyId: 'key_1', spentMicros: 800_000 } });
    const [row] = await db.query('SELECT attempts, delivered_at, last_status FROM alert_outbox');
    expect(row).toMatchObject({ attempts: 3, last_status: 204 });
    await dispatcher.stop();
    await db.query('DELETE FROM alert_targets');
  });

  it('gives up after the maximum number of attempts and records why', async () => {
    await addTarget('webhook', 'http://127.0.0.1:1/unreachable', newWebhookSecret());
    let now = 1_900_000_000_000;
    const dispatcher = new AlertDispatcher({ db, log: silent, now: () => now });
    await store.addEvent({ id: 'evt_dead', at: now, projectId: DEFAULT_PROJECT, keyId: 'key_2', type: 'key_killed', detail: {} });
    for (let i = 0; i < MAX_ATTEMPTS; i++) {
      expect(await dispatcher.runOnce()).toBe(1);
      now += backoffMs(i + 1) + 60_001;
    }
    expect(await dispatcher.runOnce()).toBe(0);
    const [row] = await db.query("SELECT attempts, failed_at, last_error FROM alert_outbox WHERE event_id = 'evt_dead'");
    expect(Number(row!.attempts)).toBe(MAX_ATTEMPTS);
    expect(row!.failed_at).not.toBeNull();
    expect(String(row!.last_error)).toMatch(/fetch failed|ECONNREFUSED/);
    await dispatcher.stop();
    await db.query('DELETE FROM alert_targets');
  });

  it('emails an IP mismatch with the key id, the offending IP and the bound IP', async () => {
    await addTarget('email', 'owner@example.com', null);
    const dispatcher = new AlertDispatcher({ db, log: silent, smtpUrl: smtp.url, emailFrom: 'alerts@securegate.test' });
    await store.addEvent({ id: 'evt_ip', at: Date.now(), projectId: DEFAULT_PROJECT, keyId: 'key_abc', type: 'ip_mismatch', detail: { clientIp: '2.125.160.216', boundIp: '81.2.69.142' } });
    expect(await dispatcher.runOnce()).toBe(1);
    expect(smtp.mails).toHaveLength(1);
    expect(smtp.mails[0]).toContain('key_abc');
    expect(smtp.mails[0]).toContain('Request IP: 2.125.160.216');
    expect(smtp.mails[0]).toContain('Bound IP: 81.2.69.142');
    expect(smtp.mails[0]).toContain('To: owner@example.com');
    await dispatcher.stop();
  });

  it('does not queue non-alert events', async () => {
    await store.addEvent({ id: 'evt_bound', at: Date.now(), projectId: DEFAULT_PROJECT, keyId: 'key_abc', type: 'ip_bound', detail: {} });
    expect(await db.query("SELECT id FROM alert_outbox WHERE event_id = 'evt_bound'")).toHaveLength(0);
  });
});
