import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { signRequest, verifyRequestSignature } from '../protocol/index.ts';
import { cityAllowed, foldName } from './geo.ts';
import { checkKeyStatus, parseDuration, resolveModel } from './locks.ts';
import type { KeyRecord } from './store.ts';

const base: KeyRecord = {
  id: 'key_1', hash: '', hint: '', name: '', projectId: 'proj_default', connectionId: 'c', status: 'active', boundIp: null, boundAt: null,
  allowedCities: [], deviceHash: null, deviceSalt: null, allowedModels: [], requireSignature: false, signingSecret: null,
  inactiveExpiryMs: null, lastUsedAt: null, suspendedUntil: null, dailyLimitMicros: null, lifetimeLimitMicros: null, dailyRequestLimit: null, weeklyLimitMicros: null, monthlyLimitMicros: null, expiresAt: null, rpmLimit: null, tpmLimit: null, autoLock: ['ip'], scopes: ['inference'], boundCity: null, boundCityAt: null, deviceBoundAt: null, createdAt: 0, updatedAt: 0,
};

describe('key status locks', () => {
  it('expires a key unused for longer than its inactivity limit, measured from last use', () => {
    const key = { ...base, inactiveExpiryMs: 7 * 86_400_000, createdAt: 0, lastUsedAt: 86_400_000 };
    expect(checkKeyStatus(key, 8 * 86_400_000 - 1)).toBeUndefined();
    expect(checkKeyStatus(key, 8 * 86_400_000 + 1)?.code).toBe('key_expired');
  });

  it('reports suspension with a retry-after in seconds', () => {
    expect(checkKeyStatus({ ...base, suspendedUntil: 10_500 }, 1_000)).toMatchObject({ code: 'key_suspended', retryAfter: 10 });
    expect(checkKeyStatus({ ...base, suspendedUntil: 1_000 }, 1_000)).toBeUndefined();
  });

  it('checks revoked before killed before expired', () => {
    expect(checkKeyStatus({ ...base, status: 'revoked', suspendedUntil: 1e15 }, 0)?.code).toBe('key_revoked');
    expect(checkKeyStatus({ ...base, status: 'killed' }, 0)?.code).toBe('key_killed');
  });
});

describe('request signatures', () => {
  const secret = 'ab'.repeat(32);
  const body = new TextEncoder().encode('{"model":"gpt-4o"}');

  it('verify for exactly the signed method, path and body', () => {
    fc.assert(
      fc.property(fc.constantFrom('GET', 'POST'), fc.webPath(), fc.uint8Array({ maxLength: 64 }), (method, path, b) => {
        const now = 1_800_000_000_000;
        const h = signRequest(secret, method, path, b, now);
        expect(verifyRequestSignature(secret, method, path, b, h['x-sg-timestamp'], h['x-sg-signature'], now).ok).toBe(true);
        expect(verifyRequestSignature(secret, method, `${path}x`, b, h['x-sg-timestamp'], h['x-sg-signature'], now).ok).toBe(false);
        expect(verifyRequestSignature(secret, method, path, new Uint8Array([...b, 1]), h['x-sg-timestamp'], h['x-sg-signature'], now).ok).toBe(false);
        expect(verifyRequestSignature('cd'.repeat(32), method, path, b, h['x-sg-timestamp'], h['x-sg-signature'], now).ok).toBe(false);
      }),
    );
  });

  it('refuses timestamps outside ±300 s and malformed headers', () => {
    const now = 1_800_000_000_000;
    const h = signRequest(secret, 'POST', '/v1/x', body, now);
    expect(verifyRequestSignature(secret, 'POST', '/v1/x', body, h['x-sg-timestamp'], h['x-sg-signature'], now + 299_000).ok).toBe(true);
    expect(verifyRequestSignature(secret, 'POST', '/v1/x', body, h['x-sg-timestamp'], h['x-sg-signature'], now + 301_000).ok).toBe(false);
    expect(verifyRequestSignature(secret, 'POST', '/v1/x', body, 'soon', h['x-sg-signature'], now).ok).toBe(false);
    expect(verifyRequestSignature(secret, 'POST', '/v1/x', body, h['x-sg-timestamp'], 'zz', now).ok).toBe(false);
    expect(verifyRequestSignature(secret, 'POST', '/v1/x', body, undefined, undefined, now).ok).toBe(false);
  });
});

describe('cities, models, durations', () => {
  it('matches cities case- and accent-insensitively, with an optional country', () => {
    expect(foldName('  São   Paulo ')).toBe('sao paulo');
    expect(cityAllowed({ city: 'Sao Paulo', country: 'BR' }, ['são paulo'])).toBe(true);
    expect(cityAllowed({ city: 'Sao Paulo', country: 'BR' }, ['SÃO PAULO, br'])).toBe(true);
    expect(cityAllowed({ city: 'Sao Paulo', country: 'BR' }, ['Sao Paulo, US'])).toBe(false);
    expect(cityAllowed({ city: null, country: 'US' }, ['Sao Paulo'])).toBe(false);
  });

  it('resolves aliases without touching unknown models', () => {
    expect(resolveModel('gpt-4', { 'gpt-4': 'gpt-4-0613' })).toBe('gpt-4-0613');
    expect(resolveModel('gpt-4o', { 'gpt-4': 'gpt-4-0613' })).toBe('gpt-4o');
    expect(resolveModel('constructor', {})).toBe('constructor');
  });

  it('parses durations', () => {
    expect(parseDuration('7d')).toBe(604_800_000);
    expect(parseDuration('90s')).toBe(90_000);
    expect(() => parseDuration('soon')).toThrow();
  });
});
