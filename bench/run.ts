/**
 * `npm run bench [-- --smoke]`: runs every benchmark and prints a markdown table plus JSON
 * (bench/results/latest.json, git-ignored). Figures are ratios to same-run baselines.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { cryptoBenchmarks, type BenchFigure } from './crypto.ts';
import { gatewayBenchmarks } from './gateway.ts';

const smoke = process.argv.includes('--smoke');
const figures: BenchFigure[] = [];
process.stderr.write('bench: crypto core…\n');
figures.push(...cryptoBenchmarks(smoke));
figures.push(...(await gatewayBenchmarks({ smoke, log: (m) => process.stderr.write(`${m}\n`) })));

const rows = figures.map((f) => `| ${f.name} | ${f.medianUs.toFixed(1)} | ${f.baseline} | ${f.ratio.toFixed(2)}× |`);
process.stdout.write(['| benchmark | value (µs unless stated) | baseline | ratio |', '| --- | --- | --- | --- |', ...rows].join('\n') + '\n');
const dir = new URL('./results/', import.meta.url);
mkdirSync(dir, { recursive: true });
writeFileSync(new URL(smoke ? 'smoke.json' : 'latest.json', dir), JSON.stringify({ at: new Date().toISOString(), node: process.version, smoke, figures }, null, 2));
