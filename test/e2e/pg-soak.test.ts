/**
 * The soak (`npm run soak`) in short, as CI runs it: two hosts on PostgreSQL for about 20 s at the
 * highest rate they sustain, with kills across hosts. It asserts correctness only — no deadlock,
 * counters equal to the audit trail, nothing left open, every kill refused — never a time: the
 * machine is shared, and timing is what `npm run soak` reports.
 */
import { expect, it } from 'vitest';
import { runSoak } from '../../bench/soak.ts';
import { skipPostgres } from '../pg.ts';

it.skipIf(skipPostgres)('runs two hosts on PostgreSQL under sustained load without a deadlock, lost spend or an unrefused kill', async () => {
  const lines: string[] = [];
  const report = await runSoak({ seconds: 20, concurrency: 16, maxRequests: 50_000, killEverySeconds: 5, sampleEverySeconds: 5, log: (l) => lines.push(l) });
  expect(report.problems, lines.join('\n')).toEqual([]);
  expect(report.load.served).toBeGreaterThan(50);
  expect(report.load.failed).toBe(0);
  expect(report.deadlocks).toBe(0);
  const { counters, audit, openReservations } = report.reconciliation;
  expect(counters).toMatchObject({ keyDay: audit.cost, keyLife: audit.cost, projectDay: audit.cost, requests: audit.served, reserved: 0 });
  expect(openReservations).toBe(0);
  expect(report.kills.length).toBeGreaterThanOrEqual(2);
  for (const kill of report.kills) expect(kill.code).toBe('key_killed');
  expect(report.rss.length).toBeGreaterThanOrEqual(2);
}, 240_000);
