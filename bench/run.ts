/**
 * `npm run bench`: runs every benchmark and prints a markdown table plus JSON
 * (bench/results/latest.json, git-ignored). Figures are ratios to same-run baselines.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { cryptoBenchmarks, type BenchFigure } from './crypto.ts';
import { gatewayBenchmarks } from './gateway.ts';

const figures: BenchFigure[] = [];
process.stderr.write('bench: crypto core…\n');
figures.push(...cryptoBenchmarks());
figures.push(...(await gatewayBenchmarks((m) => process.stderr.write(`${m}\n`))));

const rows = figures.map((f) => `| ${f.name} | ${f.medianUs.toFixed(1)} µs | ${f.baseline} | ${f.ratio.toFixed(2)}× |`);
process.stdout.write(['| benchmark | median | baseline | ratio |', '| --- | --- | --- | --- |', ...rows].join('\n') + '\n');
const dir = new URL('./results/', import.meta.url);
mkdirSync(dir, { recursive: true });
writeFileSync(new URL('latest.json', dir), JSON.stringify({ at: new Date().toISOString(), node: process.version, figures }, null, 2));
