/**
 * Alert delivery from the durable outbox: webhooks signed the Standard Webhooks way
 * (`webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64 HMAC-SHA256(secret,
 * "id.timestamp.body")>`), and email over SMTP (nodemailer). Failed deliveries retry with
 * exponential backoff (2 s · 2^attempt, at most 1 h) up to 10 attempts; every attempt's outcome is
 * kept on the outbox row, which is the delivery log. Several instances may run dispatchers: a
 * row is leased by moving its next attempt forward before it is sent.
 */
import { createHmac, randomBytes } from 'node:crypto';
import nodemailer, { type Transporter } from 'nodemailer';
import type { SqlDb } from '../storage/db.ts';

export const MAX_ATTEMPTS = 10;
const LEASE_MS = 60_000;

export interface AlertTarget {
  id: string;
  projectId: string;
  kind: 'webhook' | 'email';
  target: string;
  createdAt: number;
}

export function webhookSignature(secret: string, id: string, timestamp: number, body: string): string {
  const key = Buffer.from(secret.replace(/^whsec_/, ''), 'base64');
  return `v1,${createHmac('sha256', key).update(`${id}.${timestamp}.${body}`).digest('base64')}`;
}

export function backoffMs(attempts: number): number {
  return Math.min(3_600_000, 2_000 * 2 ** Math.max(0, attempts - 1));
}

export interface DispatcherOptions {
  db: SqlDb;
  smtpUrl?: string;
  emailFrom?: string;
  log: { warn: (o: object, m: string) => void; error: (o: object, m: string) => void };
  now?: () => number;
}

function emailText(payload: { type: string; timestamp: string; data: Record<string, unknown> }): { subject: string; text: string } {
  const d = payload.data;
  const subjects: Record<string, string> = {
    ip_mismatch: `SecureGate: key ${String(d.keyId)} used from an unexpected IP`,
    device_mismatch: `SecureGate: key ${String(d.keyId)} used from an unknown device`,
    key_suspended: `SecureGate: key ${String(d.keyId)} suspended after unusual activity`,
    key_killed: `SecureGate: key ${String(d.keyId)} was killed`,
    key_expired: `SecureGate: key ${String(d.keyId)} expired`,
  };
  const subject = subjects[payload.type] ?? `SecureGate alert: ${payload.type} (key ${String(d.keyId ?? '-')})`;
  const lines = [
    `Event: ${payload.type}`,
    `Time: ${payload.timestamp}`,
    `Key: ${String(d.keyId ?? '-')}`,
    ...(d.clientIp ? [`Request IP: ${String(d.clientIp)}`] : []),
    ...(d.boundIp ? [`Bound IP: ${String(d.boundIp)}`] : []),
    ...(d.spentMicros !== undefined ? [`Spent today: $${(Number(d.spentMicros) / 1e6).toFixed(4)} of $${(Number(d.capMicros) / 1e6).toFixed(2)}`] : []),
    ...(d.reason ? [`Reason: ${String(d.reason)}`] : []),
    '',
    'If this was not you: securegate kill <key-id>',
  ];
  return { subject, text: lines.join('\n') };
}

export class AlertDispatcher {
  readonly #o: DispatcherOptions;
  readonly #mailer: Transporter | undefined;
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<number> | undefined;
  #stopped = false;

  constructor(options: DispatcherOptions) {
    this.#o = options;
    this.#mailer = options.smtpUrl ? nodemailer.createTransport(options.smtpUrl) : undefined;
  }

  async start(intervalMs = 1_000): Promise<void> {
    // A database that is away (restart, failover) must not take the host down: log and retry on
    // the next tick.
    const attempt = () =>
      this.runOnce().catch((e: Error) => {
        this.#o.log.warn({ err: e.message }, 'alert delivery pass failed; will retry');
        return 0;
      });
    await this.#o.db.listen('sg_alerts', () => void attempt());
    const tick = () => {
      if (this.#stopped) return;
      void attempt().finally(() => {
        if (!this.#stopped) this.#timer = setTimeout(tick, intervalMs);
      });
    };
    this.#timer = setTimeout(tick, intervalMs);
    this.#timer.unref();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    await this.#running;
    this.#mailer?.close();
  }

  /** Delivers every due message once; returns how many were attempted. */
  runOnce(): Promise<number> {
    this.#running ??= this.#deliverDue().finally(() => {
      this.#running = undefined;
    });
    return this.#running;
  }

  async #deliverDue(): Promise<number> {
    const now = (this.#o.now ?? Date.now)();
    const due = await this.#o.db.query(
      `SELECT o.id, o.payload, o.attempts, o.next_attempt_at, t.kind, t.target, t.secret FROM alert_outbox o JOIN alert_targets t ON t.id = o.target_id
       WHERE o.delivered_at IS NULL AND o.failed_at IS NULL AND o.next_attempt_at <= $1 ORDER BY o.next_attempt_at LIMIT 50`,
      [now],
    );
    let attempted = 0;
    for (const row of due) {
      // Lease: only the instance that moves next_attempt_at forward sends this attempt.
      const leased = await this.#o.db.query('UPDATE alert_outbox SET next_attempt_at = $1 WHERE id = $2 AND next_attempt_at = $3 RETURNING id', [
        now + LEASE_MS, row.id as string, Number(row.next_attempt_at),
      ]);
      if (leased.length === 0) continue;
      attempted++;
      const attempts = Number(row.attempts) + 1;
      let status: number | null = null;
      let error: string | null = null;
      try {
        if (row.kind === 'webhook') status = await this.#sendWebhook(row.id as string, row.target as string, row.secret as string, row.payload as string, now);
        else await this.#sendEmail(row.target as string, row.payload as string);
        if (status !== null && (status < 200 || status >= 300)) error = `HTTP ${status}`;
      } catch (e) {
        error = (e as Error).message;
      }
      if (error === null) {
        await this.#o.db.query('UPDATE alert_outbox SET delivered_at = $1, attempts = $2, last_status = $3, last_error = NULL WHERE id = $4', [now, attempts, status, row.id as string]);
      } else if (attempts >= MAX_ATTEMPTS) {
        await this.#o.db.query('UPDATE alert_outbox SET failed_at = $1, attempts = $2, last_status = $3, last_error = $4 WHERE id = $5', [now, attempts, status, error, row.id as string]);
        this.#o.log.error({ outboxId: row.id, attempts }, 'alert delivery gave up');
      } else {
        await this.#o.db.query('UPDATE alert_outbox SET next_attempt_at = $1, attempts = $2, last_status = $3, last_error = $4 WHERE id = $5', [
          now + backoffMs(attempts), attempts, status, error, row.id as string,
        ]);
        this.#o.log.warn({ outboxId: row.id, attempts, error }, 'alert delivery failed; will retry');
      }
    }
    return attempted;
  }

  async #sendWebhook(id: string, url: string, secret: string, body: string, now: number): Promise<number> {
    const timestamp = Math.floor(now / 1000);
    const res = await fetch(url, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        'user-agent': 'SecureGate-Webhooks/1',
        'webhook-id': id,
        'webhook-timestamp': String(timestamp),
        'webhook-signature': webhookSignature(secret, id, timestamp, body),
      },
      body,
      redirect: 'manual',
      signal: AbortSignal.timeout(10_000),
    });
    await res.arrayBuffer().catch(() => undefined);
    return res.status;
  }

  async #sendEmail(to: string, payloadText: string): Promise<void> {
    if (!this.#mailer) throw new Error('no SMTP server configured (--smtp-url)');
    const payload = JSON.parse(payloadText) as { type: string; timestamp: string; data: Record<string, unknown> };
    const { subject, text } = emailText(payload);
    await this.#mailer.sendMail({ from: this.#o.emailFrom ?? 'SecureGate <alerts@securegate.local>', to, subject, text });
  }
}

export function newWebhookSecret(): string {
  return `whsec_${randomBytes(24).toString('base64')}`;
}
