/**
 * Alert delivery from the durable outbox: webhooks signed the Standard Webhooks way
 * (`webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64 HMAC-SHA256(secret,
 * "id.timestamp.body")>`), and email over SMTP (nodemailer). Failed deliveries retry with
 * exponential backoff (2 s · 2^attempt, at most 1 h) up to 10 attempts; every attempt's outcome is
 * kept on the outbox row, which is the delivery log. Several instances may run dispatchers: a
 * row is leased by moving its next attempt forward before it is sent.
 *
 * Webhook targets are chosen by tenants, so a target is a request the host makes on their behalf
 * (SSRF): loopback, link-local (cloud metadata at 169.254.169.254), private, CGNAT, unique-local,
 * unspecified, multicast and reserved addresses are refused unless the operator allows private
 * targets. The check runs at delivery time against the resolved addresses, and the connection is
 * made to exactly the addresses checked (the socket's `lookup` answers from the check), so a DNS
 * answer that changes between check and connect cannot reach an internal address. Redirects are
 * not followed. The outbox row — which tenants read — records a status code or one of a few
 * generic reasons, never the target's response or error text.
 */
import { createHmac, randomBytes } from 'node:crypto';
import { lookup as dnsLookup } from 'node:dns/promises';
import type { LookupAddress } from 'node:dns';
import { createRequire } from 'node:module';
import type { Transporter } from 'nodemailer';
import { Agent, request } from 'undici';
import type { SqlDb } from '../storage/db.ts';
import { IpRangeList, parseIp, type ParsedIp } from './client-ip.ts';

/**
 * `nodemailer` (39 modules) is loaded only by a dispatcher given an SMTP URL, when it is built:
 * a host without SMTP never uses it (issue 22, no module loaded where it is not used). A
 * synchronous require (nodemailer's CommonJS build of the same release) keeps the transport
 * created, and a malformed URL refused, in the constructor as before, not at the first email.
 */
const requireModule = createRequire(import.meta.url);

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

// ---- webhook targets (SSRF) ----

/**
 * Ranges a webhook may not reach unless private targets are allowed: RFC 6890 special-purpose
 * registries, i.e. "this network"/unspecified, RFC 1918, CGNAT (RFC 6598), loopback, link-local
 * (incl. the IMDS address), IETF protocol assignments, benchmarking, multicast and reserved space;
 * for IPv6 the unspecified and loopback addresses, IPv4-compatible, discard-only, Teredo,
 * unique-local (incl. AWS's fd00:ec2::254), site-local, link-local and multicast. IPv4-mapped
 * addresses arrive here as IPv4; NAT64 and 6to4 addresses are judged by the IPv4 they embed.
 */
const FORBIDDEN_TARGETS = new IpRangeList([
  '0.0.0.0/8', '10.0.0.0/8', '100.64.0.0/10', '127.0.0.0/8', '169.254.0.0/16', '172.16.0.0/12', '192.0.0.0/24',
  '192.168.0.0/16', '198.18.0.0/15', '224.0.0.0/4', '240.0.0.0/4',
  '::/96', '100::/64', '2001::/32', 'fc00::/7', 'fec0::/10', 'fe80::/10', 'ff00::/8',
]);
const NAT64 = new IpRangeList(['64:ff9b::/96', '64:ff9b:1::/48']);
const SIX_TO_FOUR = new IpRangeList(['2002::/16']);

function embeddedIpv4(v4: bigint): ParsedIp {
  const n = Number(v4 & 0xffffffffn);
  return { family: 4, value: BigInt(n), text: [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.') };
}

/** Whether a webhook may connect to `ip` when private targets are not allowed. */
export function isForbiddenWebhookAddress(ip: ParsedIp): boolean {
  if (FORBIDDEN_TARGETS.contains(ip)) return true;
  if (NAT64.contains(ip)) return FORBIDDEN_TARGETS.contains(embeddedIpv4(ip.value));
  if (SIX_TO_FOUR.contains(ip)) return FORBIDDEN_TARGETS.contains(embeddedIpv4(ip.value >> 80n));
  return false;
}

/** Resolves a host name to every address it has (injected in tests). */
export type WebhookLookup = (hostname: string) => Promise<Array<{ address: string; family: number }>>;

const systemLookup: WebhookLookup = (hostname) => dnsLookup(hostname, { all: true, verbatim: true });

export type WebhookTargetRefusal = 'webhook_target_invalid' | 'webhook_target_forbidden' | 'webhook_target_unresolvable';

export type WebhookTargetCheck =
  | { ok: true; url: URL; addresses: Array<{ address: string; family: 4 | 6 }> }
  | { ok: false; code: WebhookTargetRefusal; message: string };

/**
 * Checks a webhook target: an http(s) URL without credentials whose host — an address, or every
 * address the name resolves to — is not in a forbidden range (unless `allowPrivate`). Call it when
 * a target is created (for early feedback; a name that does not resolve yet is
 * `webhook_target_unresolvable`) and it is called again at every delivery.
 */
export async function checkWebhookTarget(target: string | URL, options: { allowPrivate: boolean; lookup?: WebhookLookup }): Promise<WebhookTargetCheck> {
  let url: URL;
  try {
    url = new URL(target);
  } catch {
    return { ok: false, code: 'webhook_target_invalid', message: 'webhook target must be an http(s) URL' };
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') return { ok: false, code: 'webhook_target_invalid', message: 'webhook target must be an http(s) URL' };
  if (url.username || url.password) return { ok: false, code: 'webhook_target_invalid', message: 'webhook target must not carry credentials' };
  // The WHATWG parser has already turned 0x7f.1, 2130706433 and friends into dotted IPv4.
  const literal = parseIp(url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname);
  let candidates: Array<{ address: string; family: number }>;
  if (literal) candidates = [{ address: literal.text, family: literal.family }];
  else {
    try {
      candidates = await (options.lookup ?? systemLookup)(url.hostname);
    } catch {
      candidates = [];
    }
    if (candidates.length === 0) return { ok: false, code: 'webhook_target_unresolvable', message: 'webhook target host does not resolve' };
  }
  const addresses: Array<{ address: string; family: 4 | 6 }> = [];
  for (const c of candidates) {
    const ip = parseIp(c.address);
    if (!ip) return { ok: false, code: 'webhook_target_unresolvable', message: 'webhook target host does not resolve to an address' };
    if (!options.allowPrivate && isForbiddenWebhookAddress(ip)) {
      return { ok: false, code: 'webhook_target_forbidden', message: 'webhook target is a loopback, link-local, private or reserved address (the operator can allow these with --allow-private-webhooks)' };
    }
    addresses.push({ address: ip.text, family: ip.family });
  }
  return { ok: true, url, addresses };
}

/** What an outbox row may say about a failed attempt: never text chosen by the target. */
export const DELIVERY_FAILURES = {
  webhook_target_invalid: 'target URL not allowed',
  webhook_target_forbidden: 'target address not allowed',
  webhook_target_unresolvable: 'target host did not resolve',
  timeout: 'timed out',
  connection: 'connection failed',
  email: 'email delivery failed',
  no_smtp: 'no SMTP server configured (--smtp-url)',
} as const;

class DeliveryFailure extends Error {
  readonly reason: keyof typeof DELIVERY_FAILURES;
  constructor(reason: keyof typeof DELIVERY_FAILURES, cause?: unknown) {
    super(DELIVERY_FAILURES[reason], cause === undefined ? undefined : { cause });
    this.reason = reason;
  }
}

export interface DispatcherOptions {
  db: SqlDb;
  smtpUrl?: string;
  emailFrom?: string;
  log: { warn: (o: object, m: string) => void; error: (o: object, m: string) => void };
  now?: () => number;
  /** Let webhooks reach loopback, private and other internal addresses (dev stacks; default false). */
  allowPrivateTargets?: boolean;
  /** Name resolution for webhook targets (default: the system resolver). */
  lookup?: WebhookLookup;
  /** Bound on one webhook attempt: connect, response headers and body (default 10 s). */
  deliveryTimeoutMs?: number;
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
    this.#mailer = options.smtpUrl ? (requireModule('nodemailer') as typeof import('nodemailer')).createTransport(options.smtpUrl) : undefined;
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
      let cause: string | undefined;
      try {
        if (row.kind === 'webhook') status = await this.#sendWebhook(row.id as string, row.target as string, row.secret as string, row.payload as string, now);
        else await this.#sendEmail(row.target as string, row.payload as string);
        // A redirect is not followed: it is recorded like any other non-2xx answer.
        if (status !== null && (status < 200 || status >= 300)) error = `HTTP ${status}`;
      } catch (e) {
        const failure = e instanceof DeliveryFailure ? e : new DeliveryFailure(row.kind === 'webhook' ? 'connection' : 'email', e);
        error = failure.message;
        // For the operator's log: an error code (ECONNREFUSED, UND_ERR_…), never the peer's text.
        const inner = failure.cause as { code?: unknown } | undefined;
        cause = typeof inner?.code === 'string' ? inner.code : undefined;
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
        this.#o.log.warn({ outboxId: row.id, attempts, error, ...(cause ? { cause } : {}) }, 'alert delivery failed; will retry');
      }
    }
    return attempted;
  }

  async #sendWebhook(id: string, target: string, secret: string, body: string, now: number): Promise<number> {
    const check = await checkWebhookTarget(target, { allowPrivate: this.#o.allowPrivateTargets ?? false, ...(this.#o.lookup ? { lookup: this.#o.lookup } : {}) });
    if (!check.ok) throw new DeliveryFailure(check.code);
    const pinned = check.addresses;
    const timeoutMs = this.#o.deliveryTimeoutMs ?? 10_000;
    // The socket resolves the host name from the check's answer only: no second DNS query.
    const lookup = (_host: string, opts: { all?: boolean }, callback: (err: Error | null, address: string | LookupAddress[], family?: number) => void) => {
      if (opts.all) callback(null, pinned);
      else callback(null, pinned[0]!.address, pinned[0]!.family);
    };
    const agent = new Agent({ connect: { lookup, timeout: timeoutMs } as object, connections: 1 });
    const timestamp = Math.floor(now / 1000);
    try {
      const res = await request(check.url, {
        dispatcher: agent,
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'user-agent': 'SecureGate-Webhooks/1',
          'webhook-id': id,
          'webhook-timestamp': String(timestamp),
          'webhook-signature': webhookSignature(secret, id, timestamp, body),
        },
        body,
        headersTimeout: timeoutMs,
        bodyTimeout: timeoutMs,
        signal: AbortSignal.timeout(timeoutMs),
      });
      // The answer's body is read and dropped (bounded), never kept.
      await res.body.dump({ limit: 64 * 1024 }).catch(() => undefined);
      return res.statusCode;
    } catch (e) {
      const code = (e as { code?: string; name?: string }).code ?? '';
      const timedOut = /TIMEOUT/.test(code) || (e as Error).name === 'TimeoutError' || (e as Error).name === 'AbortError';
      throw new DeliveryFailure(timedOut ? 'timeout' : 'connection', e);
    } finally {
      await agent.destroy().catch(() => undefined);
    }
  }

  async #sendEmail(to: string, payloadText: string): Promise<void> {
    if (!this.#mailer) throw new DeliveryFailure('no_smtp');
    const payload = JSON.parse(payloadText) as { type: string; timestamp: string; data: Record<string, unknown> };
    const { subject, text } = emailText(payload);
    await this.#mailer.sendMail({ from: this.#o.emailFrom ?? 'SecureGate <alerts@securegate.local>', to, subject, text });
  }
}

export function newWebhookSecret(): string {
  return `whsec_${randomBytes(24).toString('base64')}`;
}
