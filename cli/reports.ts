/**
 * Reports: `status [key-id]`, `usage`, `audit` (table, --json or --csv, paginated), and alert
 * targets: `alerts add|list|test|remove`. Read-only except `alerts`.
 */
import { accountLines, fetchAccount } from './accounts.ts';
import { effectiveConfig } from './config.ts';
import { CliError, EXIT } from './errors.ts';
import { adminRequest } from './http.ts';
import { resolveKeyRef, utcLabel } from './keys.ts';
import { ago, dim, green, printJson, red, usd, type Io } from './output.ts';

function login() {
  const config = effectiveConfig();
  if (!config.adminToken) throw new CliError(`not logged in to ${config.serverUrl}: run \`securegate login\``, EXIT.invalid);
  return config as typeof config & { adminToken: string };
}

const money = (n: number | null | undefined) => usd(n, 'no cap');

/** Accepts unix seconds, ISO dates, or relative `24h` / `7d` ago; returns epoch ms. */
export function parseWhen(text: string, now = Date.now()): number {
  if (/^\d{9,11}$/.test(text)) return Number(text) * 1000;
  const rel = /^(\d+)([mhd])$/.exec(text);
  if (rel) return now - Number(rel[1]) * { m: 60_000, h: 3_600_000, d: 86_400_000 }[rel[2] as 'm' | 'h' | 'd'];
  const t = Date.parse(text);
  if (Number.isNaN(t)) throw new CliError(`cannot read time ${JSON.stringify(text)}: use 2026-11-24, 2026-11-24T10:00Z, unix seconds, or 24h / 7d`, EXIT.usage);
  return t;
}

export async function statusCommand(keyId: string | undefined, options: { json?: boolean }, io: Io): Promise<number> {
  const c = login();
  if (!keyId) {
    const [connections, keys] = (await Promise.all([
      adminRequest(c.serverUrl, c.adminToken, 'GET', '/connections'),
      adminRequest(c.serverUrl, c.adminToken, 'GET', '/keys'),
    ])) as [unknown[], Array<{ status: string }>];
    const account = await fetchAccount();
    const summary = {
      server: c.serverUrl, loggedIn: true, dev: c.dev ?? false,
      account: { id: account.id, name: account.name, role: account.role }, plan: account.plan,
      connections: connections.length, keys: keys.length, activeKeys: keys.filter((k) => k.status === 'active').length,
    };
    if (options.json) printJson(io, summary);
    else io.out(`Server:       ${summary.server}${summary.dev ? ' (dev stack)' : ''}\n${accountLines(account).join('\n')}\nActive keys:  ${summary.activeKeys}\n`);
    return 0;
  }
  const id = await resolveKeyRef(c, keyId);
  const s = (await adminRequest(c.serverUrl, c.adminToken, 'GET', `/keys/${encodeURIComponent(id)}/status`)) as {
    id: string; name: string; status: string; boundIp: string | null; boundAt: number | null; autoLock: string[]; boundCity: string | null; deviceBound: boolean; deviceBoundAt: number | null; spentToday: number; dailyLimit: number | null; spentLifetime: number;
    lifetimeLimit: number | null; requestsToday: number; topModel: { model: string; share: number } | null; lastUsedAt: number | null;
    spentWeek?: number; weeklyLimit?: number | null; spentMonth?: number; monthlyLimit?: number | null; rpm?: number | null; tpm?: number | null; expiresAt?: number | null;
  };
  if (options.json) {
    printJson(io, s);
    return 0;
  }
  const state = s.status === 'active' ? green(io, 'ACTIVE') : red(io, s.status.toUpperCase());
  io.out(
    [
      `${s.id}  ${s.name}  ${state}`,
      `  Pinned IP:     ${s.boundIp ? `${s.boundIp} since ${new Date(s.boundAt!).toISOString()}` : dim(io, 'not yet (binds on first use)')}`,
      ...(s.autoLock.includes('city') ? [`  Pinned city:   ${s.boundCity ?? dim(io, 'not yet (binds on first use)')}`] : []),
      ...(s.autoLock.includes('device') || s.deviceBound ? [`  Device:        ${s.deviceBound ? `bound${s.deviceBoundAt ? ` since ${new Date(s.deviceBoundAt).toISOString()}` : ''}` : dim(io, 'not yet (binds on first use)')}`] : []),
      `  Spent today:   ${money(s.spentToday)} / ${money(s.dailyLimit)}`,
      ...(s.weeklyLimit !== null && s.weeklyLimit !== undefined ? [`  This week:     ${money(s.spentWeek ?? 0)} / ${money(s.weeklyLimit)}  (UTC, from Monday)`] : []),
      ...(s.monthlyLimit !== null && s.monthlyLimit !== undefined ? [`  This month:    ${money(s.spentMonth ?? 0)} / ${money(s.monthlyLimit)}  (UTC)`] : []),
      `  Lifetime:      ${money(s.spentLifetime)} / ${money(s.lifetimeLimit)}`,
      ...(s.rpm || s.tpm ? [`  Rate limits:   ${[s.rpm ? `${s.rpm} requests/min` : '', s.tpm ? `${s.tpm} tokens/min` : ''].filter(Boolean).join(', ')}`] : []),
      ...(s.expiresAt ? [`  Expires:       ${utcLabel(s.expiresAt)}${s.expiresAt <= Date.now() ? ' (passed)' : ''}`] : []),
      `  Requests today: ${s.requestsToday}`,
      `  Top model:     ${s.topModel ? `${s.topModel.model} (${Math.round(s.topModel.share * 100)}%)` : '-'}`,
      `  Last used:     ${s.lastUsedAt ? `${ago(s.lastUsedAt)} (${new Date(s.lastUsedAt).toISOString()})` : 'never'}`,
    ].join('\n') + '\n',
  );
  return 0;
}

export async function usageCommand(options: { key?: string; days?: string; json?: boolean }, io: Io): Promise<number> {
  const c = login();
  const q = new URLSearchParams();
  if (options.key) q.set('keyId', await resolveKeyRef(c, options.key));
  if (options.days) q.set('days', options.days);
  const rows = (await adminRequest(c.serverUrl, c.adminToken, 'GET', `/usage?${q}`)) as Array<{ day: string; keyId: string; model: string | null; requests: number; tokensIn: number; tokensOut: number; cost: number }>;
  if (options.json) {
    printJson(io, rows);
    return 0;
  }
  io.out(`${'DAY'.padEnd(12)}${'KEY'.padEnd(26)}${'MODEL'.padEnd(28)}${'REQS'.padStart(6)}${'IN'.padStart(10)}${'OUT'.padStart(10)}${'COST'.padStart(12)}\n`);
  for (const r of rows) {
    io.out(`${r.day.padEnd(12)}${r.keyId.padEnd(26)}${(r.model ?? '-').padEnd(28)}${String(r.requests).padStart(6)}${String(r.tokensIn).padStart(10)}${String(r.tokensOut).padStart(10)}${`$${r.cost.toFixed(4)}`.padStart(12)}\n`);
  }
  const total = rows.reduce((n, r) => n + r.cost, 0);
  io.out(`total $${total.toFixed(4)} over ${rows.reduce((n, r) => n + r.requests, 0)} requests\n`);
  return 0;
}

const AUDIT_FIELDS = ['at', 'requestId', 'keyId', 'projectId', 'provider', 'endpoint', 'modelRequested', 'modelResolved', 'tokensIn', 'tokensOut', 'tokensCached', 'cost', 'status', 'code', 'clientIp', 'city', 'deviceMatch', 'latencyMs'];

function csvCell(v: unknown): string {
  const s = v === null || v === undefined ? '' : String(v);
  return /[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

export async function auditCommand(options: { key?: string; since?: string; until?: string; model?: string; outcome?: string; limit?: string; all?: boolean; json?: boolean; csv?: boolean }, io: Io): Promise<number> {
  const c = login();
  const q = new URLSearchParams();
  if (options.outcome !== undefined) {
    if (options.outcome !== 'allowed' && options.outcome !== 'refused') throw new CliError('--outcome is allowed or refused', EXIT.usage);
    q.set('outcome', options.outcome);
  }
  if (options.key) q.set('keyId', await resolveKeyRef(c, options.key));
  if (options.model) q.set('model', options.model);
  if (options.since) q.set('since', String(parseWhen(options.since)));
  if (options.until) q.set('until', String(parseWhen(options.until)));
  q.set('limit', options.limit ?? '100');
  const items: Array<Record<string, unknown>> = [];
  for (;;) {
    const page = (await adminRequest(c.serverUrl, c.adminToken, 'GET', `/audit?${q}`)) as { items: Array<Record<string, unknown>>; next: string | null };
    items.push(...page.items);
    if (!options.all || !page.next) break;
    q.set('before', page.next);
  }
  if (options.json) printJson(io, items);
  else if (options.csv) {
    io.out(`${AUDIT_FIELDS.join(',')}\n`);
    for (const i of items) io.out(`${AUDIT_FIELDS.map((f) => csvCell(f === 'at' ? new Date(i.at as number).toISOString() : i[f])).join(',')}\n`);
  } else {
    if (items.length === 0) io.out('no requests in this range (widen it with --since 7d, or check --key)\n');
    else {
      // Columns are padded before colouring, so escape codes never shift them.
      const head = ['TIME (UTC)', 'KEY', 'ENDPOINT', 'MODEL', 'OUTCOME', 'TOKENS IN→OUT', 'COST', 'CLIENT'];
      const outcome = head.indexOf('OUTCOME');
      const rows = items.map((i) => [
        new Date(i.at as number).toISOString().replace('T', ' ').slice(0, 19),
        String(i.keyId ?? '-'),
        String(i.endpoint ?? '-'),
        String(i.modelResolved ?? i.modelRequested ?? '-'),
        String(i.code ?? i.status),
        `${String(i.tokensIn)}→${String(i.tokensOut)}`,
        usd(i.cost as number),
        `${String(i.clientIp ?? '')}${i.city ? ` (${String(i.city)})` : ''}`,
      ]);
      const widths = head.map((h, n) => Math.max(h.length, ...rows.map((r) => r[n]!.length)));
      const line = (cells: string[], paint?: (n: number, cell: string) => string) =>
        `${cells.map((cell, n) => (n === cells.length - 1 ? cell : (paint ? paint(n, cell.padEnd(widths[n]!)) : cell.padEnd(widths[n]!)))).join('  ')}\n`;
      io.out(line(head));
      rows.forEach((r, k) => io.out(line(r, (n, cell) => (n === outcome ? (items[k]!.code ? red(io, cell) : green(io, cell)) : cell))));
    }
    if (!options.all && items.length === Number(options.limit ?? 100)) io.err(dim(io, `(first ${items.length} rows; --all for everything)\n`));
  }
  return 0;
}

export async function alertsCommand(action: 'add' | 'list' | 'test' | 'remove', options: { webhook?: string; email?: string; project?: string; id?: string; json?: boolean }, io: Io): Promise<number> {
  const c = login();
  let result: unknown;
  if (action === 'add') {
    if (!options.webhook === !options.email) throw new CliError('give exactly one of --webhook <url> or --email <address>', EXIT.usage);
    result = await adminRequest(c.serverUrl, c.adminToken, 'POST', '/alerts', {
      kind: options.webhook ? 'webhook' : 'email',
      target: options.webhook ?? options.email,
      ...(options.project ? { projectId: options.project } : {}),
    });
    if (!options.json) {
      const r = result as { id: string; secret?: string };
      io.out(`${green(io, '✔')} added ${r.id}\n${r.secret ? `  signing secret (shown once): ${r.secret}\n  verify webhook-signature as Standard Webhooks v1 (HMAC-SHA256 over "id.timestamp.body")\n` : ''}`);
      return 0;
    }
  } else if (action === 'list') {
    result = await adminRequest(c.serverUrl, c.adminToken, 'GET', '/alerts');
    if (!options.json) {
      if ((result as unknown[]).length === 0) io.out('no alert targets yet: budget, IP-mismatch and suspension alerts go nowhere. Add one: `securegate alerts add --webhook URL` or `--email ADDRESS`\n');
      for (const t of result as Array<{ id: string; kind: string; target: string; projectId: string }>) io.out(`${t.id}  ${t.kind.padEnd(8)} ${t.target}  (${t.projectId})\n`);
      return 0;
    }
  } else if (action === 'remove') {
    result = await adminRequest(c.serverUrl, c.adminToken, 'DELETE', `/alerts/${encodeURIComponent(options.id ?? '')}`);
  } else {
    result = await adminRequest(c.serverUrl, c.adminToken, 'POST', '/alerts/test', options.project ? { projectId: options.project } : {});
    if (!options.json) {
      io.out(`${green(io, '✔')} test alert queued; see \`securegate alerts list\` and the deliveries log\n`);
      return 0;
    }
  }
  if (options.json) printJson(io, result);
  else io.out(`${green(io, '✔')} done\n`);
  return 0;
}

export async function projectsCommand(action: 'list' | 'set', id: string | undefined, options: { autoLock?: string; dailyLimit?: string; json?: boolean }, io: Io): Promise<number> {
  const c = login();
  if (action === 'set') {
    const body: Record<string, unknown> = {};
    if (options.autoLock !== undefined) body.autoLock = options.autoLock === 'none' ? null : options.autoLock.split(',').map((x) => x.trim());
    if (options.dailyLimit !== undefined) body.dailyLimit = options.dailyLimit === 'none' ? null : Number(options.dailyLimit);
    if (Object.keys(body).length === 0) throw new CliError('nothing to change: pass --auto-lock and/or --daily-limit', EXIT.usage);
    const p = await adminRequest(c.serverUrl, c.adminToken, 'PATCH', `/projects/${encodeURIComponent(id!)}`, body);
    if (options.json) printJson(io, p);
    else io.out(`updated ${id}\n`);
    return 0;
  }
  const list = (await adminRequest(c.serverUrl, c.adminToken, 'GET', '/projects')) as Array<{ id: string; name: string; dailyLimitMicros: number | null; defaultAutoLock: string[] | null }>;
  if (options.json) printJson(io, list);
  else for (const p of list) io.out(`${p.id.padEnd(24)}${p.name.padEnd(20)}daily ${money(p.dailyLimitMicros === null ? null : p.dailyLimitMicros / 1e6)}  auto-lock ${(p.defaultAutoLock ?? ['ip']).join(',')}\n`);
  return 0;
}
