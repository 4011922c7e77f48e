/**
 * CI runs a short smoke of the benchmark: it must run end to end (stack, Portkey peer, load,
 * upload through both hops), not meet a time. Real figures come from `npm run bench`.
 */
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { expect, it } from 'vitest';

it('runs the whole benchmark in smoke mode and reports every figure', async () => {
  const script = fileURLToPath(new URL('./run.ts', import.meta.url));
  const out = await new Promise<string>((resolve, reject) =>
    execFile(process.execPath, [script, '--smoke'], { timeout: 240_000, maxBuffer: 1 << 20 }, (error, stdout, stderr) => (error ? reject(new Error(`${error.message}\n${stderr}`)) : resolve(stdout))),
  );
  const rows = out.split('\n').filter((l) => l.startsWith('| ') && !l.startsWith('| ---') && !l.startsWith('| benchmark'));
  expect(rows.length).toBeGreaterThanOrEqual(20);
  for (const row of rows) expect(row, row).not.toMatch(/NaN/);
  // CPU per request of each gateway's processes beside a bare relay's (issue 22).
  for (const who of ['SecureGate host + enclave', 'SecureGate host', 'SecureGate enclave', 'Portkey', 'bare relays, 2 hops']) {
    expect(rows.some((r) => r.startsWith(`| CPU per request at 32 clients: ${who} (µs) |`)), who).toBe(true);
  }
}, 300_000);
