/**
 * The CLI's own configuration, in the user's config dir with 0600 permissions: server URL,
 * admin token, the owner's Ed25519 signing key, and the pinned shareholder identities. Pins come
 * from sources the owner controls (this file, or the local dev stack's file) — never from the
 * host alone, which could list itself t times.
 */
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { devPcrPolicy } from '../attestation/dev-pcrs.ts';
import { isLoopbackUrl } from '../protocol/index.ts';

export interface PinnedShareholder {
  id: string;
  url: string;
  publicKey: string;
}

export interface CliConfig {
  serverUrl?: string;
  adminToken?: string;
  ownerSecretKey?: string;
  shareholders?: PinnedShareholder[];
  threshold?: number;
  /** PCR policy for new connections: the allowed enclave measurements (the image sets, when no release manifest is named). */
  pcrPolicy?: { allow: Array<Record<string, string>>; allowDebug?: boolean };
  /** The signed release manifest `connect` pins the image from, and the release key that must have signed it. */
  releaseManifest?: string;
  releaseKey?: string;
  /** Owner-controlled bindings `connect` pins with the image: PCR3 (role ARN or hex) and/or PCR8 (hex). */
  ownerBindings?: { pcr3?: string; pcr8?: string };
  dev?: boolean;
}

/** What `npm start` writes for the CLI on the same machine (data/dev-stack.json). */
export interface DevStackFile {
  hostUrl: string;
  adminToken: string;
  shareholders: PinnedShareholder[];
  threshold: number;
  pcr0: string;
}

export const DEFAULT_SERVER = 'http://127.0.0.1:8080';

export function configDir(env = process.env): string {
  if (env.SECUREGATE_CONFIG_DIR) return resolve(env.SECUREGATE_CONFIG_DIR);
  return join(env.XDG_CONFIG_HOME ?? join(homedir(), '.config'), 'securegate');
}

export function readConfig(env = process.env): CliConfig {
  const path = join(configDir(env), 'config.json');
  if (!existsSync(path)) return {};
  return JSON.parse(readFileSync(path, 'utf8')) as CliConfig;
}

export function writeConfig(config: CliConfig, env = process.env): string {
  const dir = configDir(env);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const path = join(dir, 'config.json');
  writeFileSync(path, `${JSON.stringify(config, null, 2)}\n`, { mode: 0o600 });
  chmodSync(path, 0o600);
  return path;
}

/**
 * The dev stack's file, from SECUREGATE_DATA_DIR, or `data/` in this directory or the nearest
 * parent that has one (the CLI run from a subdirectory of the checkout finds the stack).
 */
export function findDevStack(env = process.env, cwd = process.cwd()): DevStackFile | undefined {
  const path = devStackPath(env, cwd);
  return path ? (JSON.parse(readFileSync(path, 'utf8')) as DevStackFile) : undefined;
}

export function devStackPath(env = process.env, cwd = process.cwd()): string | undefined {
  if (env.SECUREGATE_DATA_DIR) {
    const path = join(resolve(env.SECUREGATE_DATA_DIR), 'dev-stack.json');
    return existsSync(path) ? path : undefined;
  }
  for (let dir = resolve(cwd); ; dir = dirname(dir)) {
    const path = join(dir, 'data', 'dev-stack.json');
    if (existsSync(path)) return path;
    if (dirname(dir) === dir) return undefined;
  }
}

/**
 * The effective config: the saved one, and — when the server is a loopback dev stack whose
 * file is readable here — that stack's admin token and shareholder pins (dev login without
 * ceremony: whoever can read the data directory already controls the stack).
 */
export function effectiveConfig(env = process.env): CliConfig & { serverUrl: string } {
  const saved = readConfig(env);
  const serverUrl = env.SECUREGATE_URL ?? saved.serverUrl ?? DEFAULT_SERVER;
  const dev = findDevStack(env);
  if (dev && isLoopbackUrl(serverUrl) && new URL(dev.hostUrl).port === new URL(serverUrl).port) {
    return {
      ...saved,
      serverUrl,
      adminToken: saved.adminToken ?? dev.adminToken,
      shareholders: saved.shareholders ?? dev.shareholders,
      threshold: saved.threshold ?? dev.threshold,
      // The dev NSM's image and its PCR8 stand-in: the same owner-binding rule as production.
      pcrPolicy: saved.pcrPolicy ?? devPcrPolicy(dev.pcr0),
      dev: true,
    };
  }
  return { ...saved, serverUrl };
}

/**
 * Which shareholders this machine enrolled each connection with (`<config dir>/enrollments.json`,
 * 0600): the owner's own record, so `attest audit` can tell a shareholder that never logged an
 * enrollment it was sent — without taking the gateway's word for it.
 */
export function readEnrollments(env = process.env): Record<string, string[]> {
  const path = join(configDir(env), 'enrollments.json');
  return existsSync(path) ? (JSON.parse(readFileSync(path, 'utf8')) as Record<string, string[]>) : {};
}

export function recordEnrollment(connectionId: string, shareholderIds: string[], env = process.env): void {
  const dir = configDir(env);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const path = join(dir, 'enrollments.json');
  writeFileSync(path, `${JSON.stringify({ ...readEnrollments(env), [connectionId]: shareholderIds }, null, 2)}\n`, { mode: 0o600 });
  chmodSync(path, 0o600);
}
