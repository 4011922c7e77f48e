/**
 * The dashboard in a real browser: Debian's Chromium driven by playwright-core against the dev
 * stack. Sign up with an invite, connect a provider (sealed and split in the page), create a key,
 * set a city lock in the Edit Key dialog, call through the gateway with the OpenAI SDK, see the
 * request in the usage chart and the audit log, kill the key and see the next request refused,
 * and read the attestation page. Screenshots go to test-artifacts/dashboard/ (not committed).
 */
import { existsSync, mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import OpenAI from 'openai';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestStack } from './helpers.ts';

const CHROMIUM = process.env.SECUREGATE_CHROMIUM ?? '/usr/bin/chromium';
const haveChromium = existsSync(CHROMIUM);
const built = existsSync(fileURLToPath(new URL('../../dashboard/dist/index.html', import.meta.url)));
if (process.env.CI === 'true' && (!haveChromium || !built)) {
  throw new Error(`the dashboard test must run under CI=true: ${haveChromium ? '' : `no Chromium at ${CHROMIUM} (.ci/run installs Debian's chromium) `}${built ? '' : 'dashboard/dist is not built (npm test builds it)'}`);
}
if (!haveChromium || !built) {
  process.stderr.write(`\n[skip] dashboard browser test skipped: ${haveChromium ? 'run `npm run build:dashboard` first' : `no Chromium at ${CHROMIUM} (apt-get install chromium)`}\n`);
}

const ARTIFACTS = fileURLToPath(new URL('../../test-artifacts/dashboard/', import.meta.url));
const BRACKNELL = '81.2.69.142';
const MINNEAPOLIS = '128.101.101.101';
const PASSWORD = 'dashboard test password';

describe.skipIf(!haveChromium || !built)('dashboard in Chromium', () => {
  let stack: Awaited<ReturnType<typeof startTestStack>>;
  let browser: Browser;
  let page: Page;
  let accountId: string;
  let sgKey: string;
  let keyId: string;
  const shot = (name: string) => page.screenshot({ path: `${ARTIFACTS}${name}.png`, fullPage: true });

  const operator = async (method: string, path: string, body?: unknown) => {
    const res = await fetch(`${stack.hostUrl}/admin/v1${path}`, {
      method,
      headers: { authorization: `Bearer ${stack.adminToken}`, ...(body ? { 'content-type': 'application/json' } : {}) },
      ...(body ? { body: JSON.stringify(body) } : {}),
    });
    return (await res.json()) as Record<string, string>;
  };
  const chat = (ip: string) =>
    new OpenAI({ apiKey: sgKey, baseURL: `${stack.hostUrl}/v1`, maxRetries: 0, defaultHeaders: { 'x-forwarded-for': ip } }).chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'hello from the dashboard test' }],
    });

  beforeAll(async () => {
    mkdirSync(ARTIFACTS, { recursive: true });
    stack = await startTestStack({ hostArgs: ['--trusted-proxy', 'loopback'] });
    const created = await operator('POST', '/accounts', { name: 'Dash Co', plan: 'pro' });
    accountId = created.id!;
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
    });
    page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    page.on('pageerror', (e) => process.stderr.write(`[dashboard page error] ${e.message}\n`));
    // Sign up through the page with the owner invite.
    await page.goto(`${stack.hostUrl}/dashboard/`);
    await page.getByText('I have an invite — sign up').click();
    await page.getByLabel('Email').fill('owner@dash.example');
    await page.getByLabel('Password').fill(PASSWORD);
    await page.getByLabel('Invite').fill(created.ownerInvite!);
    await shot('01-signup');
    await page.getByRole('button', { name: 'Sign up' }).click();
    await page.getByTestId('plan').waitFor();
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    await stack?.cleanup();
  });

  it('serves the page with a strict content security policy', async () => {
    const res = await fetch(`${stack.hostUrl}/dashboard/`);
    const csp = res.headers.get('content-security-policy')!;
    expect(csp).toContain("script-src 'self'");
    expect(csp).toContain("frame-ancestors 'none'");
    for (const sh of stack.shareholders) expect(csp).toContain(new URL(sh.url).origin);
  });

  it('shows the plan and what it allows', async () => {
    expect(await page.getByTestId('plan').textContent()).toBe('Pro');
    expect(await page.locator('[data-feature="city_lock"]').getAttribute('class')).toBe('yes');
    expect(await page.locator('[data-feature="any_api"]').getAttribute('class')).toBe('no');
    expect(await page.getByTestId('connections-usage').textContent()).toBe('0 of unlimited');
    await shot('02-overview');
  });

  it('connects a provider, sealing and splitting the key in the page', async () => {
    await page.goto(`${stack.hostUrl}/dashboard/#/connections`);
    await page.getByLabel('Provider').selectOption('openai');
    await page.getByLabel('API key').fill(stack.demo!.upstreamKey);
    await page.getByLabel('Base URL').fill(stack.mock!.origin);
    await page.getByLabel('Name').fill('OpenAI via dashboard');
    await page.getByRole('button', { name: 'Seal, split and connect' }).click();
    await page.getByTestId('progress').filter({ hasText: 'connected' }).waitFor();
    await page.getByTestId('connections').getByText('OpenAI via dashboard').waitFor();
    await shot('03-connections');
    // The host holds only the sealed record: the upstream key never reached it.
    const connections = (await (await fetch(`${stack.hostUrl}/admin/v1/connections`, { headers: { authorization: `Bearer ${stack.adminToken}` } })).text());
    expect(connections).toContain('OpenAI via dashboard');
    expect(connections).not.toContain(stack.demo!.upstreamKey);
  });

  it('creates a key, sets a city lock in the Edit Key dialog, and the SDK call works from that city only', async () => {
    await page.goto(`${stack.hostUrl}/dashboard/#/keys`);
    await page.getByLabel('Name').fill('agent laptop');
    await page.getByRole('button', { name: 'Create key' }).click();
    sgKey = (await page.getByTestId('new-key-value').textContent())!;
    expect(sgKey).toMatch(/^SG_/);
    const row = page.locator('tr', { hasText: 'agent laptop' });
    keyId = (await row.getAttribute('data-key-id'))!;
    await row.getByRole('button', { name: 'Edit' }).click();
    const dialog = page.getByRole('dialog', { name: 'Edit key' });
    await dialog.getByLabel('Cities').fill('Bracknell, GB');
    await dialog.getByLabel('Models').fill('gpt-4o-mini');
    await dialog.getByLabel('Daily limit ($)').fill('5');
    await shot('04-edit-key');
    await dialog.getByRole('button', { name: 'Save' }).click();
    await row.getByTestId('locks').filter({ hasText: 'cities Bracknell, GB' }).waitFor();
    expect(await row.getByTestId('locks').textContent()).toContain('models gpt-4o-mini');
    await shot('05-keys');

    // From another city first (a refused request binds nothing), then from the allowed one.
    await expect(chat(MINNEAPOLIS)).rejects.toMatchObject({ status: 403, code: 'city_not_allowed' });
    const ok = await chat(BRACKNELL);
    expect(ok.choices[0]!.message.content).toContain('mock upstream');
  });

  it('shows the request in the usage charts and the audit log', async () => {
    await page.goto(`${stack.hostUrl}/dashboard/#/usage`);
    const bar = page.getByTestId('chart-model-requests').locator('[data-label="gpt-4o-mini"]');
    await bar.waitFor();
    expect(Number(await bar.getAttribute('data-value'))).toBe(1);
    expect(Number(await page.getByTestId('chart-model').locator('[data-label="gpt-4o-mini"]').getAttribute('data-value'))).toBeGreaterThan(0);
    expect(await page.getByTestId('chart-day').locator('g').count()).toBe(1);
    await shot('06-usage');

    await page.goto(`${stack.hostUrl}/dashboard/#/audit`);
    await page.getByLabel('Key').fill(keyId);
    await page.getByRole('button', { name: 'Filter' }).click();
    const rows = page.getByTestId('audit').locator(`tr[data-key-id="${keyId}"]`);
    await rows.first().waitFor();
    expect(await rows.count()).toBe(2);
    expect(await page.getByTestId('audit').locator('tr[data-code="city_not_allowed"]').count()).toBe(1);
    await shot('07-audit');
  });

  it('kills the key and the next request is refused', async () => {
    await page.goto(`${stack.hostUrl}/dashboard/#/keys`);
    const row = page.locator(`tr[data-key-id="${keyId}"]`);
    await row.getByRole('button', { name: 'Kill' }).click();
    await row.getByTestId('status').filter({ hasText: 'killed' }).waitFor();
    await shot('08-killed');
    await expect(chat(BRACKNELL)).rejects.toMatchObject({ status: 401, code: 'key_killed' });
  });

  it('shows the attestation page only on a plan with it, and then the enclave matches the release', async () => {
    await page.goto(`${stack.hostUrl}/dashboard/#/attestation`);
    await page.getByTestId('error').filter({ hasText: 'the Pro plan does not include attestation-verified enclave features' }).waitFor();
    await operator('PATCH', `/accounts/${accountId}`, { plan: 'enterprise' });
    await page.reload();
    const verdict = page.getByTestId('attestation-verdict');
    await verdict.waitFor();
    expect(await verdict.textContent()).toBe('✓ The enclave runs the published release.');
    expect(await page.locator('tr[data-pcr="0"]').textContent()).toContain(stack.pcr0.slice(0, 24));
    await shot('09-attestation');
  });

  it('refuses cookie-authenticated writes without the CSRF token, even from the page\'s own origin', async () => {
    const status = await page.evaluate(async (id) => (await fetch(`/admin/v1/keys/${id}/activate`, { method: 'POST', credentials: 'same-origin' })).status, keyId);
    expect(status).toBe(403);
    const key = await operator('GET', `/keys/${keyId}`);
    expect(key.status).toBe('killed');
  });

  it('logs out, refuses a wrong password, and logs in again', async () => {
    await page.goto(`${stack.hostUrl}/dashboard/`);
    await page.getByRole('button', { name: 'Log out' }).click();
    await page.getByRole('button', { name: 'Log in' }).waitFor();
    await page.getByLabel('Email').fill('owner@dash.example');
    await page.getByLabel('Password').fill('wrong password');
    await page.getByRole('button', { name: 'Log in' }).click();
    await page.getByRole('alert').filter({ hasText: 'email or password is wrong' }).waitFor();
    await shot('10-login-refused');
    await page.getByLabel('Password').fill(PASSWORD);
    await page.getByRole('button', { name: 'Log in' }).click();
    expect(await page.getByTestId('plan').textContent()).toBe('Enterprise');
    await shot('11-logged-in');
  });
});
