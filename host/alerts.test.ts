/**
 * Alert delivery from the outbox against real receivers on loopback: a webhook server that
 * checks the Standard Webhooks signature and fails twice before accepting, and an SMTP server
 * (smtp-server) that receives the IP-mismatch email. The receivers are on loopback, so the
 * delivery tests allow private targets; the SSRF tests below show what happens when they are not.
 * Forbidden addresses are from RFC 6890's special-purpose registries and AWS's IMDS documentation.
 */
import { createHmac } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestSmtp, type TestSmtp } from '../test/smtp.ts';
import { AlertDispatcher, backoffMs, checkWebhookTarget, DELIVERY_FAILURES, MAX_ATTEMPTS, newWebhookSecret, type WebhookLookup } from './alerts.ts';
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
    const dispatcher = new AlertDispatcher({ db, log: silent, now: () => now, allowPrivateTargets: true });
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
    const dispatcher = new AlertDispatcher({ db, log: silent, now: () => now, allowPrivateTargets: true });
    await store.addEvent({ id: 'evt_dead', at: now, projectId: DEFAULT_PROJECT, keyId: 'key_2', type: 'key_killed', detail: {} });
    for (let i = 0; i < MAX_ATTEMPTS; i++) {
      expect(await dispatcher.runOnce()).toBe(1);
      now += backoffMs(i + 1) + 60_001;
    }
    expect(await dispatcher.runOnce()).toBe(0);
    const [row] = await db.query("SELECT attempts, failed_at, last_error FROM alert_outbox WHERE event_id = 'evt_dead'");
    expect(Number(row!.attempts)).toBe(MAX_ATTEMPTS);
    expect(row!.failed_at).not.toBeNull();
    expect(row!.last_error).toBe(DELIVERY_FAILURES.connection);
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

  it('records an email alert as undeliverable, saying why, when no SMTP server is configured', async () => {
    await db.query('DELETE FROM alert_targets');
    await addTarget('email', 'owner@example.com', null);
    const now = 1_950_000_000_000;
    const dispatcher = new AlertDispatcher({ db, log: silent, now: () => now });
    await store.addEvent({ id: 'evt_nosmtp', at: now, projectId: DEFAULT_PROJECT, keyId: 'key_ns', type: 'key_killed', detail: {} });
    expect(await dispatcher.runOnce()).toBe(1);
    const [row] = await db.query("SELECT attempts, delivered_at, last_error FROM alert_outbox WHERE event_id = 'evt_nosmtp'");
    expect(Number(row!.attempts)).toBe(1);
    expect(row!.delivered_at).toBeNull();
    expect(row!.last_error).toBe(DELIVERY_FAILURES.no_smtp);
    await dispatcher.stop();
    await db.query('DELETE FROM alert_targets');
  });

  it('refuses a malformed SMTP URL when the dispatcher is built, not at the first email', () => {
    expect(() => new AlertDispatcher({ db, log: silent, smtpUrl: 'not a url' })).toThrow();
  });

  it('does not queue non-alert events', async () => {
    await store.addEvent({ id: 'evt_bound', at: Date.now(), projectId: DEFAULT_PROJECT, keyId: 'key_abc', type: 'ip_bound', detail: {} });
    expect(await db.query("SELECT id FROM alert_outbox WHERE event_id = 'evt_bound'")).toHaveLength(0);
  });
});

describe('webhook targets (SSRF)', () => {
  const FORBIDDEN = [
    'http://127.0.0.1/', 'http://127.8.9.10:8080/', 'http://localhost.:1/', 'http://[::1]/', 'http://169.254.169.254/latest/meta-data/',
    'http://[fd00:ec2::254]/', 'http://[fe80::1]/', 'http://10.0.0.1/', 'http://172.16.5.4/', 'http://192.168.1.1/', 'http://100.64.0.1/',
    'http://[fc00::1]/', 'http://0.0.0.0/', 'http://[::]/', 'http://224.0.0.1/', 'http://[ff02::1]/', 'http://255.255.255.255/',
    'http://[::ffff:127.0.0.1]/', 'http://[::ffff:a9fe:a9fe]/', 'http://0x7f.1/', 'http://2130706433/', 'http://017700000001/',
    'http://[64:ff9b::a9fe:a9fe]/', 'http://[2002:a00:1::]/', 'http://[::127.0.0.1]/',
  ];
  const localhostLookup: WebhookLookup = async (host) => (host.replace(/\.$/, '') === 'localhost' ? [{ address: '127.0.0.1', family: 4 }] : []);

  it('refuses loopback, link-local, private, CGNAT, unique-local, unspecified, multicast and embedded-IPv4 forms of them', async () => {
    for (const target of FORBIDDEN) {
      const check = await checkWebhookTarget(target, { allowPrivate: false, lookup: localhostLookup });
      expect(check.ok ? 'accepted' : check.code, target).toBe('webhook_target_forbidden');
    }
  });

  it('allows them when the operator allows private targets', async () => {
    for (const target of FORBIDDEN) expect((await checkWebhookTarget(target, { allowPrivate: true, lookup: localhostLookup })).ok, target).toBe(true);
  });

  it('accepts a public address and a name that resolves only to public addresses', async () => {
    expect(await checkWebhookTarget('https://93.184.215.14/hook', { allowPrivate: false })).toMatchObject({ ok: true, addresses: [{ address: '93.184.215.14', family: 4 }] });
    const lookup: WebhookLookup = async () => [{ address: '2606:2800:21f:cb07:6820:80da:af6b:8b2c', family: 6 }, { address: '93.184.215.14', family: 4 }];
    expect(await checkWebhookTarget('https://hooks.example.com/a', { allowPrivate: false, lookup })).toMatchObject({ ok: true });
  });

  it('refuses a name when any address it resolves to is internal (cloud metadata behind a public-looking name)', async () => {
    const lookup: WebhookLookup = async () => [{ address: '93.184.215.14', family: 4 }, { address: '169.254.169.254', family: 4 }];
    expect(await checkWebhookTarget('https://hooks.example.com/a', { allowPrivate: false, lookup })).toMatchObject({ ok: false, code: 'webhook_target_forbidden' });
  });

  it('refuses targets that are not http(s) URLs, carry credentials, or do not resolve', async () => {
    for (const target of ['ftp://93.184.215.14/', 'file:///etc/passwd', 'gopher://93.184.215.14/', 'not a url', 'https://user:pw@93.184.215.14/']) {
      expect(await checkWebhookTarget(target, { allowPrivate: true }), target).toMatchObject({ ok: false, code: 'webhook_target_invalid' });
    }
    expect(await checkWebhookTarget('https://nowhere.invalid/', { allowPrivate: false, lookup: async () => [] })).toMatchObject({ ok: false, code: 'webhook_target_unresolvable' });
  });

  describe('at delivery', () => {
    let receiver: Server;
    let port: number;
    const hits: Array<{ url: string; host: string | undefined }> = [];
    let answer: (res: import('node:http').ServerResponse) => void = (res) => res.writeHead(204).end();
    beforeAll(async () => {
      receiver = createServer((req, res) => {
        hits.push({ url: req.url ?? '', host: req.headers.host });
        req.resume();
        req.on('end', () => answer(res));
      });
      await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
      port = (receiver.address() as AddressInfo).port;
    });
    afterAll(() => receiver?.close());

    /** One delivery attempt to `target`; returns the outbox row. */
    async function attempt(target: string, options: Partial<ConstructorParameters<typeof AlertDispatcher>[0]>) {
      hits.length = 0;
      await db.query('DELETE FROM alert_targets');
      const targetId = await addTarget('webhook', target, newWebhookSecret());
      const eventId = `evt_${Math.random().toString(36).slice(2)}`;
      try {
        await store.addEvent({ id: eventId, at: Date.now(), projectId: DEFAULT_PROJECT, keyId: 'key_ssrf', type: 'key_killed', detail: {} });
        const dispatcher = new AlertDispatcher({ db, log: silent, ...options });
        expect(await dispatcher.runOnce()).toBe(1);
        await dispatcher.stop();
        const [row] = await db.query('SELECT attempts, delivered_at, last_status, last_error FROM alert_outbox WHERE event_id = $1', [eventId]);
        return row!;
      } finally {
        await db.query('DELETE FROM alert_targets WHERE id = $1', [targetId]);
      }
    }

    it('does not connect to a loopback target unless private targets are allowed, and says so generically', async () => {
      const row = await attempt(`http://127.0.0.1:${port}/hook`, {});
      expect(hits).toHaveLength(0);
      expect(row).toMatchObject({ delivered_at: null, last_status: null, last_error: DELIVERY_FAILURES.webhook_target_forbidden });
    });

    it('connects to the address it checked, not to a later DNS answer (no rebinding)', async () => {
      // The first answer is a public (unroutable, TEST-NET-1) address; a rebinding resolver then
      // answers loopback — which the system resolver would also give for "localhost".
      let lookups = 0;
      const rebinding: WebhookLookup = async () => (lookups++ === 0 ? [{ address: '192.0.2.1', family: 4 }] : [{ address: '127.0.0.1', family: 4 }]);
      const row = await attempt(`http://localhost:${port}/hook`, { lookup: rebinding, deliveryTimeoutMs: 500 });
      expect(lookups).toBe(1);
      expect(hits).toHaveLength(0);
      expect(row.delivered_at).toBeNull();
      expect([DELIVERY_FAILURES.timeout, DELIVERY_FAILURES.connection]).toContain(row.last_error);
    });

    it('delivers to a host name through the checked address, with the name in the Host header', async () => {
      const lookup: WebhookLookup = async (host) => (host === 'hooks.example.test' ? [{ address: '127.0.0.1', family: 4 }] : []);
      const row = await attempt(`http://hooks.example.test:${port}/hook`, { lookup, allowPrivateTargets: true });
      expect(hits).toEqual([{ url: '/hook', host: `hooks.example.test:${port}` }]);
      expect(row).toMatchObject({ last_status: 204, last_error: null });
      expect(row.delivered_at).not.toBeNull();
    });

    it('does not follow a redirect (to an internal address or anywhere else)', async () => {
      answer = (res) => res.writeHead(307, { location: 'http://169.254.169.254/latest/meta-data/' }).end();
      try {
        const row = await attempt(`http://127.0.0.1:${port}/hook`, { allowPrivateTargets: true, deliveryTimeoutMs: 1_000 });
        expect(hits).toHaveLength(1);
        expect(row).toMatchObject({ delivered_at: null, last_status: 307, last_error: 'HTTP 307' });
      } finally {
        answer = (res) => res.writeHead(204).end();
      }
    });

    it('never stores the target\'s response text', async () => {
      answer = (res) => res.writeHead(500, { 'content-type': 'text/plain' }).end('internal: db password hunter2 at 10.1.2.3');
      try {
        const row = await attempt(`http://127.0.0.1:${port}/hook`, { allowPrivateTargets: true });
        expect(row).toMatchObject({ last_status: 500, last_error: 'HTTP 500' });
        expect(JSON.stringify(await db.query('SELECT * FROM alert_outbox'))).not.toContain('hunter2');
      } finally {
        answer = (res) => res.writeHead(204).end();
      }
    });
  });
});
