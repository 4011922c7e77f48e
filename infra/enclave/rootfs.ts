/**
 * The enclave image's whole root filesystem, built without any container base image: every input
 * is pinned by hash in infra/enclave/rootfs.lock — Debian packages (name, version, SHA-256 of the
 * .deb, as published in Debian's signed Packages index) and the Node.js binary (the `node`
 * devDependency's official build) — and the output is a deterministic ustar archive, so the
 * Dockerfile is `FROM scratch` + this tar and two builds from the same lock are byte-identical.
 *
 *   node infra/enclave/rootfs.ts build --out dist/rootfs.tar --bundle dist/enclave-bundle.tar \
 *        --shareholders infra/enclave/shareholders.json [--nsm-helper dist/securegate-nsm] [--cache dist/debs]
 *   node infra/enclave/rootfs.ts build --kind shareholder --out dist/shareholder-rootfs.tar
 *        (the shareholder service image for operators: node and libc only, bundle built here)
 *   node infra/enclave/rootfs.ts lock      # refresh rootfs.lock from this machine's apt sources
 *
 * Needs Debian's apt-get and dpkg-deb (the release machine is Debian bookworm, like the image).
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { parseArgs } from 'node:util';
import { buildBundle, REPO_ROOT, SHAREHOLDER_BUNDLE, writeTar, type TarEntry } from './bundle.ts';

export const LOCK_PATH = join(REPO_ROOT, 'infra/enclave/rootfs.lock');

export interface RootfsLock {
  debian: string;
  architecture: string;
  /** What the image runs: /bin/sh (dash), socat, and the shared libraries of node and socat. */
  packages: Array<{ name: string; version: string; sha256: string }>;
  node: { version: string; sha256: string };
}

/** The packages a shareholder image needs: dash and the libraries `ldd` names for node. */
export const SHAREHOLDER_PACKAGES = ['dash', 'libc6', 'libgcc-s1', 'libstdc++6'];

/** The packages the enclave image needs: dash and socat, and the libraries `ldd` names for node and socat. */
export const PACKAGES = [
  'dash', 'socat',
  'libc6', 'libgcc-s1', 'libstdc++6',
  'libssl3', 'libwrap0', 'libnsl2', 'libtirpc3', 'libgssapi-krb5-2', 'libkrb5-3', 'libk5crypto3', 'libcom-err2', 'libkrb5support0', 'libkeyutils1',
];

/** Parts of a package never needed at run time. */
const SKIP = [/^usr\/share\//, /^etc\/(default|init\.d|cron|logrotate)/];

const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

export function readLock(path = LOCK_PATH): RootfsLock {
  return JSON.parse(readFileSync(path, 'utf8')) as RootfsLock;
}

export function nodeBinary(): string {
  return join(REPO_ROOT, 'node_modules/node/bin/node');
}

/** Downloads (or reuses) each pinned .deb and refuses any whose SHA-256 differs from the lock. */
export function fetchPackages(lock: RootfsLock, cacheDir: string, log: (m: string) => void = () => undefined): Map<string, string> {
  mkdirSync(cacheDir, { recursive: true });
  const files = new Map<string, string>();
  for (const p of lock.packages) {
    const file = join(cacheDir, `${p.name}_${p.version.replace(/:/g, '%3a')}_${lock.architecture}.deb`);
    if (!existsSync(file) || sha256(readFileSync(file)) !== p.sha256) {
      log(`downloading ${p.name} ${p.version}`);
      try {
        execFileSync('apt-get', ['download', '-q', `${p.name}=${p.version}`], { cwd: cacheDir, stdio: ['ignore', 'ignore', 'pipe'] });
      } catch (e) {
        throw new Error(`cannot download ${p.name}=${p.version} (is the lock stale? \`node infra/enclave/rootfs.ts lock\` refreshes it): ${(e as { stderr?: Buffer }).stderr?.toString().trim() ?? e}`);
      }
    }
    const got = sha256(readFileSync(file));
    if (got !== p.sha256) throw new Error(`${p.name} ${p.version}: SHA-256 ${got} is not the pinned ${p.sha256}`);
    files.set(p.name, file);
  }
  return files;
}

function walk(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    const st = lstatSync(p);
    return st.isDirectory() ? [p, ...walk(p)] : [p];
  });
}

/** The files of one .deb as tar entries (directories, files with their modes, symlinks). */
function debEntries(deb: string): TarEntry[] {
  const dir = mkdtempSync(join(tmpdir(), 'sg-deb-'));
  try {
    execFileSync('dpkg-deb', ['-x', deb, dir]);
    return walk(dir)
      .map((p) => ({ p, rel: relative(dir, p) }))
      .filter(({ rel }) => !SKIP.some((re) => re.test(rel) || re.test(`${rel}/`)))
      .map(({ p, rel }): TarEntry => {
        const st = lstatSync(p);
        if (st.isSymbolicLink()) return { path: rel, type: 'symlink', target: readlinkSync(p) };
        if (st.isDirectory()) return { path: `${rel}/`, type: 'dir', mode: 0o755 };
        return { path: rel, type: 'file', data: readFileSync(p), mode: st.mode & 0o111 ? 0o755 : 0o644 };
      });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Unpacks a ustar archive written by writeTar (the enclave bundle) into entries under `prefix`. */
function tarEntries(tar: Buffer, prefix: string): TarEntry[] {
  const out: TarEntry[] = [];
  for (let off = 0; off + 512 <= tar.length; ) {
    const h = tar.subarray(off, off + 512);
    if (h.every((b) => b === 0)) break;
    const str = (a: number, n: number) => h.subarray(a, a + n).toString('utf8').replace(/\0.*$/s, '');
    const name = str(345, 155) ? `${str(345, 155)}/${str(0, 100)}` : str(0, 100);
    const size = parseInt(str(124, 12), 8);
    const mode = parseInt(str(100, 8), 8);
    out.push({ path: `${prefix}${name}`, type: 'file', data: Buffer.from(tar.subarray(off + 512, off + 512 + size)), mode });
    off += 512 + Math.ceil(size / 512) * 512;
  }
  return out;
}

export interface RootfsInput {
  kind?: 'enclave' | 'shareholder';
  lock?: RootfsLock;
  bundle: Buffer;
  /** The enclave's init script (enclave images only). */
  initScript?: Buffer;
  /**
   * The enclave's shareholder configuration (enclave images only): `[{ id, url, publicKey,
   * vsockPort }]`, at /app/shareholders.json. Part of the image, so PCR0/PCR2 cover it.
   */
  shareholders?: Buffer;
  nsmHelper?: Buffer;
  cacheDir: string;
  log?: (m: string) => void;
}

/** Builds the rootfs tar in memory; throws if any pinned input differs from the lock. */
export function buildRootfs(input: RootfsInput): { tar: Buffer; sha256: string; entries: number } {
  const full = input.lock ?? readLock();
  const kind = input.kind ?? 'enclave';
  const lock = kind === 'enclave' ? full : { ...full, packages: full.packages.filter((p) => SHAREHOLDER_PACKAGES.includes(p.name)) };
  const node = readFileSync(nodeBinary());
  if (sha256(node) !== lock.node.sha256) throw new Error(`node_modules/node/bin/node is not the pinned Node ${lock.node.version} build (SHA-256 ${sha256(node)})`);
  const debs = fetchPackages(lock, input.cacheDir, input.log);
  const entries = new Map<string, TarEntry>();
  const add = (e: TarEntry) => entries.set(e.path, e);
  for (const name of [...debs.keys()].sort()) for (const e of debEntries(debs.get(name)!)) add(e);
  for (const dir of ['bin/', 'usr/', 'usr/local/', 'usr/local/bin/', 'app/', 'run/', 'run/securegate/', 'tmp/', 'etc/']) add({ path: dir, type: 'dir', mode: dir === 'tmp/' ? 0o1777 : 0o755 });
  // dash's maintainer script makes /bin/sh; in an image nothing runs maintainer scripts.
  add({ path: 'bin/sh', type: 'symlink', target: 'dash' });
  add({ path: 'usr/local/bin/node', type: 'file', data: node, mode: 0o755 });
  if (input.nsmHelper) add({ path: 'usr/local/bin/securegate-nsm', type: 'file', data: input.nsmHelper, mode: 0o755 });
  for (const e of tarEntries(input.bundle, 'app/')) add(e);
  if (input.initScript) add({ path: 'app/enclave-init.sh', type: 'file', data: input.initScript, mode: 0o755 });
  if (input.shareholders) add({ path: 'app/shareholders.json', type: 'file', data: input.shareholders, mode: 0o644 });
  // The shareholder runs as uid 10001 and keeps its store here (mount a volume over it).
  if (kind === 'shareholder') for (const dir of ['var/', 'var/lib/']) add({ path: dir, type: 'dir', mode: 0o755 });
  if (kind === 'shareholder') add({ path: 'var/lib/sg-shareholder/', type: 'dir', mode: 0o700, uid: 10001 });
  const tar = writeTar([...entries.values()]);
  return { tar, sha256: sha256(tar), entries: entries.size };
}

/** Reads the candidate version and SHA-256 of every package from apt (for `lock`). */
export function lockFromApt(): RootfsLock {
  const packages = PACKAGES.map((name) => {
    const text = execFileSync('apt-cache', ['show', '--no-all-versions', name], { encoding: 'utf8' });
    const field = (f: string) => new RegExp(`^${f}: (.+)$`, 'm').exec(text)?.[1]?.trim();
    const version = field('Version');
    const hash = field('SHA256');
    if (!version || !hash) throw new Error(`apt-cache has no version/SHA256 for ${name}`);
    return { name, version, sha256: hash };
  });
  const node = readFileSync(nodeBinary());
  const version = execFileSync(nodeBinary(), ['--version'], { encoding: 'utf8' }).trim();
  return { debian: 'bookworm', architecture: 'amd64', packages, node: { version, sha256: sha256(node) } };
}

if (process.argv[1] && import.meta.url.endsWith(process.argv[1].split('/').pop()!)) {
  const [command, ...rest] = process.argv.slice(2);
  const { values } = parseArgs({ args: rest, options: { out: { type: 'string' }, bundle: { type: 'string' }, shareholders: { type: 'string' }, 'nsm-helper': { type: 'string' }, cache: { type: 'string' }, kind: { type: 'string', default: 'enclave' } } });
  if (command === 'lock') {
    writeFileSync(LOCK_PATH, `${JSON.stringify(lockFromApt(), null, 2)}\n`);
    process.stdout.write(`wrote ${LOCK_PATH}\n`);
  } else if (command === 'build') {
    const shareholder = values.kind === 'shareholder';
    if (!values.out || (!shareholder && !values.bundle)) throw new Error('build needs --out <rootfs.tar> and, for the enclave, --bundle <enclave-bundle.tar>');
    const built = buildRootfs({
      kind: shareholder ? 'shareholder' : 'enclave',
      bundle: shareholder ? buildBundle(SHAREHOLDER_BUNDLE).tar : readFileSync(values.bundle!),
      ...(shareholder ? {} : { initScript: readFileSync(join(REPO_ROOT, 'infra/enclave/enclave-init.sh')) }),
      ...(shareholder || !values.shareholders ? {} : { shareholders: readFileSync(values.shareholders) }),
      ...(values['nsm-helper'] ? { nsmHelper: readFileSync(values['nsm-helper']) } : {}),
      cacheDir: values.cache ?? join(REPO_ROOT, 'dist/debs'),
      log: (m) => process.stderr.write(`… ${m}\n`),
    });
    writeFileSync(values.out, built.tar);
    process.stdout.write(`${built.sha256}  ${values.out} (${built.entries} entries)\n`);
  } else {
    process.stderr.write('usage: rootfs.ts build --out <tar> --bundle <tar> [--shareholders <json>] [--nsm-helper <file>] [--cache <dir>] | rootfs.ts lock\n');
    process.exit(2);
  }
}
