/**
 * The dashboard as its users expect it (issue 20, and issue 18's owner key), in Debian's Chromium
 * driven by playwright-core against the dev stack, at desktop width and at 375 px: the owner's
 * signing key is a non-extractable WebCrypto key in IndexedDB (never in localStorage); the Edit
 * Key dialog keeps its input, validates before sending and marks the field the server refused;
 * scopes are checkboxes; the Keys table shows spend, caps and last use; phones need no sideways
 * scroll. Screenshots go to test-artifacts/ux-dashboard/ (not committed).
 */
import { existsSync, mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import OpenAI from 'openai';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ownerPublicKey, toHex } from '../../protocol/index.ts';
import { startTestStack } from './helpers.ts';

const CHROMIUM = process.env.SECUREGATE_CHROMIUM ?? '/usr/bin/chromium';
const haveChromium = existsSync(CHROMIUM);
const built = existsSync(fileURLToPath(new URL('../../dashboard/dist/index.html', import.meta.url)));
if (process.env.CI === 'true' && (!haveChromium || !built)) throw new Error('the dashboard UX test must run under CI=true: install chromium and build the dashboard');

const ARTIFACTS = fileURLToPath(new URL('../../test-artifacts/ux-dashboard/', import.meta.url));
const PASSWORD = 'dashboard ux password';
const LEGACY_SEED = '42'.repeat(32);
const BRACKNELL = '81.2.69.142';

describe.skipIf(!haveChromium || !built)('dashboard UX in Chromium', () => {
  let stack: Awaited<ReturnType<typeof startTestStack>>;
  let browser: Browser;
  let page: Page;
  let accountToken: string;
  let connectionId: string;
  const shot = (name: string) => page.screenshot({ path: `${ARTIFACTS}${name}.png`, fullPage: true });

  const as = async <T = Record<string, unknown>>(token: string, method: string, path: string, body?: unknown) => {
    const res = await fetch(`${stack.hostUrl}/admin/v1${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body ? { 'content-type': 'application/json' } : {}) },
      ...(body ? { body: JSON.stringify(body) } : {}),
    });
    return (await res.json()) as T;
  };
  const key = (id: string) => as<Record<string, unknown>>(accountToken, 'GET', `/keys/${id}`);
  const newKey = async (body: Record<string, unknown> = {}) => {
    const k = await as<{ id: string; key: string }>(accountToken, 'POST', '/keys', { connectionId, ...body });
    await page.goto(`${stack.hostUrl}/dashboard/#/keys`);
    await page.reload();
    return k;
  };
  const openEdit = async (id: string) => {
    await page.locator(`tr[data-key-id="${id}"]`).getByRole('button', { name: 'Edit' }).click();
    return page.getByRole('dialog', { name: 'Edit key' });
  };

  beforeAll(async () => {
    mkdirSync(ARTIFACTS, { recursive: true });
    stack = await startTestStack({ hostArgs: ['--trusted-proxy', 'loopback'] });
    const created = await as<{ id: string; ownerInvite: string }>(stack.adminToken, 'POST', '/accounts', { name: 'UX Co', plan: 'pro' });
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
    });
    page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    // A step that cannot happen fails in seconds, naming its locator, not at the test timeout.
    page.setDefaultTimeout(10_000);
    page.on('pageerror', (e) => process.stderr.write(`[dashboard page error] ${e.message}\n`));
    await page.goto(`${stack.hostUrl}/dashboard/`);
    // A browser that used an earlier dashboard holds the owner key in clear in localStorage.
    await page.evaluate((seed) => localStorage.setItem('securegate.ownerSecretKey', seed), LEGACY_SEED);
    await page.getByText('I have an invite — sign up').click();
    await page.getByLabel('Email').fill('owner@ux.example');
    await page.getByLabel('Password').fill(PASSWORD);
    await page.getByLabel('Invite').fill(created.ownerInvite);
    await page.getByRole('button', { name: 'Sign up' }).click();
    await page.getByTestId('plan').waitFor();
    // An admin token of the account, for checking what the server stored.
    const login = await fetch(`${stack.hostUrl}/auth/v1/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ email: 'owner@ux.example', password: PASSWORD, name: 'ux test' }),
    });
    accountToken = ((await login.json()) as { token: string }).token;
  }, 90_000);

  afterAll(async () => {
    await browser?.close();
    await stack?.cleanup();
  });

  it('every page of a new account says what to do first', async () => {
    for (const [name, testid] of [['connections', 'empty'], ['keys', 'keys-empty'], ['models', 'empty'], ['usage', 'empty'], ['audit', 'audit-empty'], ['alerts', 'empty']] as const) {
      await page.goto(`${stack.hostUrl}/dashboard/#/${name}`);
      await page.getByTestId(testid).waitFor();
    }
    await page.goto(`${stack.hostUrl}/dashboard/#/overview`);
    await page.getByTestId('checklist').waitFor();
    expect(await page.getByTestId('checklist').locator('li.no').count()).toBe(5);
  });

  it('signs enrollments with a non-extractable Ed25519 key in IndexedDB and removes the clear key from localStorage', async () => {
    await page.goto(`${stack.hostUrl}/dashboard/#/connections`);
    await page.getByLabel('Provider').selectOption('openai');
    await page.getByLabel('API key').fill(stack.demo!.upstreamKey);
    await page.getByLabel('Base URL').fill(stack.mock!.origin);
    await page.getByLabel('Name').fill('ux openai');
    await page.getByRole('button', { name: 'Seal, split and connect' }).click();
    await page.getByTestId('progress').filter({ hasText: 'connected' }).waitFor();
    const conns = await as<Array<{ id: string; name: string }>>(accountToken, 'GET', '/connections');
    connectionId = conns.find((c) => c.name === 'ux openai')!.id;

    const stored = await page.evaluate(async () => {
      const db = await new Promise<IDBDatabase>((resolve, reject) => {
        const r = indexedDB.open('securegate');
        r.onsuccess = () => resolve(r.result);
        r.onerror = () => reject(r.error);
      });
      const pair = await new Promise<CryptoKeyPair>((resolve, reject) => {
        const r = db.transaction('owner-keys').objectStore('owner-keys').get('owner');
        r.onsuccess = () => resolve(r.result as CryptoKeyPair);
        r.onerror = () => reject(r.error);
      });
      const exported = await crypto.subtle.exportKey('pkcs8', pair.privateKey).then(
        () => 'exported',
        (e: Error) => e.name,
      );
      const publicKey = [...new Uint8Array(await crypto.subtle.exportKey('raw', pair.publicKey))].map((b) => b.toString(16).padStart(2, '0')).join('');
      return {
        legacy: localStorage.getItem('securegate.ownerSecretKey'),
        storage: JSON.stringify({ ...localStorage }),
        algorithm: pair.privateKey.algorithm.name,
        extractable: pair.privateKey.extractable,
        usages: pair.privateKey.usages,
        exported,
        publicKey,
      };
    });
    expect(stored.legacy).toBeNull();
    expect(stored.storage).not.toContain(LEGACY_SEED);
    expect(stored).toMatchObject({ algorithm: 'Ed25519', extractable: false, usages: ['sign'], exported: 'InvalidAccessError' });
    // The migrated key is the same key: connections enrolled by it stay manageable from here.
    expect(stored.publicKey).toBe(toHex(ownerPublicKey(Buffer.from(LEGACY_SEED, 'hex'))));
    // And the connection it enrolled works end to end.
    const k = await as<{ key: string }>(accountToken, 'POST', '/keys', { connectionId });
    const sdk = new OpenAI({ apiKey: k.key, baseURL: `${stack.hostUrl}/v1`, maxRetries: 0, defaultHeaders: { 'x-forwarded-for': BRACKNELL } });
    expect((await sdk.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] })).choices[0]!.message.content).toContain('mock upstream');
  });

  it('validates the Edit Key form in the browser and keeps every field while one is wrong', async () => {
    await page.goto(`${stack.hostUrl}/dashboard/#/keys`);
    const { id } = await newKey({ name: 'keeps input' });
    const dialog = await openEdit(id);
    await dialog.getByLabel('Cities').fill('Bracknell, GB');
    await dialog.getByLabel('Models').fill('gpt-4o-mini');
    await dialog.getByLabel('Daily limit ($)').fill('5');
    await dialog.getByLabel('Expire after idle').fill('7 days');
    await dialog.getByRole('button', { name: 'Save' }).click();
    await dialog.getByTestId('error-inactiveExpiry').waitFor();
    await shot('01-edit-invalid-expiry');
    // Nothing was sent, and nothing typed was lost.
    expect(await key(id)).toMatchObject({ allowedCities: [], allowedModels: [], dailyLimit: null });
    expect(await dialog.getByLabel('Cities').inputValue()).toBe('Bracknell, GB');
    expect(await dialog.getByLabel('Models').inputValue()).toBe('gpt-4o-mini');
    expect(await dialog.getByLabel('Daily limit ($)').inputValue()).toBe('5');
    expect(await dialog.getByLabel('Expire after idle').getAttribute('aria-invalid')).toBe('true');
    await dialog.getByLabel('Expire after idle').fill('7d');
    await dialog.getByRole('button', { name: 'Save' }).click();
    await dialog.waitFor({ state: 'detached' });
    expect(await key(id)).toMatchObject({ allowedCities: ['Bracknell, GB'], allowedModels: ['gpt-4o-mini'], dailyLimit: 5, inactiveExpiryMs: 7 * 86_400_000 });
  });

  it('shows which field the server refused, keeps the rest, and saves an unknown city only when confirmed', async () => {
    const { id } = await newKey({ name: 'server refuses' });
    const dialog = await openEdit(id);
    await dialog.getByLabel('Cities').fill('Londn; Paris, FR');
    await dialog.getByLabel('Daily limit ($)').fill('3');
    await dialog.getByRole('button', { name: 'Save' }).click();
    const error = dialog.getByTestId('error-cities');
    await error.waitFor();
    expect(await error.textContent()).toContain('"Londn" is not in the city database');
    expect(await dialog.getByTestId('unknown-warning').textContent()).toContain('Londn');
    expect(await dialog.getByLabel('Daily limit ($)').inputValue()).toBe('3');
    expect((await key(id)).dailyLimit).toBeNull();
    await shot('02-edit-unknown-city');
    // Fixing the typo saves every field, not only the fixed one.
    await dialog.getByLabel('Cities').fill('London; Paris, FR');
    await dialog.getByRole('button', { name: 'Save' }).click();
    await dialog.waitFor({ state: 'detached' });
    expect(await key(id)).toMatchObject({ allowedCities: ['London', 'Paris, FR'], dailyLimit: 3 });
    // A name the database lacks can still be saved deliberately.
    const again = await openEdit(id);
    await again.getByLabel('Cities').fill('Xyzzyville');
    await again.getByRole('button', { name: 'Save' }).click();
    await again.getByTestId('unknown-warning').getByRole('button', { name: 'Save anyway' }).click();
    await again.waitFor({ state: 'detached' });
    expect((await key(id)).allowedCities).toEqual(['Xyzzyville']);
  });

  it('separates cities with ";" only: "London, GB, Paris" is refused in the browser, not split into three', async () => {
    const { id } = await newKey({ name: 'separator' });
    const dialog = await openEdit(id);
    await dialog.getByLabel('Cities').fill('London, GB, Paris');
    await dialog.getByRole('button', { name: 'Save' }).click();
    await dialog.getByTestId('error-cities').waitFor();
    expect(await dialog.getByTestId('error-cities').textContent()).toContain('separate cities with ";"');
    await dialog.getByLabel('Cities').fill('London, GB; Paris');
    await dialog.getByRole('button', { name: 'Save' }).click();
    await dialog.waitFor({ state: 'detached' });
    expect((await key(id)).allowedCities).toEqual(['London, GB', 'Paris']);
    const row = page.locator(`tr[data-key-id="${id}"]`);
    await row.getByTestId('locks').filter({ hasText: 'cities London, GB; Paris' }).waitFor();
  });

  it('edits scopes with a checkbox per kind and access', async () => {
    const { id } = await newKey({ name: 'scoped' });
    const dialog = await openEdit(id);
    expect(await dialog.getByLabel('inference', { exact: true }).isChecked()).toBe(true);
    await dialog.getByLabel('files:read').check();
    await dialog.getByLabel('batches:delete').check();
    await shot('03-edit-scopes');
    await dialog.getByRole('button', { name: 'Save' }).click();
    await dialog.waitFor({ state: 'detached' });
    expect((await key(id)).scopes).toEqual(['batches:delete', 'files:read', 'inference']);
    const reopened = await openEdit(id);
    expect(await reopened.getByLabel('files:read').isChecked()).toBe(true);
    expect(await reopened.getByLabel('files:write').isChecked()).toBe(false);
    await reopened.getByLabel('inference', { exact: true }).uncheck();
    await reopened.getByLabel('files:read').uncheck();
    await reopened.getByLabel('batches:delete').uncheck();
    await reopened.getByRole('button', { name: 'Save' }).click();
    await reopened.getByTestId('error-scopes').waitFor();
    await reopened.getByRole('button', { name: 'Cancel' }).click();
  });

  it('the Keys table shows spent today / cap to the tenth of a cent, lifetime and last use as relative time', async () => {
    const { id, key: sgKey } = await newKey({ name: 'tiny cap', dailyLimit: 0.003 });
    const row = page.locator(`tr[data-key-id="${id}"]`);
    expect(await row.getByTestId('spend-today').textContent()).toBe('$0.00 / $0.003');
    expect(await row.getByTestId('last-used').textContent()).toBe('never');
    const sdk = new OpenAI({ apiKey: sgKey, baseURL: `${stack.hostUrl}/v1`, maxRetries: 0, defaultHeaders: { 'x-forwarded-for': BRACKNELL } });
    await sdk.chat.completions.create({ model: 'gpt-4o-mini', max_tokens: 5, messages: [{ role: 'user', content: 'hi' }] });
    await page.reload();
    expect(await row.getByTestId('last-used').textContent()).toBe('just now');
    expect(await row.getByTestId('spend-today').textContent()).not.toBe('$0.00 / $0.003');
    expect(await row.getByTestId('spend-lifetime').textContent()).toMatch(/^\$0\.0\d*[1-9]/);
    await shot('04-keys-table');
  });

  it('creates a key with a cap at once and shows a copy button and client snippets', async () => {
    await page.getByLabel('Name', { exact: true }).fill('with cap');
    await page.locator('form.grid').getByLabel('Daily limit ($)').fill('2');
    await page.getByRole('button', { name: 'Create key' }).click();
    const sgKey = (await page.getByTestId('new-key-value').textContent())!;
    expect(sgKey).toMatch(/^SG_/);
    await page.getByTestId('new-key').getByRole('button', { name: 'Copy' }).waitFor();
    expect(await page.getByTestId('snippet-env').textContent()).toContain(`${stack.hostUrl}/v1`);
    const created = (await as<Array<{ name: string; dailyLimit: number | null }>>(accountToken, 'GET', '/keys')).find((k) => k.name === 'with cap');
    expect(created?.dailyLimit).toBe(2);
  });

  it('the Overview shows spend today, recent activity and a getting-started checklist', async () => {
    await page.goto(`${stack.hostUrl}/dashboard/#/overview`);
    await page.getByTestId('spend-today').waitFor();
    expect(await page.getByTestId('spend-today').textContent()).toMatch(/Spent today \(UTC\): \$0\.\d+ across \d+ keys/);
    const checklist = page.getByTestId('checklist');
    expect(await checklist.locator('li.yes').allTextContents()).toEqual(expect.arrayContaining([expect.stringContaining('Connect a provider'), expect.stringContaining('first request')]));
    expect(await checklist.locator('li.no').allTextContents()).toEqual([expect.stringContaining('alert target')]);
    expect(await page.getByTestId('recent').locator('li').count()).toBeGreaterThan(0);
    await shot('07-overview');
  });

  it('the audit page filters by key name and outcome and exports the rows as CSV', async () => {
    const { key: sgKey } = await newKey({ name: 'audited', models: ['gpt-4o-mini'] });
    const sdk = new OpenAI({ apiKey: sgKey, baseURL: `${stack.hostUrl}/v1`, maxRetries: 0, defaultHeaders: { 'x-forwarded-for': BRACKNELL } });
    await sdk.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] });
    await sdk.chat.completions.create({ model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }] }).catch(() => undefined);
    await page.goto(`${stack.hostUrl}/dashboard/#/audit`);
    await page.getByLabel('Key').fill('audited');
    await page.getByLabel('Outcome').selectOption('refused');
    await page.getByRole('button', { name: 'Filter' }).click();
    const rows = page.getByTestId('audit').locator('tr[data-key-id]');
    // The table shows the previous rows until the filtered answer arrives.
    await expect.poll(() => rows.count(), { timeout: 10_000 }).toBe(1);
    expect(await rows.first().getAttribute('data-code')).toBe('model_not_allowed');
    const [download] = await Promise.all([page.waitForEvent('download'), page.getByRole('button', { name: 'Export CSV' }).click()]);
    const csv = (await import('node:fs')).readFileSync((await download.path())!, 'utf8').trim().split('\n');
    expect(csv[0]).toMatch(/^at,requestId,keyId,/);
    expect(csv).toHaveLength(2);
    expect(csv[1]).toContain('model_not_allowed');
    await page.getByLabel('Key').fill('key_nothing_here');
    await page.getByRole('button', { name: 'Filter' }).click();
    await page.getByTestId('audit-empty').waitFor();
  });

  it('at 375 px no page needs sideways scroll, and the key actions and the Edit Key dialog stay reachable', async () => {
    await page.setViewportSize({ width: 375, height: 800 });
    try {
      await page.goto(`${stack.hostUrl}/dashboard/#/keys`);
      await page.getByTestId('keys').locator('tr[data-key-id]').first().waitFor();
      await shot('05-keys-375');
      const width = await page.evaluate(() => document.documentElement.scrollWidth);
      expect(width).toBeLessThanOrEqual(375);
      const row = page.getByTestId('keys').locator('tr[data-key-id]').first();
      const edit = row.getByRole('button', { name: 'Edit' });
      await edit.scrollIntoViewIfNeeded();
      const box = (await edit.boundingBox())!;
      expect(box.x + box.width).toBeLessThanOrEqual(375);
      await edit.click();
      const dialog = page.getByRole('dialog', { name: 'Edit key' });
      const save = dialog.getByRole('button', { name: 'Save' });
      await save.scrollIntoViewIfNeeded();
      const saveBox = (await save.boundingBox())!;
      expect(saveBox.x + saveBox.width).toBeLessThanOrEqual(375);
      expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(375);
      await shot('06-edit-375');
      await dialog.getByRole('button', { name: 'Cancel' }).click();
      for (const name of ['overview', 'connections', 'models', 'usage', 'audit', 'alerts', 'attestation']) {
        await page.goto(`${stack.hostUrl}/dashboard/#/${name}`);
        await page.locator('main h2, main [data-testid="error"]').first().waitFor();
        await shot(`08-${name}-375`);
        expect(await page.evaluate(() => document.documentElement.scrollWidth), name).toBeLessThanOrEqual(375);
      }
    } finally {
      await page.setViewportSize({ width: 1280, height: 900 });
    }
  });
});
