/**
 * Budget periods, rate limits and the audit trail's endpoint column, driven as the real
 * `securegate` bin against a real dev stack: the flags set and clear each limit without touching
 * the others, `keys list`/`show` show them, bad values are refused with a clear message and no
 * stack trace, and `audit` (text and CSV) names the endpoint each request called.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI_EXIT } from '../../protocol/index.ts';
import { eventually, startTestStack } from './helpers.ts';

const bin = fileURLToPath(new URL('../../bin/securegate.mjs', import.meta.url));
let stack: Awaited<ReturnType<typeof startTestStack>>;
let configDir: string;

function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const env = { ...process.env, SECUREGATE_DATA_DIR: stack.dataDir, SECUREGATE_URL: stack.hostUrl, SECUREGATE_CONFIG_DIR: configDir, NO_COLOR: '1' };
  return new Promise((resolve) => {
    const child = execFile(process.execPath, [bin, ...args], { env }, (error, stdout, stderr) => resolve({ code: error ? (error.code as number) : 0, stdout, stderr }));
    child.stdin!.end();
  });
}
const json = <T>(r: { stdout: string; stderr: string }) => {
  try {
    return JSON.parse(r.stdout) as T;
  } catch {
    throw new Error(`not JSON: ${r.stdout}\n${r.stderr}`);
  }
};
const show = async (id: string) => json<Record<string, unknown>>(await cli(['keys', 'show', id, '--json']));
const newKey = async (...args: string[]) => {
  const r = await cli(['keys', 'create', '--connection', stack.demo!.connectionId, ...args, '--json']);
  expect(r.code, r.stderr).toBe(0);
  return json<{ id: string; key: string }>(r);
};

beforeAll(async () => {
  stack = await startTestStack();
  configDir = await mkdtemp(join(tmpdir(), 'sg-periods-cli-'));
}, 60_000);
afterAll(async () => {
  await stack?.cleanup();
  await rm(configDir, { recursive: true, force: true });
});

describe('keys create/update: budget periods and rate limits', () => {
  it('sets weekly and monthly caps, an expiry date and rpm/tpm at creation', async () => {
    const { id } = await newKey('--weekly-limit', '20', '--monthly-limit', '$50', '--expires-at', '2099-01-31', '--rpm', '60', '--tpm', '100000');
    expect(await show(id)).toMatchObject({ weeklyLimit: 20, monthlyLimit: 50, expiresAt: Date.parse('2099-01-31T00:00:00Z'), rpm: 60, tpm: 100000 });
  });

  it('clears one limit with off and leaves every other limit as it was', async () => {
    const { id } = await newKey('--daily-limit', '5', '--weekly-limit', '20', '--monthly-limit', '50', '--expires-at', '2099-01-31T12:00:00Z', '--rpm', '60', '--tpm', '100000');
    expect((await cli(['keys', 'update', id, '--rpm', 'off'])).code).toBe(0);
    expect(await show(id)).toMatchObject({ rpm: null, tpm: 100000, dailyLimit: 5, weeklyLimit: 20, monthlyLimit: 50, expiresAt: Date.parse('2099-01-31T12:00:00Z') });
    expect((await cli(['keys', 'update', id, '--expires-at', 'off', '--weekly-limit', 'off'])).code).toBe(0);
    expect(await show(id)).toMatchObject({ rpm: null, tpm: 100000, dailyLimit: 5, weeklyLimit: null, monthlyLimit: 50, expiresAt: null });
  });

  it('refuses a bad --rpm before calling the server, with the flag named', async () => {
    const { id } = await newKey('--rpm', '9');
    for (const bad of ['0', '1.5', 'many']) {
      const r = await cli(['keys', 'update', id, '--rpm', bad]);
      expect(r.code).toBe(CLI_EXIT.usage);
      expect(r.stderr).toContain('--rpm takes a whole number of at least 1 (or off)');
      expect(r.stderr).not.toMatch(/\n\s+at /);
    }
    expect(await show(id)).toMatchObject({ rpm: 9 });
  });

  it('relays the server\'s refusal of an expiry that is not a date or has passed, changing nothing', async () => {
    const { id } = await newKey('--tpm', '5000');
    for (const bad of ['next tuesday', '2001-01-01']) {
      const r = await cli(['keys', 'update', id, '--expires-at', bad, '--tpm', '7000']);
      expect(r.code).toBe(CLI_EXIT.invalid);
      expect(r.stderr).toMatch(/expiresAt/);
      expect(r.stderr).not.toMatch(/\n\s+at /);
    }
    expect(await show(id)).toMatchObject({ tpm: 5000, expiresAt: null });
  });

  it('shows the limits in keys list (a LIMITS column, aligned) and keys show', async () => {
    const { id } = await newKey('--name', 'limited-list', '--weekly-limit', '20', '--rpm', '30', '--expires-at', '2099-06-01');
    const lines = (await cli(['keys', 'list'])).stdout.trimEnd().split('\n');
    const head = lines[0]!;
    expect(head).toMatch(/^NAME +KEY +STATUS +TODAY \/ CAP +LIFETIME +LIMITS +LAST USED +BOUND IP +ID$/);
    const row = lines.find((l) => l.includes(id))!;
    const limits = row.slice(head.indexOf('LIMITS'), head.indexOf('LAST USED')).trim();
    expect(limits).toBe('week $0.00 / $20.00, 30 rpm, expires 2099-06-01 00:00 UTC');
    for (const l of lines.slice(1)) expect(l.lastIndexOf('key_')).toBe(head.indexOf('ID'));
    const shown = (await cli(['keys', 'show', id])).stdout;
    expect(shown).toContain('$20.00/week (UTC, from Monday)');
    expect(shown).toContain('30 requests/min');
    expect(shown).toContain('expires 2099-06-01 00:00 UTC');
    expect(shown).toContain('this week $0.00 / $20.00');
  });
});

describe('status of one key', () => {
  it('shows week and month spend against their caps, the rate limits and the expiry date', async () => {
    const { id } = await newKey('--name', 'status-limits', '--weekly-limit', '20', '--monthly-limit', '50', '--rpm', '30', '--tpm', '9000', '--expires-at', '2099-06-01');
    const text = (await cli(['status', id])).stdout;
    expect(text).toMatch(/This week: +\$0\.00 \/ \$20\.00 +\(UTC, from Monday\)/);
    expect(text).toMatch(/This month: +\$0\.00 \/ \$50\.00/);
    expect(text).toMatch(/Rate limits: +30 requests\/min, 9000 tokens\/min/);
    expect(text).toMatch(/Expires: +2099-06-01 00:00 UTC/);
    expect(json<Record<string, unknown>>(await cli(['status', id, '--json']))).toMatchObject({ weeklyLimit: 20, monthlyLimit: 50, rpm: 30, tpm: 9000, spentWeek: 0, status: 'active' });
  });
});

describe('audit: the endpoint column', () => {
  it('names the endpoint in its own aligned column of the text view and in the CSV', async () => {
    const { id, key } = await newKey('--name', 'endpoint-audited', '--models', 'gpt-4o-mini');
    const call = (path: string, body: unknown) =>
      fetch(`${stack.hostUrl}${path}?secret=never-logged`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
    expect((await call('/v1/chat/completions', { model: 'gpt-4o-mini', max_tokens: 5, messages: [{ role: 'user', content: 'hi' }] })).status).toBe(200);
    expect((await call('/v1/embeddings', { model: 'gpt-4o', input: 'hi' })).status).toBe(403);
    const lines = await eventually(async () => {
      const l = (await cli(['audit', '--key', id])).stdout.trimEnd().split('\n');
      return l.length === 3 ? l : undefined;
    });
    const head = lines[0]!;
    expect(head).toMatch(/^TIME \(UTC\) +KEY +ENDPOINT +MODEL +OUTCOME +TOKENS IN→OUT +COST +CLIENT$/);
    const endpoints = lines.slice(1).map((l) => l.slice(head.indexOf('ENDPOINT'), head.indexOf('MODEL')).trim()).sort();
    expect(endpoints).toEqual(['POST /v1/chat/completions', 'POST /v1/embeddings']);
    for (const l of lines.slice(1)) expect(l.indexOf(id)).toBe(head.indexOf('KEY'));
    expect(lines.join('\n')).not.toContain('never-logged');

    const csv = (await cli(['audit', '--key', id, '--csv'])).stdout.trimEnd().split('\n');
    const fields = csv[0]!.split(',');
    expect(fields).toContain('endpoint');
    const column = fields.indexOf('endpoint');
    expect(csv.slice(1).map((r) => r.split(',')[column]).sort()).toEqual(['POST /v1/chat/completions', 'POST /v1/embeddings']);
  });
});
