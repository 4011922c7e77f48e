/**
 * A shareholder's identity: its id and X25519 key pair, made once by `init` and kept in
 * `<dataDir>/identity.json` with 0600 permissions. The private key opens enrolled shares and
 * authenticates releases (HPKE auth mode); it never leaves this process and is never logged.
 * The Ed25519 key that signs the audit log's heads is derived from it (HKDF-SHA256, its own
 * label), so existing identity files need no migration and the two uses never share a key.
 */
import { chmodSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ed25519 } from '@noble/curves/ed25519.js';
import { hkdf } from '@noble/hashes/hkdf.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { fromHex, generateX25519KeyPair, toHex, x25519PublicKey } from '../protocol/index.ts';

export interface ShareholderIdentity {
  id: string;
  privateKey: Uint8Array;
  publicKey: Uint8Array;
}

const LOG_KEY_INFO = new TextEncoder().encode('securegate/shareholder-log-signing/v1');

/** The Ed25519 key pair that signs this shareholder's log heads (derived, never stored). */
export function logSigningKey(identity: Pick<ShareholderIdentity, 'privateKey'>): { secretKey: Uint8Array; publicKey: Uint8Array } {
  const secretKey = hkdf(sha256, identity.privateKey, undefined, LOG_KEY_INFO, 32);
  return { secretKey, publicKey: ed25519.getPublicKey(secretKey) };
}

const FILE = 'identity.json';

export function identityPath(dataDir: string): string {
  return join(dataDir, FILE);
}

export function initIdentity(dataDir: string, id: string): ShareholderIdentity {
  if (!/^[a-z0-9][a-z0-9._-]{0,63}$/.test(id)) throw new Error('shareholder id must be 1-64 chars of a-z, 0-9, . _ -');
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const path = identityPath(dataDir);
  if (existsSync(path)) throw new Error(`${path} exists already; refusing to replace an identity`);
  const pair = generateX25519KeyPair();
  writeFileSync(
    path,
    JSON.stringify({ id, privateKey: toHex(pair.privateKey), publicKey: toHex(pair.publicKey), createdAt: new Date().toISOString() }, null, 2),
    { mode: 0o600, flag: 'wx' },
  );
  chmodSync(path, 0o600);
  return { id, ...pair };
}

export function loadIdentity(dataDir: string): ShareholderIdentity {
  const path = identityPath(dataDir);
  const mode = statSync(path).mode & 0o777;
  if (mode & 0o077) throw new Error(`${path} is readable by others (mode ${mode.toString(8)}); chmod 600 it`);
  const raw = JSON.parse(readFileSync(path, 'utf8')) as { id: string; privateKey: string };
  const privateKey = fromHex(raw.privateKey, 'privateKey');
  return { id: raw.id, privateKey, publicKey: x25519PublicKey(privateKey) };
}
