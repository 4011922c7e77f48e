/**
 * CI runs a short smoke of the benchmark: it must run end to end (stack, Portkey peer, load,
 * upload through both hops, and the production layout on PostgreSQL where one answers), not meet
 * a time. Real figures come from `npm run bench`.
 */
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { expect, it } from 'vitest';
import { skipPostgres } from '../test/pg.ts';

it(`runs the whole benchmark in smoke mode and reports every figure${skipPostgres ? ' (PostgreSQL unreachable: SQLite rows only)' : ''}`, async () => {
  const script = fileURLToPath(new URL('./run.ts', import.meta.url));
  const env = { ...process.env, BENCH_POSTGRES: skipPostgres ? '0' : '1' };
  const out = await new Promise<string>((resolve, reject) =>
    execFile(process.execPath, [script, '--smoke'], { timeout: 240_000, maxBuffer: 1 << 20, env }, (error, stdout, stderr) => (error ? reject(new Error(`${error.message}\n${stderr}`)) : resolve(stdout))),
  );
  const rows = out.split('\n').filter((l) => l.startsWith('| ') && !l.startsWith('| ---') && !l.startsWith('| benchmark'));
  expect(rows.length).toBeGreaterThanOrEqual(20);
  for (const row of rows) expect(row, row).not.toMatch(/NaN/);
  // CPU per request of each gateway's processes beside a bare relay's (issue 22).
  const cpu = ['SecureGate host + enclave', 'SecureGate host', 'SecureGate enclave', 'Portkey', 'bare relays, 2 hops'];
  // The production layout: two hosts on PostgreSQL, each with its own enclave, and their memory.
  if (!skipPostgres) cpu.push('SecureGate on PostgreSQL, 2 hosts hosts + enclaves', 'SecureGate on PostgreSQL, 2 hosts enclaves');
  for (const who of cpu) expect(rows.some((r) => r.startsWith(`| CPU per request at 32 clients: ${who} (µs) |`)), who).toBe(true);
  if (!skipPostgres) expect(rows.some((r) => r.startsWith('| SecureGate on PostgreSQL, 2 hosts RSS idle, its 2 hosts + 2 enclaves (MB in the median column) |'))).toBe(true);
}, 300_000);
