/**
 * What keeps `npm start` small (issue 22, docs/benchmarks.md "Dev stack memory"): the launcher
 * does not hold the dev root's X.509 code once a root exists.
 */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('..', import.meta.url));

/** Every module URL that importing `module` loads, in a fresh process. */
function modulesLoadedBy(module: string): Promise<string[]> {
  const script = `
    import { registerHooks } from 'node:module';
    const loaded = [];
    registerHooks({ load(url, context, next) { loaded.push(url); return next(url, context); } });
    await import(${JSON.stringify(pathToFileURL(join(root, module)).href)});
    process.stdout.write(JSON.stringify(loaded));`;
  return new Promise((resolve, reject) =>
    execFile(process.execPath, ['--input-type=module', '--eval', script], { cwd: root }, (error, stdout) => (error ? reject(error) : resolve(JSON.parse(stdout) as string[]))),
  );
}

describe('npm start memory', () => {
  it('loads the dev root X.509 code only when it creates a root, not with the stack launcher', async () => {
    const loaded = await modulesLoadedBy('scripts/stack.ts');
    expect(loaded.some((u) => u.endsWith('/scripts/stack.ts'))).toBe(true);
    expect(loaded.filter((u) => u.endsWith('/attestation/dev.ts') || u.includes('/@peculiar/x509/') || u.includes('/tsyringe/'))).toEqual([]);
  });
});
