/**
 * Accounts from the command line: `signup` (with an invite), `account` (plan, limits, members,
 * invites, admin tokens) and, for the server operator, `accounts` (create, list, set-plan).
 * Passwords come from a hidden prompt or stdin, never argv; tokens and invites are printed once.
 */
import { readPassword } from './prompt.ts';
import { passwordToken } from './session.ts';
import { effectiveConfig, readConfig, writeConfig } from './config.ts';
import { CliError, EXIT } from './errors.ts';
import { adminRequest } from './http.ts';
import { dim, green, printJson, type Io } from './output.ts';
import type { AccountView } from '../protocol/index.ts';

export type { AccountView };


function login() {
  const c = effectiveConfig();
  if (!c.adminToken) throw new CliError(`not logged in to ${c.serverUrl}: run \`securegate login\``, EXIT.invalid);
  return c as typeof c & { adminToken: string };
}

const limitText = (n: number | null | undefined) => (n === undefined || n === null ? 'unlimited' : String(n));

export async function fetchAccount(): Promise<AccountView> {
  const c = login();
  return (await adminRequest(c.serverUrl, c.adminToken, 'GET', '/account')) as AccountView;
}

/** The account lines of `securegate status` and `securegate account`. */
export function accountLines(a: AccountView): string[] {
  return [
    `Account:      ${a.name} (${a.id}, ${a.role})`,
    `Plan:         ${a.plan.name}`,
    `Connections:  ${a.usage.connections} of ${limitText(a.plan.limits.connections)}`,
    `Keys:         ${a.usage.keys} of ${limitText(a.plan.limits.keys)}`,
    `Features:     ${a.plan.features.join(', ') || 'none'}`,
  ];
}

export async function signupCommand(options: { server?: string; email: string; invite?: string; accountName?: string; passwordStdin?: boolean; json?: boolean }, io: Io): Promise<number> {
  const saved = readConfig();
  const serverUrl = options.server ?? process.env.SECUREGATE_URL ?? saved.serverUrl ?? 'http://127.0.0.1:8080';
  const password = await readPassword(options.passwordStdin);
  const res = await fetch(`${serverUrl}/auth/v1/signup`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ email: options.email, password, ...(options.invite ? { invite: options.invite } : {}), ...(options.accountName ? { accountName: options.accountName } : {}) }),
  }).catch((e: Error) => {
    throw new CliError(`cannot reach ${serverUrl}: ${e.message}`, EXIT.unavailable);
  });
  const body = (await res.json()) as { account: { id: string; name: string; plan: string }; role: string; error?: { message: string } };
  if (res.status !== 201) throw new CliError(`sign-up refused: ${body.error?.message ?? res.status}`, EXIT.invalid);
  const { token } = await passwordToken(serverUrl, options.email, password, body.account.id);
  const path = writeConfig({ ...saved, serverUrl, adminToken: token });
  if (options.json) printJson(io, { serverUrl, account: body.account, role: body.role, config: path });
  else io.out(`${green(io, '✔')} signed up: ${body.role} of ${body.account.name} (${body.account.id}, plan ${body.account.plan}); logged in, credentials in ${path} (0600)\n`);
  return 0;
}

export async function accountCommand(options: { json?: boolean }, io: Io): Promise<number> {
  const a = await fetchAccount();
  if (options.json) printJson(io, a);
  else io.out(`${accountLines(a).join('\n')}\nMembers:      ${a.usage.members}\nProject:      ${a.defaultProject}\n`);
  return 0;
}

export async function membersCommand(options: { json?: boolean }, io: Io): Promise<number> {
  const c = login();
  const members = (await adminRequest(c.serverUrl, c.adminToken, 'GET', '/members')) as Array<{ userId: string; email: string; role: string; projects: string[] | null; since: number }>;
  if (options.json) printJson(io, members);
  else for (const m of members) io.out(`${m.userId.padEnd(22)}${m.role.padEnd(8)}${m.email}  ${m.projects ? `projects ${m.projects.join(',')}  ` : ''}${dim(io, new Date(m.since).toISOString())}\n`);
  return 0;
}

const projectList = (text: string | undefined) => (text === undefined ? undefined : text === 'all' ? null : text.split(',').map((p) => p.trim()).filter(Boolean));

export async function inviteCommand(options: { role?: string; projects?: string; json?: boolean }, io: Io): Promise<number> {
  const c = login();
  const projects = projectList(options.projects);
  const r = (await adminRequest(c.serverUrl, c.adminToken, 'POST', '/invites', { role: options.role ?? 'member', ...(projects !== undefined ? { projects } : {}) })) as {
    invite: string; role: string; projects: string[] | null; expiresInDays: number;
  };
  if (options.json) printJson(io, r);
  else io.out(`Invite (${r.role}${r.projects ? ` of ${r.projects.join(', ')}` : ''}, valid ${r.expiresInDays} days, shown once):\n  ${r.invite}\nThey join with: securegate signup --email <their email> --invite ${r.invite}\n`);
  return 0;
}

export async function removeMemberCommand(userId: string, options: { json?: boolean }, io: Io): Promise<number> {
  const c = login();
  const r = await adminRequest(c.serverUrl, c.adminToken, 'DELETE', `/members/${encodeURIComponent(userId)}`);
  if (options.json) printJson(io, r);
  else io.out(`removed ${userId}\n`);
  return 0;
}

export async function setRoleCommand(userId: string, role: string, options: { projects?: string; json?: boolean }, io: Io): Promise<number> {
  if (role !== 'owner' && role !== 'member') throw new CliError('role must be owner or member', EXIT.usage);
  const c = login();
  const projects = projectList(options.projects);
  const r = await adminRequest(c.serverUrl, c.adminToken, 'PATCH', `/members/${encodeURIComponent(userId)}`, { role, ...(projects !== undefined ? { projects } : {}) });
  if (options.json) printJson(io, r);
  else io.out(`${userId} is now ${role}\n`);
  return 0;
}

export async function tokensCommand(action: 'list' | 'create' | 'revoke', arg: string | undefined, options: { role?: string; json?: boolean }, io: Io): Promise<number> {
  const c = login();
  if (action === 'create') {
    const r = (await adminRequest(c.serverUrl, c.adminToken, 'POST', '/tokens', { name: arg, role: options.role ?? 'owner' })) as { id: string; token: string };
    if (options.json) printJson(io, r);
    else io.out(`${r.id}  (shown once; store it now)\n${r.token}\n`);
    return 0;
  }
  if (action === 'revoke') {
    const r = await adminRequest(c.serverUrl, c.adminToken, 'DELETE', `/tokens/${encodeURIComponent(arg!)}`);
    if (options.json) printJson(io, r);
    else io.out(`revoked ${arg}\n`);
    return 0;
  }
  const tokens = (await adminRequest(c.serverUrl, c.adminToken, 'GET', '/tokens')) as Array<{ id: string; name: string; role: string; lastUsedAt: number | null; revokedAt: number | null }>;
  if (options.json) printJson(io, tokens);
  else for (const t of tokens) io.out(`${t.id.padEnd(22)}${t.role.padEnd(8)}${t.revokedAt ? 'revoked' : 'active '} ${t.name}  ${dim(io, t.lastUsedAt ? `last used ${new Date(t.lastUsedAt).toISOString()}` : 'never used')}\n`);
  return 0;
}

/** Operator commands (the server's own admin token, e.g. on the dev stack). */
export async function accountsCommand(action: 'list' | 'create' | 'set-plan', args: string[], options: { plan?: string; json?: boolean }, io: Io): Promise<number> {
  const c = login();
  if (action === 'create') {
    const r = (await adminRequest(c.serverUrl, c.adminToken, 'POST', '/accounts', { name: args[0], ...(options.plan ? { plan: options.plan } : {}) })) as { id: string; plan: string; ownerInvite: string };
    if (options.json) printJson(io, r);
    else io.out(`${r.id} created on plan ${r.plan}\nOwner invite (shown once): ${r.ownerInvite}\nThe owner joins with: securegate signup --email <email> --invite ${r.ownerInvite}\n`);
    return 0;
  }
  if (action === 'set-plan') {
    const r = (await adminRequest(c.serverUrl, c.adminToken, 'PATCH', `/accounts/${encodeURIComponent(args[0]!)}`, { plan: args[1] })) as AccountView;
    if (options.json) printJson(io, r);
    else io.out(`${r.id} is now on ${r.plan.name} (nothing was deleted; see docs/accounts.md for what a downgrade refuses)\n`);
    return 0;
  }
  const list = (await adminRequest(c.serverUrl, c.adminToken, 'GET', '/accounts')) as Array<{ id: string; name: string; plan: string; usage: { connections: number; keys: number; members: number } }>;
  if (options.json) printJson(io, list);
  else for (const a of list) io.out(`${a.id.padEnd(22)}${a.plan.padEnd(12)}${String(a.usage.connections).padStart(4)} conns ${String(a.usage.keys).padStart(5)} keys  ${a.name}\n`);
  return 0;
}
