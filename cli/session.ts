/**
 * `securegate login | logout`: the CLI's session with a gateway — an admin token saved 0600 in
 * the config dir (or the local dev stack's, found from its data directory), never in argv.
 */
import { isLoopbackUrl } from '../protocol/index.ts';
import { devPcrPolicy } from '../attestation/dev-pcrs.ts';
import { devStackPath, effectiveConfig, findDevStack, readConfig, writeConfig } from './config.ts';
import { CliError, EXIT } from './errors.ts';
import { green, printJson, type Io } from './output.ts';
import { readPassword, readStdin } from './prompt.ts';

export function requireLogin(io: Io) {
  const config = effectiveConfig();
  if (!config.adminToken) {
    throw new CliError(`not logged in to ${config.serverUrl}: run \`securegate login\` (a local dev stack from \`npm start\` logs you in automatically)`, EXIT.invalid);
  }
  void io;
  return config as typeof config & { adminToken: string };
}

/** Exchanges an email and password for an admin token of the account (shown once, saved 0600). */
export async function passwordToken(serverUrl: string, email: string, password: string, account?: string): Promise<{ token: string; accountId: string; role: string }> {
  const res = await fetch(`${serverUrl}/auth/v1/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ email, password, name: `securegate CLI (${process.env.USER ?? 'user'})`, ...(account ? { accountId: account } : {}) }),
  }).catch((e: Error) => {
    throw new CliError(`cannot reach ${serverUrl}: ${e.message}`, EXIT.unavailable);
  });
  const body = (await res.json()) as { token: string; accountId: string; role: string; error?: { message: string } };
  if (res.status !== 201) throw new CliError(`login refused: ${body.error?.message ?? res.status}`, EXIT.invalid);
  return body;
}

export async function loginCommand(options: { server?: string; tokenStdin?: boolean; email?: string; passwordStdin?: boolean; account?: string; json?: boolean }, io: Io): Promise<number> {
  const saved = readConfig();
  const serverUrl = options.server ?? process.env.SECUREGATE_URL ?? saved.serverUrl ?? 'http://127.0.0.1:8080';
  let adminToken: string | undefined;
  let source = 'token';
  if (options.tokenStdin) {
    adminToken = Buffer.from(await readStdin()).toString('utf8').trim();
  } else if (options.email) {
    adminToken = (await passwordToken(serverUrl, options.email, await readPassword(options.passwordStdin), options.account)).token;
    source = options.email;
  } else {
    const dev = findDevStack();
    if (dev && isLoopbackUrl(serverUrl)) {
      adminToken = dev.adminToken;
      source = 'dev stack';
      saved.shareholders = dev.shareholders;
      saved.threshold = dev.threshold;
      saved.pcrPolicy = devPcrPolicy(dev.pcr0);
      saved.dev = true;
    }
  }
  if (!adminToken) throw new CliError('no token: pass one with --token-stdin, or start the local dev stack (`npm start`) first', EXIT.usage);
  const check = await fetch(`${serverUrl}/admin/v1/connections`, { headers: { authorization: `Bearer ${adminToken}` } }).catch((e: Error) => {
    throw new CliError(`cannot reach ${serverUrl}: ${e.message}`, EXIT.unavailable);
  });
  if (check.status === 401) throw new CliError('the server refused this token', EXIT.invalid);
  const path = writeConfig({ ...saved, serverUrl, adminToken });
  if (options.json) printJson(io, { serverUrl, source, config: path });
  else io.out(`${green(io, '✔')} logged in to ${serverUrl} (${source}); credentials saved in ${path} (0600)\n`);
  return 0;
}

/** Forgets the server credentials on this machine; keeps the owner key and pins unless --all. */
export function logoutCommand(options: { all?: boolean; json?: boolean }, io: Io): number {
  const saved = readConfig();
  const { adminToken: _token, serverUrl, ...rest } = saved;
  const next = options.all ? {} : rest;
  const path = writeConfig(next);
  // A loopback dev stack logs the CLI in from its data directory: logging out forgets only what was saved.
  const current = effectiveConfig();
  const devStack = current.dev && isLoopbackUrl(current.serverUrl) ? current.serverUrl : null;
  if (options.json) printJson(io, { loggedOut: serverUrl ?? null, kept: Object.keys(next), devStack });
  else {
    io.out(`${green(io, '✔')} logged out${serverUrl ? ` of ${serverUrl}` : ''}; ${options.all ? 'all settings removed' : 'owner key and shareholder pins kept'} (${path})\n`);
    if (devStack) {
      io.out(`  note: the local dev stack at ${devStack} still logs this CLI in automatically from its data directory (${devStackPath() ?? 'data/dev-stack.json'}): whoever can read that directory controls the stack. Stop the stack or unset SECUREGATE_URL to be logged out of it.\n`);
    }
  }
  return 0;
}
