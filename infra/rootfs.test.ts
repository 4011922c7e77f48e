/**
 * The images' root filesystems, built from the pinned inputs in infra/enclave/rootfs.lock with no
 * base image: byte-identical across builds, refused when a pinned input differs, and really
 * runnable — chrooted into, the enclave image's node, socat and sh work and the enclave boots up
 * to looking for /dev/nsm; the shareholder image serves /v1/identity as uid 10001.
 */
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, describe, expect, it } from 'vitest';
import { buildBundle, buildEnclaveBundle, SHAREHOLDER_BUNDLE } from './enclave/bundle.ts';
import { buildRootfs, readLock } from './enclave/rootfs.ts';

const CHROOT = '/usr/sbin/chroot';
const missing = [
  ...(process.getuid?.() === 0 ? [] : ['root (for chroot)']),
  ...['/usr/bin/apt-get', '/usr/bin/dpkg-deb', CHROOT].filter((p) => !existsSync(p)),
];
if (missing.length) process.stderr.write(`\n[skip] image root filesystem tests skipped: needs ${missing.join(', ')}\n`);

const CACHE = join(tmpdir(), 'securegate-debs');
const work = mkdtempSync(join(tmpdir(), 'sg-rootfs-'));
const CLEAN_ENV = { PATH: '/usr/local/bin:/usr/bin:/bin' };

function extract(tar: Buffer, name: string): string {
  const dir = join(work, name);
  mkdirSync(dir);
  const file = join(work, `${name}.tar`);
  writeFileSync(file, tar);
  execFileSync('tar', ['-xf', file, '-C', dir]);
  return dir;
}

function inRoot(root: string, command: string, user?: string): { code: number; out: string } {
  try {
    const out = execFileSync(CHROOT, [...(user ? [`--userspec=${user}`] : []), root, '/bin/sh', '-c', command], { env: CLEAN_ENV, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    return { code: 0, out };
  } catch (e) {
    const err = e as { status: number; stdout: string; stderr: string };
    return { code: err.status, out: `${err.stdout}${err.stderr}` };
  }
}

afterAll(() => rmSync(work, { recursive: true, force: true }));

describe.skipIf(missing.length > 0)('image root filesystems from pinned inputs', () => {
  const initScript = Buffer.from('#!/bin/sh\necho init\n');
  const bundle = buildEnclaveBundle().tar;

  it('builds the enclave rootfs byte-identically, and it runs node, socat and the enclave', { timeout: 240_000 }, () => {
    const a = buildRootfs({ bundle, initScript, cacheDir: CACHE });
    const b = buildRootfs({ bundle, initScript, cacheDir: CACHE });
    expect(a.sha256).toBe(b.sha256);
    expect(a.tar.equals(b.tar)).toBe(true);

    const root = extract(a.tar, 'enclave');
    const lock = readLock();
    expect(inRoot(root, 'node --version').out.trim()).toBe(lock.node.version);
    expect(inRoot(root, 'socat -V').out).toContain('socat version 1.7.4.4');
    expect(inRoot(root, 'echo "$0"').out.trim()).toBe('/bin/sh');
    // Nothing else is in the image: no coreutils, no package manager, no compiler.
    for (const absent of ['/bin/ls', '/usr/bin/apt-get', '/usr/bin/gcc', '/bin/bash']) expect(existsSync(join(root, absent)), absent).toBe(false);
    // The whole module graph loads inside the image; it stops only at the missing Nitro device.
    writeFileSync(join(root, 'app/shareholders.json'), JSON.stringify([{ id: 'sh-1', url: 'https://sh1.example', publicKey: 'ab'.repeat(32), vsockPort: 8101 }]));
    const boot = inRoot(root, 'cd /app && node enclave/main.ts --listen unix:/run/securegate/enclave.sock --shareholders /app/shareholders.json');
    expect(boot.code).toBe(1);
    expect(boot.out).toContain('no /dev/nsm here');
    expect(boot.out).not.toMatch(/ERR_MODULE_NOT_FOUND|Cannot find/);
  });

  it('refuses a package whose SHA-256 is not the pinned one', { timeout: 120_000 }, () => {
    const lock = readLock();
    const bad = { ...lock, packages: lock.packages.map((p) => (p.name === 'dash' ? { ...p, sha256: '0'.repeat(64) } : p)) };
    expect(() => buildRootfs({ lock: bad, bundle, initScript, cacheDir: join(work, 'debs-bad') })).toThrow(/dash .*SHA-256 [0-9a-f]{64} is not the pinned 0{64}/);
  });

  it('builds a shareholder rootfs that serves as uid 10001', { timeout: 240_000 }, async () => {
    const built = buildRootfs({ kind: 'shareholder', bundle: buildBundle(SHAREHOLDER_BUNDLE).tar, cacheDir: CACHE });
    const root = extract(built.tar, 'shareholder');
    expect(existsSync(join(root, 'usr/bin/socat'))).toBe(false);
    const init = inRoot(root, 'cd /app && node shareholders/main.ts init --data-dir /var/lib/sg-shareholder --id sh-image', '10001:10001');
    expect(init.code, init.out).toBe(0);
    const child = spawn(CHROOT, ['--userspec=10001:10001', root, '/bin/sh', '-c', 'cd /app && exec node shareholders/main.ts serve --data-dir /var/lib/sg-shareholder --port 0'], { env: CLEAN_ENV, stdio: ['ignore', 'pipe', 'ignore'] });
    try {
      const ready = await new Promise<{ url: string }>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('shareholder in the image did not start')), 30_000);
        createInterface({ input: child.stdout! }).on('line', (line) => {
          if (line.startsWith('{"ready"')) {
            clearTimeout(timer);
            resolve(JSON.parse(line) as { url: string });
          }
        });
      });
      const identity = (await (await fetch(`${ready.url}/v1/identity`)).json()) as { id: string; mode: string };
      expect(identity).toMatchObject({ id: 'sh-image', mode: 'production' });
    } finally {
      child.kill('SIGTERM');
    }
  });
});
