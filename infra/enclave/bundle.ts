/**
 * The enclave bundle: a deterministic ustar archive of exactly what the enclave image runs —
 * `enclave/`, `protocol/`, `attestation/` (without tests and without the dev NSM) and the
 * production dependencies they import, at the versions pinned in package-lock.json. Entries are
 * sorted, with mtime 0, uid/gid 0, mode 0644/0755 and no absolute paths, so two builds from the
 * same tree are byte-identical and a customer can rebuild and compare the SHA-384.
 */
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const SOURCE_DIRS = ['enclave', 'protocol', 'attestation'];
/** Only in development images: never part of the production bundle. */
const EXCLUDED_SOURCES = new Set(['attestation/dev.ts']);
/** What the enclave code imports (closure over their `dependencies` is added automatically). */
export const ENCLAVE_DEPENDENCIES = [
  '@hpke/chacha20poly1305', '@hpke/core', '@hpke/dhkem-x25519', '@noble/ciphers', '@noble/curves', '@noble/hashes',
  'cbor-x', 'pino', 'prom-client', 'secrets.js-grempe', 'undici',
];

interface Entry {
  path: string;
  data: Buffer;
  executable: boolean;
}

function walk(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = join(dir, e.name);
    if (e.isDirectory()) return e.name === 'node_modules' ? [] : walk(p);
    return e.isFile() ? [p] : [];
  });
}

function sourceEntries(root: string): Entry[] {
  return SOURCE_DIRS.flatMap((d) => walk(join(root, d)))
    .map((p) => relative(root, p).split('\\').join('/'))
    .filter((p) => p.endsWith('.ts') && !p.endsWith('.test.ts') && !EXCLUDED_SOURCES.has(p))
    .map((p) => ({ path: p, data: readFileSync(join(root, p)), executable: false }));
}

/** Resolves `name` from `fromDir` the way Node does (nearest node_modules upwards). */
function packageDir(root: string, fromDir: string, name: string): string {
  let dir = fromDir;
  for (;;) {
    const candidate = join(dir, 'node_modules', name);
    if (existsSync(join(candidate, 'package.json'))) return candidate;
    if (dir === root || dir.length <= root.length) break;
    dir = join(dir, '..');
  }
  throw new Error(`dependency ${name} is not installed (run npm install)`);
}

function dependencyEntries(root: string): Entry[] {
  const seen = new Set<string>();
  const queue = ENCLAVE_DEPENDENCIES.map((name) => ({ name, from: root }));
  while (queue.length > 0) {
    const { name, from } = queue.shift()!;
    const dir = packageDir(root, from, name);
    if (seen.has(dir)) continue;
    seen.add(dir);
    const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { dependencies?: Record<string, string> };
    for (const dep of Object.keys(pkg.dependencies ?? {})) queue.push({ name: dep, from: dir });
  }
  return [...seen].flatMap((dir) =>
    walk(dir).map((p) => ({ path: relative(root, p).split('\\').join('/'), data: readFileSync(p), executable: (statSync(p).mode & 0o111) !== 0 })),
  );
}

function octal(value: number, width: number): Buffer {
  return Buffer.from(`${value.toString(8).padStart(width - 1, '0')}\0`, 'ascii');
}

/** One ustar header (POSIX.1-1988), with the path split into prefix/name when longer than 100. */
function header(entry: Entry): Buffer {
  const h = Buffer.alloc(512, 0);
  let name = entry.path;
  let prefix = '';
  if (Buffer.byteLength(name) > 100) {
    let i = name.indexOf('/');
    while (i >= 0 && Buffer.byteLength(name.slice(i + 1)) > 100) i = name.indexOf('/', i + 1);
    if (i < 0 || Buffer.byteLength(name.slice(0, i)) > 155) throw new Error(`path too long for ustar: ${entry.path}`);
    prefix = name.slice(0, i);
    name = name.slice(i + 1);
  }
  h.write(name, 0, 100, 'utf8');
  octal(entry.executable ? 0o755 : 0o644, 8).copy(h, 100);
  octal(0, 8).copy(h, 108);
  octal(0, 8).copy(h, 116);
  octal(entry.data.length, 12).copy(h, 124);
  octal(0, 12).copy(h, 136);
  h.write('        ', 148, 8, 'ascii');
  h.write('0', 156, 1, 'ascii');
  h.write('ustar\0', 257, 6, 'ascii');
  h.write('00', 263, 2, 'ascii');
  h.write('root', 265, 32, 'ascii');
  h.write('root', 297, 32, 'ascii');
  h.write(prefix, 345, 155, 'utf8');
  let sum = 0;
  for (const b of h) sum += b;
  Buffer.from(`${sum.toString(8).padStart(6, '0')}\0 `, 'ascii').copy(h, 148);
  return h;
}

export interface EnclaveBundle {
  tar: Buffer;
  sha384: string;
  files: string[];
}

/** Builds the bundle in memory from the working tree at `root`. */
export function buildEnclaveBundle(root = REPO_ROOT): EnclaveBundle {
  const manifest: Entry = {
    path: 'package.json',
    data: Buffer.from(`${JSON.stringify({ name: 'securegate-enclave', private: true, type: 'module', main: 'enclave/main.ts' }, null, 2)}\n`),
    executable: false,
  };
  const entries = [manifest, ...sourceEntries(root), ...dependencyEntries(root)].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  const parts: Buffer[] = [];
  for (const e of entries) {
    parts.push(header(e), e.data);
    const pad = (512 - (e.data.length % 512)) % 512;
    if (pad) parts.push(Buffer.alloc(pad));
  }
  parts.push(Buffer.alloc(1024));
  const tar = Buffer.concat(parts);
  return { tar, sha384: createHash('sha384').update(tar).digest('hex'), files: entries.map((e) => e.path) };
}
