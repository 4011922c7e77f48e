/**
 * The CLI as its users expect it (issue 20), driven as the real `securegate` bin against a real
 * dev stack: secrets never echoed nor taken from argv, key scopes, one city separator, typos
 * refused before they lock a key out, revocation that asks first, and keys you can see and name.
 * Terminal behaviour runs under util-linux `script`, which gives the CLI a real pseudo-terminal.
 */
import { execFile, spawn } from 'node:child_process';
import { mkdir, mkdtemp, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestStack } from './helpers.ts';

const bin = fileURLToPath(new URL('../../bin/securegate.mjs', import.meta.url));
let stack: Awaited<ReturnType<typeof startTestStack>>;
let configDir: string;

const env = () => ({ ...process.env, SECUREGATE_DATA_DIR: stack.dataDir, SECUREGATE_URL: stack.hostUrl, SECUREGATE_CONFIG_DIR: configDir, NO_COLOR: '1' });

function cli(args: string[], stdin?: string, options: { cwd?: string; env?: Record<string, string | undefined> } = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = execFile(process.execPath, [bin, ...args], { env: { ...env(), ...options.env }, ...(options.cwd ? { cwd: options.cwd } : {}) }, (error, stdout, stderr) =>
      resolve({ code: error ? (error.code as number) : 0, stdout, stderr }),
    );
    child.stdin!.end(stdin ?? '');
  });
}

const quote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/**
 * Runs the CLI on a pseudo-terminal; each time the transcript shows `prompt`, types `answer`.
 * Returns the whole transcript (what the user would see on screen, echo included) and the exit code.
 */
function onTerminal(args: string[], dialogue: Array<[prompt: string, answer: string]>): Promise<{ code: number; screen: string }> {
  return new Promise((resolve) => {
    const command = [process.execPath, bin, ...args].map(quote).join(' ');
    const child = spawn('script', ['-qfec', command, '/dev/null'], { env: env(), stdio: ['pipe', 'pipe', 'pipe'] });
    let screen = '';
    let step = 0;
    const onOutput = (d: Buffer) => {
      screen += d.toString();
      const next = dialogue[step];
      if (next && screen.includes(next[0])) {
        step++;
        child.stdin.write(next[1]);
      }
    };
    child.stdout.on('data', onOutput);
    child.stderr.on('data', onOutput);
    child.on('close', (code) => resolve({ code: code ?? -1, screen }));
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
  configDir = await mkdtemp(join(tmpdir(), 'sg-ux-cli-'));
}, 60_000);
afterAll(async () => {
  await stack?.cleanup();
  await rm(configDir, { recursive: true, force: true });
});

describe('push: the upstream key is typed hidden or piped, never taken from argv', () => {
  it('refuses a key on the command line with a hint, without echoing it', async () => {
    const r = await cli(['push', 'sk-live-argv-secret-123', '--base-url', stack.mock!.origin]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('printenv OPENAI_API_KEY | securegate push');
    expect(r.stderr).toContain('hidden prompt');
    expect(r.stdout + r.stderr).not.toContain('sk-live-argv-secret-123');
  });

  it('asks for the key at a hidden prompt on a terminal, and repeats what was set', async () => {
    const secret = stack.demo!.upstreamKey;
    const r = await onTerminal(['push', '--base-url', stack.mock!.origin, '--daily-limit', '5', '--models', 'gpt-4o-mini', '--inactive-expiry', '7d'], [['API key (hidden', `${secret}\r`]]);
    expect(r.code, r.screen).toBe(0);
    expect(r.screen).not.toContain(secret);
    expect(r.screen).toMatch(/Key: +SG_/);
    expect(r.screen).toContain(`Endpoint:  ${stack.hostUrl}/v1`);
    expect(r.screen).toContain('Budget:    $5.00/day');
    expect(r.screen).toContain('Models:    gpt-4o-mini');
    expect(r.screen).toContain('Expiry:    after 7 days unused');
  });

  it('prints the same summary when the key is piped in', async () => {
    const r = await cli(['push', '--base-url', stack.mock!.origin, '--daily-limit', '0.003', '--models', 'gpt-4o'], `${stack.demo!.upstreamKey}\n`);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('Budget:    $0.003/day');
    expect(r.stdout).toContain('Models:    gpt-4o');
    expect(r.stdout).toContain('Expiry:    never');
  });
});

describe('keys: scopes', () => {
  it('creates a key with --scopes, shows them, and refuses a scope it does not understand', async () => {
    const { id } = await newKey('--scopes', 'inference,files:read');
    expect((await show(id)).scopes).toEqual(['files:read', 'inference']);
    expect((await cli(['keys', 'show', id])).stdout).toContain('scopes files:read, inference');
    const bad = await cli(['keys', 'update', id, '--scopes', 'inference,files:erase']);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain('unknown access "erase"');
    const widened = await cli(['keys', 'update', id, '--scopes', 'inference,files,files:delete', '--json']);
    expect(json<{ scopes: string[] }>(widened).scopes).toEqual(['files', 'files:delete', 'inference']);
  });

  it('explains the scope grammar in --help, including that deleting is always explicit', async () => {
    for (const cmd of [['keys', 'create'], ['keys', 'update']]) {
      const help = (await cli([...cmd, '--help'])).stdout;
      expect(help).toContain('--scopes <list>');
      expect(help).toContain('<kind>:<access>');
      expect(help).toContain('deleting is always explicit');
    }
  });
});

describe('keys: cities and models', () => {
  it('separates cities with ";" only, keeping "City, CC" whole, and --cities off clears them', async () => {
    const { id } = await newKey('--cities', 'London, GB; Paris');
    expect((await show(id)).allowedCities).toEqual(['London, GB', 'Paris']);
    const cleared = await cli(['keys', 'update', id, '--cities', 'off', '--json']);
    expect(cleared.code, cleared.stderr).toBe(0);
    expect(json<{ allowedCities: string[] }>(cleared).allowedCities).toEqual([]);
  });

  it('refuses a city the database does not know, unless confirmed; the key keeps its old cities', async () => {
    const { id } = await newKey('--cities', 'Paris, FR');
    const typo = await cli(['keys', 'update', id, '--cities', 'Londn']);
    expect(typo.code).toBe(1);
    expect(typo.stderr).toContain('"Londn" is not in the city database');
    expect(typo.stderr).toContain('--allow-unknown');
    expect((await show(id)).allowedCities).toEqual(['Paris, FR']);
    const confirmed = await cli(['keys', 'update', id, '--cities', 'Londn', '--allow-unknown', '--json']);
    expect(json<{ allowedCities: string[] }>(confirmed).allowedCities).toEqual(['Londn']);
  });

  it('asks on a terminal before saving an unknown model', async () => {
    const { id } = await newKey();
    const no = await onTerminal(['keys', 'update', id, '--models', 'gpt-4o-mimi'], [['anyway?', 'n\r']]);
    expect(no.code).toBe(1);
    expect(no.screen).toContain('"gpt-4o-mimi" is not a openai model with a known price');
    expect((await show(id)).allowedModels).toEqual([]);
    const yes = await onTerminal(['keys', 'update', id, '--models', 'gpt-4o-mimi'], [['anyway?', 'y\r']]);
    expect(yes.code, yes.screen).toBe(0);
    expect((await show(id)).allowedModels).toEqual(['gpt-4o-mimi']);
  });

  it('the admin API names the refused field and the unknown entries', async () => {
    const { id } = await newKey();
    const res = await fetch(`${stack.hostUrl}/admin/v1/keys/${id}`, {
      method: 'PATCH',
      headers: { authorization: `Bearer ${stack.adminToken}`, 'content-type': 'application/json' },
      body: JSON.stringify({ cities: ['London, GB', 'Pariss'], dailyLimit: 5 }),
    });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: unknown }).error).toMatchObject({ code: 'unknown_city', param: 'cities', unknown: ['Pariss'] });
    const schema = await fetch(`${stack.hostUrl}/admin/v1/keys/${id}`, {
      method: 'PATCH',
      headers: { authorization: `Bearer ${stack.adminToken}`, 'content-type': 'application/json' },
      body: JSON.stringify({ dailyLimit: -1 }),
    });
    expect(((await schema.json()) as { error: unknown }).error).toMatchObject({ code: 'invalid_request', param: 'dailyLimit' });
    expect((await show(id)).dailyLimit).toBeNull();
  });
});

describe('keys revoke asks first', () => {
  it('refuses without a terminal unless --yes', async () => {
    const { id } = await newKey();
    const r = await cli(['keys', 'revoke', id]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('--yes');
    expect((await show(id)).status).toBe('active');
    expect((await cli(['keys', 'revoke', id, '--yes'])).code).toBe(0);
    expect((await show(id)).status).toBe('revoked');
  });

  it('asks on a terminal, and "no" keeps the key', async () => {
    const { id } = await newKey('--name', 'ask me');
    const no = await onTerminal(['keys', 'revoke', id], [['Revoke ask me', 'n\r']]);
    expect(no.code).toBe(1);
    expect((await show(id)).status).toBe('active');
    const yes = await onTerminal(['keys', 'revoke', id], [['Revoke ask me', 'y\r']]);
    expect(yes.code, yes.screen).toBe(0);
    expect((await show(id)).status).toBe('revoked');
  });
});

describe('keys you can see and name', () => {
  it('keys list shows name, spent today / cap to the tenth of a cent, lifetime and last used as relative time', async () => {
    const { id, key } = await newKey('--name', 'tiny cap', '--daily-limit', '0.003');
    const before = (await cli(['keys', 'list'])).stdout;
    const header = before.split('\n')[0]!;
    for (const col of ['NAME', 'KEY', 'STATUS', 'TODAY / CAP', 'LIFETIME', 'LIMITS', 'LAST USED']) expect(header).toContain(col);
    const line = () => cli(['keys', 'list']).then((r) => r.stdout.split('\n').find((l) => l.includes(id))!);
    // LIMITS (none here: "-") sits between LIFETIME and LAST USED.
    expect(await line()).toMatch(/^tiny cap +SG_\S+ +active +\$0\.00 \/ \$0\.003 +\$0\.00 +- +never /);
    const sdk = new OpenAI({ apiKey: key, baseURL: `${stack.hostUrl}/v1`, maxRetries: 0 });
    await sdk.chat.completions.create({ model: 'gpt-4o-mini', max_tokens: 5, messages: [{ role: 'user', content: 'hi' }] });
    const after = await line();
    expect(after).toMatch(/just now|minute/);
    expect(after).not.toMatch(/\$0\.00 \/ \$0\.003 +\$0\.00 /);
  });

  it('takes a key by name, by its hint, or by the SG_ key itself, and never echoes the key back', async () => {
    const { id, key } = await newKey('--name', 'named agent');
    const hint = (await show(id)).hint as string;
    for (const ref of ['named agent', hint, key]) {
      const r = await cli(['keys', 'show', ref, '--json']);
      expect(r.code, `${ref}: ${r.stderr}`).toBe(0);
      expect(json<{ id: string }>(r).id).toBe(id);
    }
    expect(json<{ id: string }>(await cli(['status', 'named agent', '--json'])).id).toBe(id);
    const wrong = `SG_${'x'.repeat(40)}`;
    const missing = await cli(['kill', wrong]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).not.toContain(wrong);
    expect(missing.stderr).toContain('keys list');
  });

  it('says what went wrong and what to do next, never a raw "GET /keys/… failed"', async () => {
    const r = await cli(['keys', 'show', 'key_doesnotexist']);
    expect(r.code).toBe(1);
    expect(r.stderr).not.toMatch(/GET \/keys/);
    expect(r.stderr).toContain('no key key_doesnotexist');
    expect(r.stderr).toContain('securegate keys list');
  });
});

describe('the audit trail in a terminal', () => {
  it('has a header row and aligned columns, and filters by outcome', async () => {
    const { id, key } = await newKey('--name', 'audited', '--models', 'gpt-4o-mini');
    const sdk = new OpenAI({ apiKey: key, baseURL: `${stack.hostUrl}/v1`, maxRetries: 0 });
    await sdk.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] });
    await sdk.chat.completions.create({ model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }] }).catch(() => undefined);
    const lines = (await cli(['audit', '--key', 'audited'])).stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^TIME \(UTC\) +KEY +ENDPOINT +MODEL +OUTCOME +TOKENS IN→OUT +COST +CLIENT$/);
    expect(lines).toHaveLength(3);
    const at = (line: string, col: string) => line.indexOf(col);
    for (const line of lines.slice(1)) expect(line.indexOf(id)).toBe(at(lines[0]!, 'KEY'));
    expect(lines.slice(1).map((l) => l.slice(at(lines[0]!, 'OUTCOME')).split(' ')[0]).sort()).toEqual(['200', 'model_not_allowed']);
    const refused = JSON.parse((await cli(['audit', '--key', id, '--outcome', 'refused', '--json'])).stdout) as Array<{ code: string }>;
    expect(refused.map((r) => r.code)).toEqual(['model_not_allowed']);
  });
});

describe('the CLI\'s first minutes', () => {
  it('finds the dev stack\'s data directory from a subdirectory of the checkout', async () => {
    const checkout = await mkdtemp(join(tmpdir(), 'sg-ux-checkout-'));
    const freshConfig = await mkdtemp(join(tmpdir(), 'sg-ux-fresh-'));
    try {
      await symlink(stack.dataDir, join(checkout, 'data'));
      await mkdir(join(checkout, 'cli', 'deeper'), { recursive: true });
      const r = await cli(['keys', 'list', '--json'], undefined, { cwd: join(checkout, 'cli', 'deeper'), env: { SECUREGATE_DATA_DIR: undefined, SECUREGATE_CONFIG_DIR: freshConfig } });
      expect(r.code, r.stderr).toBe(0);
      expect(Array.isArray(JSON.parse(r.stdout))).toBe(true);
    } finally {
      await rm(checkout, { recursive: true, force: true });
      await rm(freshConfig, { recursive: true, force: true });
    }
  });

  it('logout on the dev stack says that the stack still logs the CLI in', async () => {
    const r = await cli(['logout']);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('still logs this CLI in automatically');
  });

  it('checks the provider name (with did-you-mean) before asking for the secret', async () => {
    const r = await onTerminal(['connect', 'opneai', '--base-url', stack.mock!.origin], []);
    expect(r.code).toBe(2);
    expect(r.screen).toContain('did you mean openai');
    expect(r.screen).not.toContain('API key (hidden');
  });

  it('alerts list with nothing configured says so', async () => {
    const r = await cli(['alerts', 'list']);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('no alert targets yet');
  });
});
