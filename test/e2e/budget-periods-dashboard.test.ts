/**
 * The dashboard's Keys page with budget periods and rate limits, in Debian's Chromium driven by
 * playwright-core against the dev stack, at desktop width and at 375 px: the Keys table shows
 * week/month spend against their caps, rate limits and the expiry date; the Edit Key dialog
 * edits each of them, checks them in the browser before sending (keeping every field typed), and
 * clearing one limit leaves the others as they were. The audit page names each request's
 * endpoint, in its table and its CSV. Screenshots go to
 * test-artifacts/budget-periods-dashboard/ (not committed).
 */
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { devPcrPolicy } from '../../attestation/dev.ts';
import { connectProvider } from '../../cli/owner.ts';
import { generateOwnerKeyPair } from '../../protocol/index.ts';
import { startTestStack } from './helpers.ts';

const CHROMIUM = process.env.SECUREGATE_CHROMIUM ?? '/usr/bin/chromium';
const haveChromium = existsSync(CHROMIUM);
const built = existsSync(fileURLToPath(new URL('../../dashboard/dist/index.html', import.meta.url)));
if (process.env.CI === 'true' && (!haveChromium || !built)) throw new Error('the dashboard test must run under CI=true: install chromium and build the dashboard');
if (!haveChromium || !built) process.stderr.write(`\n[skip] dashboard budget-periods test: ${!haveChromium ? `no Chromium at ${CHROMIUM}` : 'dashboard not built (npm run build:dashboard)'}\n`);

const ARTIFACTS = fileURLToPath(new URL('../../test-artifacts/budget-periods-dashboard/', import.meta.url));
const PASSWORD = 'budget periods password';

describe.skipIf(!haveChromium || !built)('dashboard: budget periods and rate limits', () => {
  let stack: Awaited<ReturnType<typeof startTestStack>>;
  let browser: Browser;
  let page: Page;
  let token: string;
  let connectionId: string;
  const shot = (name: string) => page.screenshot({ path: `${ARTIFACTS}${name}.png`, fullPage: true });

  const as = async <T = Record<string, unknown>>(bearer: string, method: string, path: string, body?: unknown) => {
    const res = await fetch(`${stack.hostUrl}/admin/v1${path}`, {
      method,
      headers: { authorization: `Bearer ${bearer}`, ...(body ? { 'content-type': 'application/json' } : {}) },
      ...(body ? { body: JSON.stringify(body) } : {}),
    });
    return (await res.json()) as T;
  };
  const key = (id: string) => as<Record<string, unknown>>(token, 'GET', `/keys/${id}`);
  const newKey = async (body: Record<string, unknown>) => {
    const k = await as<{ id: string; key: string }>(token, 'POST', '/keys', { connectionId, ...body });
    await page.goto(`${stack.hostUrl}/dashboard/#/keys`);
    await page.reload();
    await page.locator(`tr[data-key-id="${k.id}"]`).waitFor();
    return k;
  };
  const openEdit = async (id: string) => {
    await page.locator(`tr[data-key-id="${id}"]`).getByRole('button', { name: 'Edit' }).click();
    return page.getByRole('dialog', { name: 'Edit key' });
  };

  beforeAll(async () => {
    mkdirSync(ARTIFACTS, { recursive: true });
    stack = await startTestStack();
    const created = await as<{ ownerInvite: string }>(stack.adminToken, 'POST', '/accounts', { name: 'Periods Co', plan: 'pro' });
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
    });
    page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    page.setDefaultTimeout(10_000);
    page.on('pageerror', (e) => process.stderr.write(`[dashboard page error] ${e.message}\n`));
    await page.goto(`${stack.hostUrl}/dashboard/`);
    await page.getByText('I have an invite — sign up').click();
    await page.getByLabel('Email').fill('owner@periods.example');
    await page.getByLabel('Password').fill(PASSWORD);
    await page.getByLabel('Invite').fill(created.ownerInvite);
    await page.getByRole('button', { name: 'Sign up' }).click();
    await page.getByTestId('plan').waitFor();
    const login = await fetch(`${stack.hostUrl}/auth/v1/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ email: 'owner@periods.example', password: PASSWORD, name: 'periods test' }),
    });
    token = ((await login.json()) as { token: string }).token;
    const conn = await connectProvider({
      serverUrl: stack.hostUrl,
      adminToken: token,
      ownerSecretKey: generateOwnerKeyPair().secretKey,
      shareholders: stack.shareholders.map(({ id, url, publicKey }) => ({ id, url, publicKey })),
      threshold: 3,
      provider: 'openai',
      baseUrl: stack.mock!.origin,
      apiKey: new TextEncoder().encode(stack.demo!.upstreamKey),
      pcrPolicy: devPcrPolicy(stack.pcr0),
      dev: true,
    });
    connectionId = conn.id;
  }, 90_000);

  afterAll(async () => {
    await browser?.close();
    await stack?.cleanup();
  });

  it('shows week and month spend against their caps, rate limits and the expiry date in the Keys table', async () => {
    const { id } = await newKey({ name: 'limited', weeklyLimit: 20, monthlyLimit: 50, rpm: 60, tpm: 100000, expiresAt: '2099-01-31' });
    const cell = page.locator(`tr[data-key-id="${id}"]`).getByTestId('limits');
    expect(await cell.textContent()).toBe('week $0.00 / $20.00 · month $0.00 / $50.00 · 60 req/min · 100000 tokens/min · expires 2099-01-31 00:00 UTC');
    await shot('01-keys-limits');
  });

  it('edits the new limits, refusing bad values in the browser while keeping every field typed', async () => {
    const { id } = await newKey({ name: 'edit limits', weeklyLimit: 20, rpm: 60 });
    const dialog = await openEdit(id);
    expect(await dialog.getByLabel('Weekly limit ($)').inputValue()).toBe('20');
    expect(await dialog.getByLabel('Requests per minute').inputValue()).toBe('60');
    await dialog.getByLabel('Monthly limit ($)').fill('50');
    await dialog.getByLabel('Tokens per minute').fill('lots');
    await dialog.getByLabel('Expires at').fill('next tuesday');
    await dialog.getByRole('button', { name: 'Save' }).click();
    await dialog.getByTestId('error-tpm').waitFor();
    await dialog.getByTestId('error-expiresAt').waitFor();
    await shot('02-edit-limits-invalid');
    expect(await key(id)).toMatchObject({ monthlyLimit: null, tpm: null, expiresAt: null, weeklyLimit: 20, rpm: 60 });
    expect(await dialog.getByLabel('Monthly limit ($)').inputValue()).toBe('50');
    expect(await dialog.getByLabel('Tokens per minute').getAttribute('aria-invalid')).toBe('true');
    // A moment already past is refused before sending, too.
    await dialog.getByLabel('Tokens per minute').fill('100000');
    await dialog.getByLabel('Expires at').fill('2001-01-01');
    await dialog.getByRole('button', { name: 'Save' }).click();
    expect(await dialog.getByTestId('error-expiresAt').textContent()).toMatch(/passed/);
    await dialog.getByLabel('Expires at').fill('2099-02-01T18:30:00Z');
    await dialog.getByRole('button', { name: 'Save' }).click();
    await dialog.waitFor({ state: 'detached' });
    expect(await key(id)).toMatchObject({ weeklyLimit: 20, monthlyLimit: 50, rpm: 60, tpm: 100000, expiresAt: Date.parse('2099-02-01T18:30:00Z') });
  });

  it('clears one limit and leaves the others as they were', async () => {
    const { id } = await newKey({ name: 'clear one', dailyLimit: 5, weeklyLimit: 20, monthlyLimit: 50, rpm: 60, tpm: 100000, expiresAt: '2099-01-31' });
    const dialog = await openEdit(id);
    expect(await dialog.getByLabel('Expires at').inputValue()).toBe('2099-01-31');
    await dialog.getByLabel('Requests per minute').fill('');
    await dialog.getByRole('button', { name: 'Save' }).click();
    await dialog.waitFor({ state: 'detached' });
    expect(await key(id)).toMatchObject({ rpm: null, dailyLimit: 5, weeklyLimit: 20, monthlyLimit: 50, tpm: 100000, expiresAt: Date.parse('2099-01-31T00:00:00Z') });
    const again = await openEdit(id);
    await again.getByLabel('Expires at').fill('');
    await again.getByLabel('Weekly limit ($)').fill('');
    await again.getByRole('button', { name: 'Save' }).click();
    await again.waitFor({ state: 'detached' });
    expect(await key(id)).toMatchObject({ rpm: null, dailyLimit: 5, weeklyLimit: null, monthlyLimit: 50, tpm: 100000, expiresAt: null });
  });

  it('names the endpoint each request called in the audit page and its CSV export', async () => {
    const { id, key: sgKey } = await newKey({ name: 'audited endpoint', models: ['gpt-4o-mini'] });
    const call = (path: string, body: unknown) =>
      fetch(`${stack.hostUrl}${path}`, { method: 'POST', headers: { authorization: `Bearer ${sgKey}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
    expect((await call('/v1/chat/completions', { model: 'gpt-4o-mini', max_tokens: 5, messages: [{ role: 'user', content: 'hi' }] })).status).toBe(200);
    expect((await call('/v1/embeddings', { model: 'gpt-4o', input: 'hi' })).status).toBe(403);
    await page.goto(`${stack.hostUrl}/dashboard/#/audit`);
    const rows = page.getByTestId('audit').locator(`tr[data-key-id="${id}"]`);
    await expect.poll(async () => {
      await page.reload();
      return rows.count();
    }, { timeout: 10_000 }).toBe(2);
    expect((await rows.getByTestId('endpoint').allTextContents()).sort()).toEqual(['POST /v1/chat/completions', 'POST /v1/embeddings']);
    await shot('04-audit-endpoint');
    const [download] = await Promise.all([page.waitForEvent('download'), page.getByRole('button', { name: 'Export CSV' }).click()]);
    const csv = readFileSync((await download.path())!, 'utf8').trim().split('\n');
    const column = csv[0]!.split(',').indexOf('endpoint');
    expect(column).toBeGreaterThan(0);
    expect(csv.filter((l) => l.includes(id)).map((l) => l.split(',')[column]).sort()).toEqual(['POST /v1/chat/completions', 'POST /v1/embeddings']);
  });

  it('at 375 px the limit fields fit the screen and the Keys table needs no sideways scroll', async () => {
    const { id } = await newKey({ name: 'phone', weeklyLimit: 20, rpm: 60, expiresAt: '2099-01-31' });
    try {
      await page.setViewportSize({ width: 375, height: 800 });
      await page.reload();
      await page.locator(`tr[data-key-id="${id}"]`).waitFor();
      expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(375);
      const dialog = await openEdit(id);
      for (const label of ['Weekly limit ($)', 'Monthly limit ($)', 'Requests per minute', 'Tokens per minute', 'Expires at']) {
        const input = dialog.getByLabel(label);
        await input.scrollIntoViewIfNeeded();
        const box = (await input.boundingBox())!;
        expect(box.x, label).toBeGreaterThanOrEqual(0);
        expect(box.x + box.width, label).toBeLessThanOrEqual(375);
      }
      await dialog.getByLabel('Tokens per minute').fill('5000');
      const save = dialog.getByRole('button', { name: 'Save' });
      await save.scrollIntoViewIfNeeded();
      expect((await save.boundingBox())!.x + (await save.boundingBox())!.width).toBeLessThanOrEqual(375);
      expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(375);
      await shot('03-edit-limits-375');
      await save.click();
      await dialog.waitFor({ state: 'detached' });
      expect(await key(id)).toMatchObject({ tpm: 5000, rpm: 60, weeklyLimit: 20 });
    } finally {
      await page.setViewportSize({ width: 1280, height: 900 });
    }
  });
});
