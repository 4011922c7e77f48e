/**
 * The dashboard's connect form and pending widenings, in Chromium against the dev stack (real
 * shareholders, enclave and host): the form's connection policy fields are signed in the page and
 * enforced by the enclave (issue 19); the widening delay chosen in the form is signed into every
 * enrollment; a widening signed by the owner's key shows on the Connections page with a Cancel
 * button, and the cancel (signed in the page with the non-extractable key) reaches every
 * shareholder (issue 18).
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import OpenAI from 'openai';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fromHex, signOwnerMessage } from '../../protocol/index.ts';
import { eventually, startTestStack } from './helpers.ts';

const CHROMIUM = process.env.SECUREGATE_CHROMIUM ?? '/usr/bin/chromium';
const haveChromium = existsSync(CHROMIUM);
const built = existsSync(fileURLToPath(new URL('../../dashboard/dist/index.html', import.meta.url)));
if (process.env.CI === 'true' && (!haveChromium || !built)) throw new Error('the dashboard test must run under CI=true: install chromium and build the dashboard');

const PASSWORD = 'dashboard widening password';
/** Imported by the page as its owner key (the legacy path), so this test can sign as the owner too. */
const OWNER_SEED = '43'.repeat(32);

describe.skipIf(!haveChromium || !built)('dashboard: connection policy and pending widenings', () => {
  let stack: Awaited<ReturnType<typeof startTestStack>>;
  let browser: Browser;
  let page: Page;
  let accountToken: string;
  let connectionId: string;

  const as = async <T = Record<string, unknown>>(method: string, path: string, body?: unknown) => {
    const res = await fetch(`${stack.hostUrl}/admin/v1${path}`, {
      method,
      headers: { authorization: `Bearer ${accountToken}`, ...(body ? { 'content-type': 'application/json' } : {}) },
      ...(body ? { body: JSON.stringify(body) } : {}),
    });
    return (await res.json()) as T;
  };
  const policyAt = async (i: number) =>
    (await (await fetch(`${stack.shareholders[i]!.url}/v1/shares/${connectionId}/policy`)).json()) as {
      policy: { allow: Array<Record<string, string>> };
      wideningDelayMs: number;
      pending: { sha256: string } | null;
    };

  beforeAll(async () => {
    stack = await startTestStack();
    const created = (await (
      await fetch(`${stack.hostUrl}/admin/v1/accounts`, {
        method: 'POST',
        headers: { authorization: `Bearer ${stack.adminToken}`, 'content-type': 'application/json' },
        body: JSON.stringify({ name: 'Widening Co', plan: 'pro' }),
      })
    ).json()) as { ownerInvite: string };
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox', '--disable-gpu', '--no-first-run'] });
    page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    page.setDefaultTimeout(15_000);
    await page.goto(`${stack.hostUrl}/dashboard/`);
    await page.evaluate((seed) => localStorage.setItem('securegate.ownerSecretKey', seed), OWNER_SEED);
    await page.getByText('I have an invite — sign up').click();
    await page.getByLabel('Email').fill('owner@widening.example');
    await page.getByLabel('Password').fill(PASSWORD);
    await page.getByLabel('Invite').fill(created.ownerInvite);
    await page.getByRole('button', { name: 'Sign up' }).click();
    await page.getByTestId('plan').waitFor();
    const login = await fetch(`${stack.hostUrl}/auth/v1/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ email: 'owner@widening.example', password: PASSWORD, name: 'widening test' }),
    });
    accountToken = ((await login.json()) as { token: string }).token;
  }, 90_000);

  afterAll(async () => {
    await browser?.close();
    await stack?.cleanup();
  });

  it('signs the form\'s models and delay in the page; the enclave refuses another model', async () => {
    await page.goto(`${stack.hostUrl}/dashboard/#/connections`);
    await page.getByLabel('Provider').selectOption('openai');
    await page.getByLabel('API key').fill(stack.demo!.upstreamKey);
    await page.getByLabel('Base URL').fill(stack.mock!.origin);
    await page.getByLabel('Name', { exact: true }).fill('widening openai');
    await page.getByLabel('Models').fill('gpt-4o-mini');
    await page.getByLabel('Widening delay (hours)').fill('48');
    await page.getByRole('button', { name: 'Seal, split and connect' }).click();
    await page.getByTestId('progress').filter({ hasText: 'connected' }).waitFor();
    connectionId = (await as<Array<{ id: string; name: string }>>('GET', '/connections')).find((c) => c.name === 'widening openai')!.id;
    expect((await policyAt(0)).wideningDelayMs).toBe(48 * 3_600_000);
    const k = await as<{ key: string }>('POST', '/keys', { connectionId });
    const sdk = new OpenAI({ apiKey: k.key, baseURL: `${stack.hostUrl}/v1`, maxRetries: 0 });
    await sdk.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] });
    const refused = (await sdk.chat.completions.create({ model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }] }).catch((e: unknown) => e)) as { status: number; code: string };
    expect(refused).toMatchObject({ status: 403, code: 'connection_policy_denied' });
  });

  it('splits a daily request ceiling into leases each shareholder counts, as the CLI does', async () => {
    await page.goto(`${stack.hostUrl}/dashboard/#/connections`);
    await page.getByLabel('Provider').selectOption('openai');
    await page.getByLabel('API key').fill(stack.demo!.upstreamKey);
    await page.getByLabel('Base URL').fill(stack.mock!.origin);
    await page.getByLabel('Name', { exact: true }).fill('request ceiling');
    await page.getByLabel('Daily requests').fill('960');
    await page.getByRole('button', { name: 'Seal, split and connect' }).click();
    await page.getByTestId('progress').filter({ hasText: 'connected' }).waitFor();
    const conn = (await as<Array<{ id: string; name: string }>>('GET', '/connections')).find((c) => c.name === 'request ceiling')!;
    const signed = await as<{ policy: { message: { ceiling: { requests: number }; lease?: { requests: number } } } | null }>('GET', `/connections/${conn.id}/policy`);
    expect(signed.policy?.message.lease).toEqual({ requests: 10 });
    // 960 a day in leases of 10: at most 96 leases, so with t-of-n each shareholder grants ⌊t·96/n⌋.
    const n = stack.shareholders.length;
    const k = Math.floor((stack.threshold * 96) / n);
    for (let i = 0; i < n; i++) {
      const at = (await (await fetch(`${stack.shareholders[i]!.url}/v1/shares/${conn.id}/policy`)).json()) as { maxLeasesPerDay: number | null };
      expect(at.maxLeasesPerDay).toBe(k);
    }
    expect(Math.floor((n * k) / stack.threshold) * 10).toBeLessThanOrEqual(960);
  });

  it('signs a daily dollar cap with the models\' prices; the enclave stops the connection at it', async () => {
    await page.goto(`${stack.hostUrl}/dashboard/#/connections`);
    await page.getByLabel('Provider').selectOption('openai');
    await page.getByLabel('API key').fill(stack.demo!.upstreamKey);
    await page.getByLabel('Base URL').fill(stack.mock!.origin);
    await page.getByLabel('Name', { exact: true }).fill('dollar cap');
    await page.getByLabel('Models').fill('gpt-4o-mini');
    await page.getByLabel('Daily dollars').fill('0.000001');
    await page.getByRole('button', { name: 'Seal, split and connect' }).click();
    await page.getByTestId('progress').filter({ hasText: 'connected' }).waitFor();
    const id = (await as<Array<{ id: string; name: string }>>('GET', '/connections')).find((c) => c.name === 'dollar cap')!.id;
    const k = await as<{ key: string }>('POST', '/keys', { connectionId: id });
    const sdk = new OpenAI({ apiKey: k.key, baseURL: `${stack.hostUrl}/v1`, maxRetries: 0 });
    // Priced (else the enclave would refuse the model outright): the first request spends the cap.
    await sdk.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] });
    const stopped = (await sdk.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] }).catch((e: unknown) => e)) as { status: number; code: string };
    expect(stopped).toMatchObject({ status: 429, code: 'connection_ceiling_reached' });
  });

  it('shows a pending widening and cancels it at every shareholder from the page', async () => {
    // A widening signed with the owner's key (as a second device of the owner would): a new image.
    const current = (await policyAt(0)).policy;
    for (const sh of stack.shareholders) {
      const signed = signOwnerMessage(fromHex(OWNER_SEED), {
        type: 'policy_update', connectionId, shareholderId: sh.id, issuedAt: Date.now(),
        policy: { allow: [...current.allow, { ...current.allow[0]!, '0': 'cd'.repeat(48) }] },
      });
      const res = await fetch(`${sh.url}/v1/shares/${connectionId}/policy`, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ signed }) });
      expect(res.status).toBe(200);
    }
    await page.goto(`${stack.hostUrl}/dashboard/#/connections`);
    await page.reload();
    const row = page.getByTestId('pending-widenings').locator(`tr[data-connection="${connectionId}"]`);
    await row.waitFor();
    expect(await row.textContent()).toContain('cdcdcdcdcdcdcdcd…');
    await row.getByRole('button', { name: 'Cancel widening' }).click();
    await eventually(async () => ((await Promise.all(stack.shareholders.map((_, i) => policyAt(i)))).every((v) => v.pending === null) ? true : undefined));
    await page.getByTestId('pending-widenings').waitFor({ state: 'detached' });
    expect((await policyAt(0)).policy.allow).toEqual(current.allow);
  });
});
