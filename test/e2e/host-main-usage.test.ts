/**
 * `node host/main.ts --help` prints its usage, and a wrong option is answered with the usage and
 * exit code 2 — never a stack trace (issue 20: the operator's first minutes).
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const MAIN = fileURLToPath(new URL('../../host/main.ts', import.meta.url));

describe('host/main.ts usage', () => {
  it('prints its usage for --help and exits 0', () => {
    const r = spawnSync(process.execPath, [MAIN, '--help'], { encoding: 'utf8' });
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^usage: node host\/main\.ts/);
    expect(r.stdout).toMatch(/--trusted-proxy/);
  });

  it('answers an unknown option with the usage and exit code 2, without a stack trace', () => {
    const r = spawnSync(process.execPath, [MAIN, '--no-such-flag'], { encoding: 'utf8' });
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/no-such-flag/);
    expect(r.stderr).toMatch(/usage: node host\/main\.ts/);
    expect(r.stderr).not.toMatch(/\n\s+at /);
  });
});
