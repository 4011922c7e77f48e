/**
 * The owner's commands end to end, as separate processes against a real stack (host, enclave
 * process, five shareholder services): `securegate connect` with a policy, `securegate connections
 * policy` to tighten it, and `securegate usage --verify` before and after the host's database is
 * edited. Clients go through the real host with an SG key.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openSqlite } from '../../storage/db.ts';
import { adminApi, eventually, startTestStack } from './helpers.ts';

const bin = fileURLToPath(new URL('../../bin/securegate.mjs', import.meta.url));
let stack: Awaited<ReturnType<typeof startTestStack>>;
let configDir: string;

function cli(args: string[], stdin = ''): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = execFile(
      process.execPath,
      [bin, ...args],
      { env: { ...process.env, SECUREGATE_DATA_DIR: stack.dataDir, SECUREGATE_URL: stack.hostUrl, SECUREGATE_CONFIG_DIR: configDir } },
      (e, stdout, stderr) => resolve({ code: e ? (e.code as number) : 0, stdout, stderr }),
    );
    child.stdin!.end(stdin);
  });
}

beforeAll(async () => {
  stack = await startTestStack();
  configDir = await mkdtemp(join(tmpdir(), 'sg-polcli-'));
}, 120_000);
afterAll(async () => {
  await stack?.cleanup();
  await rm(configDir, { recursive: true, force: true });
});

async function ask(key: string, model: string): Promise<{ status: number; code: string | undefined }> {
  const r = await fetch(`${stack.hostUrl}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model, messages: [{ role: 'user', content: 'hi' }] }),
  });
  const body = (await r.json()) as { error?: { code?: string } };
  return { status: r.status, code: body.error?.code };
}

describe('securegate connections policy and usage --verify', () => {
  it('tightens the models: after the enclave’s next lease the host answers 403 for the removed model', async () => {
    const c = await cli(['connect', 'openai', '--api-key-stdin', '--base-url', stack.mock!.origin, '--models', 'gpt-4o,gpt-4o-mini', '--daily-requests', '100', '--json'], `${stack.demo!.upstreamKey}\n`);
    expect(c.code, c.stderr).toBe(0);
    const { id } = JSON.parse(c.stdout) as { id: string };
    const k = await cli(['keys', 'create', '--connection', id, '--json']);
    expect(k.code, k.stderr).toBe(0);
    const { key } = JSON.parse(k.stdout) as { key: string };
    expect((await ask(key, 'gpt-4o')).status).toBe(200);

    const p = await cli(['connections', 'policy', id, '--models', 'gpt-4o-mini', '--lease-requests', '10', '--json']);
    expect(p.code, p.stderr).toBe(0);
    const update = JSON.parse(p.stdout) as { ok: boolean; version: number; accepted: string[]; maxLeasesPerDay: number; policy: { models: string[]; ceiling: { requests: number } } };
    expect(update).toMatchObject({ ok: true, version: 2, policy: { models: ['gpt-4o-mini'], ceiling: { requests: 100 } } });
    expect(update.accepted).toHaveLength(stack.shareholders.length);
    // 3-of-5, 100 requests a day in leases of 10: k = ⌊3·⌊100/10⌋/5⌋ = 6.
    expect(update.maxLeasesPerDay).toBe(6);

    // The next lease (here: the enclave restarted, as a host may do to shed the update) brings version 2.
    await stack.restartEnclave();
    const refused = await ask(key, 'gpt-4o');
    expect(refused).toMatchObject({ status: 403, code: 'connection_policy_denied' });
    expect((await ask(key, 'gpt-4o-mini')).status).toBe(200);

    // The next change starts from the newest version the shareholders hold (the CLI signs v + 1).
    const again = await cli(['connections', 'policy', id, '--daily-requests', '50', '--json']);
    expect(JSON.parse(again.stdout)).toMatchObject({ ok: true, version: 3 });
  });

  it('usage --verify agrees with an honest host and exits 1 naming the disagreement once the host edits its records', async () => {
    const c = await cli(['connect', 'openai', '--api-key-stdin', '--base-url', stack.mock!.origin, '--daily-requests', '100', '--json'], `${stack.demo!.upstreamKey}\n`);
    expect(c.code, c.stderr).toBe(0);
    const { id } = JSON.parse(c.stdout) as { id: string };
    const { key } = JSON.parse((await cli(['keys', 'create', '--connection', id, '--json'])).stdout) as { key: string };
    for (let i = 0; i < 3; i++) expect((await ask(key, 'gpt-4o-mini')).status).toBe(200);
    const admin = adminApi(stack);
    await eventually(async () => {
      const e = (await admin<{ receipts: Array<{ receipt: { requests: number } }>; host: Array<{ requests: number }> }>('GET', `/receipts?connection=${id}`)).json;
      return e.receipts.at(-1)?.receipt.requests === 3 && e.host[0]?.requests === 3 ? true : undefined;
    });
    const root = join(stack.dataDir, 'dev-root', 'root.pem');
    const ok = await cli(['usage', '--verify', '--connection', id, '--root', root, '--expect-pcr', `0=${stack.pcr0}`, '--json']);
    expect(ok.code, ok.stderr + ok.stdout).toBe(0);
    expect(JSON.parse(ok.stdout)).toMatchObject({ ok: true, findings: [] });

    const db = openSqlite(join(stack.dataDir, 'host', 'host.sqlite'));
    try {
      const [row] = await db.query('SELECT id FROM audit_log WHERE connection_id = $1 LIMIT 1', [id]);
      await db.query('DELETE FROM audit_log WHERE id = $1', [row!.id as string]);
    } finally {
      await db.close();
    }
    const bad = await cli(['usage', '--verify', '--connection', id, '--root', root, '--expect-pcr', `0=${stack.pcr0}`]);
    expect(bad.code).toBe(1);
    expect(bad.stdout).toContain(`${id} day ${Math.floor(Date.now() / 86_400_000)}: the host recorded 2 requests but the enclave's signed receipts say 3 — the host under-reports`);
  });
});
