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
/** What goes into a bundle: source directories, npm packages (their dependency closure is added), entry point. */
export interface BundleSpec {
  name: string;
  main: string;
  sourceDirs: string[];
  /** Only in development images: never part of a production bundle. */
  exclude: string[];
  dependencies: string[];
}

export const ENCLAVE_BUNDLE: BundleSpec = {
  name: 'securegate-enclave',
  main: 'enclave/main.ts',
  sourceDirs: ['enclave', 'protocol', 'attestation'],
  exclude: ['attestation/dev.ts'],
  dependencies: [
    '@hpke/chacha20poly1305', '@hpke/core', '@noble/ciphers', '@noble/curves', '@noble/hashes',
    'cbor-x', 'pino', 'prom-client', 'secrets.js-grempe', 'undici',
  ],
};

/** The shareholder service, for operators who run it as a container (infra/shareholder/). */
export const SHAREHOLDER_BUNDLE: BundleSpec = {
  name: 'securegate-shareholder',
  main: 'shareholders/main.ts',
  sourceDirs: ['shareholders', 'storage', 'protocol', 'attestation'],
  exclude: ['attestation/dev.ts'],
  dependencies: [
    '@hpke/chacha20poly1305', '@hpke/core', '@noble/ciphers', '@noble/curves', '@noble/hashes',
    'cbor-x', 'fastify', 'pg', 'pino', 'secrets.js-grempe',
  ],
};

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

function sourceEntries(root: string, spec: BundleSpec): Entry[] {
  return spec.sourceDirs.flatMap((d) => walk(join(root, d)))
    .map((p) => relative(root, p).split('\\').join('/'))
    .filter((p) => p.endsWith('.ts') && !p.endsWith('.test.ts') && !spec.exclude.includes(p))
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

function dependencyEntries(root: string, spec: BundleSpec): Entry[] {
  const seen = new Set<string>();
  const queue = spec.dependencies.map((name) => ({ name, from: root }));
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

/** An archive member: a regular file, a directory (path ends in `/`) or a symbolic link. */
export type TarEntry =
  | { path: string; type: 'file'; data: Buffer; mode: number }
  | { path: string; type: 'dir'; mode: number; uid?: number }
  | { path: string; type: 'symlink'; target: string };

/** One ustar header (POSIX.1-1988), with the path split into prefix/name when longer than 100. */
function header(entry: TarEntry): Buffer {
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
  octal(entry.type === 'symlink' ? 0o777 : entry.mode, 8).copy(h, 100);
  const owner = entry.type === 'dir' ? (entry.uid ?? 0) : 0;
  octal(owner, 8).copy(h, 108);
  octal(owner, 8).copy(h, 116);
  octal(entry.type === 'file' ? entry.data.length : 0, 12).copy(h, 124);
  octal(0, 12).copy(h, 136);
  h.write('        ', 148, 8, 'ascii');
  h.write(entry.type === 'file' ? '0' : entry.type === 'dir' ? '5' : '2', 156, 1, 'ascii');
  if (entry.type === 'symlink') {
    if (Buffer.byteLength(entry.target) > 100) throw new Error(`symlink target too long for ustar: ${entry.target}`);
    h.write(entry.target, 157, 100, 'utf8');
  }
  h.write('ustar\0', 257, 6, 'ascii');
  h.write('00', 263, 2, 'ascii');
  // Named root only when owned by root: tar maps names before numbers when extracting.
  if (owner === 0) {
    h.write('root', 265, 32, 'ascii');
    h.write('root', 297, 32, 'ascii');
  }
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

/** Builds the enclave bundle in memory from the working tree at `root`. */
export function buildEnclaveBundle(root = REPO_ROOT): EnclaveBundle {
  return buildBundle(ENCLAVE_BUNDLE, root);
}

export function buildBundle(spec: BundleSpec, root = REPO_ROOT): EnclaveBundle {
  const manifest: Entry = {
    path: 'package.json',
    data: Buffer.from(`${JSON.stringify({ name: spec.name, private: true, type: 'module', main: spec.main }, null, 2)}\n`),
    executable: false,
  };
  const entries = [manifest, ...sourceEntries(root, spec), ...dependencyEntries(root, spec)];
  const tar = writeTar(entries.map((e): TarEntry => ({ path: e.path, type: 'file', data: e.data, mode: e.executable ? 0o755 : 0o644 })));
  return { tar, sha384: createHash('sha384').update(tar).digest('hex'), files: entries.map((e) => e.path).sort() };
}

/** A deterministic ustar archive: entries sorted by path, mtime 0, owner root, no extended headers. */
export function writeTar(entries: TarEntry[]): Buffer {
  const sorted = [...entries].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  const parts: Buffer[] = [];
  for (const e of sorted) {
    parts.push(header(e));
    if (e.type !== 'file') continue;
    parts.push(e.data);
    const pad = (512 - (e.data.length % 512)) % 512;
    if (pad) parts.push(Buffer.alloc(pad));
  }
  parts.push(Buffer.alloc(1024));
  return Buffer.concat(parts);
}
