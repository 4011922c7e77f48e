/**
 * The enclave's two entries as processes: configuration is checked at start with one clear line
 * naming the flag (exit 1), a wrong option prints the usage and exits 2, `--help` exits 0 — never
 * a stack trace. The production entry knows no development flag.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const dir = mkdtempSync(join(tmpdir(), 'sg-entry-'));
const shareholders = join(dir, 'shareholders.json');
writeFileSync(shareholders, JSON.stringify([{ id: 'sh-1', url: 'http://127.0.0.1:9', publicKey: 'ab'.repeat(32), vsockPort: 8101 }]));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function run(entry: 'main' | 'dev-main', args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const file = new URL(`./${entry}.ts`, import.meta.url).pathname;
  return new Promise((resolve) =>
    execFile(process.execPath, [file, ...args], { timeout: 20_000 }, (error, stdout, stderr) => resolve({ code: error ? Number(error.code) : 0, stdout, stderr })),
  );
}

const noStack = (text: string) => expect(text).not.toMatch(/\n\s+at /);

describe('enclave entries', () => {
  it('prints the usage and exits 2 on an unknown option, and exits 0 on --help', async () => {
    const wrong = await run('main', ['--shareholders', shareholders, '--bogus']);
    expect(wrong.code).toBe(2);
    expect(wrong.stderr).toContain("Unknown option '--bogus'");
    expect(wrong.stderr).toContain('usage: node enclave/main.ts');
    noStack(wrong.stderr);
    const help = await run('main', ['--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('--connect-timeout');
    expect(help.stdout).not.toContain('--dev-nsm');
  });

  it('does not take the dev NSM flags: only the development entry does', async () => {
    const res = await run('main', ['--shareholders', shareholders, '--dev-nsm', dir, '--dev-pcr0', 'ab'.repeat(48)]);
    expect(res.code).toBe(2);
    expect(res.stderr).toContain("Unknown option '--dev-nsm'");
    expect((await run('dev-main', ['--help'])).stdout).toContain('--dev-nsm');
    const missing = await run('dev-main', ['--shareholders', shareholders]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain('--dev-nsm <dev-root-dir> is required');
  });

  it.each([
    [['--connect-timeout', 'abc'], '--connect-timeout must be a number of seconds > 0, got abc'],
    [['--idle-timeout', '0'], '--idle-timeout must be a number of seconds > 0'],
    [['--headers-timeout', ''], '--headers-timeout must be a number of seconds > 0'],
    [['--listen', 'tcp:localhost'], '--listen must be unix:<path> or tcp:<host>:<port>'],
    [['--listen', 'tcp:127.0.0.1:70000'], '--listen must be unix:<path> or tcp:<host>:<port>'],
    [['--listen', 'unix:'], '--listen must be unix:<path> or tcp:<host>:<port>'],
    [['--listen', 'tcp::7000'], '--listen must be unix:<path> or tcp:<host>:<port>'],
    [['--listen', 'vsock:3:5000'], '--listen: vsock listening goes through the socat bridge'],
    [['--egress', 'https://api.openai.com'], '--egress takes <origin>=unix:<path>'],
    [['--egress', 'not a url=unix:/x'], '--egress: not a url is not an origin'],
    [['--egress', 'https://api.openai.com=tcp:x'], '--egress: bad target tcp:x'],
    [['--egress', 'https://api.openai.com=unix:'], '--egress: bad target unix: for https://api.openai.com'],
    [['--egress', 'https://api.openai.com=tcp:h:99999'], '--egress: bad target tcp:h:99999'],
    [['--egress-only'], '--egress-only needs at least one --egress'],
    [['--ca-file', '/nonexistent/ca.pem'], '--ca-file: no file at /nonexistent/ca.pem'],
    [['--shareholder-socket-dir', '/nonexistent'], '--shareholder-socket-dir: no directory at /nonexistent'],
  ])('refuses %j at start with one line naming the flag', async (args, message) => {
    const res = await run('main', ['--shareholders', shareholders, ...args]);
    expect(res.code).toBe(1);
    expect(res.stderr).toContain(`enclave: ${message}`);
    noStack(res.stderr);
  });

  it('refuses a missing, unreadable or malformed shareholder file before anything starts', async () => {
    expect((await run('main', [])).stderr).toContain('--shareholders <file.json> is required');
    expect((await run('main', ['--shareholders', join(dir, 'none.json')])).stderr).toContain(`--shareholders: no file at ${join(dir, 'none.json')}`);
    const notJson = join(dir, 'bad.json');
    writeFileSync(notJson, '[{');
    expect((await run('main', ['--shareholders', notJson])).stderr).toContain('is not JSON');
    const empty = join(dir, 'empty.json');
    writeFileSync(empty, '[]');
    const res = await run('main', ['--shareholders', empty]);
    expect(res.code).toBe(1);
    expect(res.stderr).toContain('shareholder configuration: must be a non-empty array');
  });

  it('says where the development entry is when there is no Nitro device', async () => {
    const res = await run('main', ['--shareholders', shareholders]);
    expect(res.code).toBe(1);
    expect(res.stderr).toContain('no /dev/nsm here; for development start enclave/dev-main.ts');
  });
});
