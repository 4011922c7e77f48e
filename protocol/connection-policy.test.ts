import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { utf8 } from './bytes.ts';
import {
  ceilingReached,
  connectionPolicySha256,
  costMicroUsd,
  parseConnectionPolicy,
  policyRefusal,
  verifyConnectionPolicy,
  type ConnectionPolicy,
} from './connection-policy.ts';
import { policyPrices, signConnectionPolicy, type PriceLookup } from './owner/connection-policy-sign.ts';
import { generateOwnerKeyPair } from './owner/owner-keys.ts';
import { signOwnerMessage } from './owner/owner-sign.ts';
import { openUpstreamKey, type KeyBinding } from './sealed-record.ts';
import { sealUpstreamKey } from './owner/seal-upstream-key.ts';

const random = (n: number) => new Uint8Array(randomBytes(n));
const owner = generateOwnerKeyPair();
const base = { connectionId: 'conn_1', issuedAt: 1_700_000_000_000, operations: ['inference'], ceiling: { requests: 10 } };
const binding: KeyBinding = { connectionId: 'conn_1', provider: 'openai', origin: 'https://api.openai.com', authScheme: 'bearer' };

function code(f: () => unknown): string | undefined {
  try {
    f();
  } catch (e) {
    return (e as { code?: string }).code;
  }
  return undefined;
}

describe('connection policy', () => {
  it('verifies a signed policy and returns it with its hash', () => {
    const signed = signConnectionPolicy(owner.secretKey, { ...base, models: ['gpt-4o'] });
    const { policy, sha256 } = verifyConnectionPolicy(signed, 'conn_1');
    expect(policy.models).toEqual(['gpt-4o']);
    expect(policy.unmeteredTokens).toBe(16_384);
    expect(sha256).toBe(connectionPolicySha256(signed));
  });

  it('refuses a policy whose fields were changed after signing', () => {
    const signed = signConnectionPolicy(owner.secretKey, base);
    const laxer = { ...signed, message: { ...signed.message, ceiling: { requests: 1_000_000 } } };
    expect(code(() => verifyConnectionPolicy(laxer, 'conn_1'))).toBe('signature_invalid');
  });

  it("refuses another connection's policy", () => {
    const signed = signConnectionPolicy(owner.secretKey, { ...base, connectionId: 'conn_2' });
    expect(code(() => verifyConnectionPolicy(signed, 'conn_1'))).toBe('signature_invalid');
  });

  it('refuses unknown operations, floats and missing ceilings', () => {
    expect(code(() => signConnectionPolicy(owner.secretKey, { ...base, operations: ['keys'] }))).toBe('envelope_malformed');
    expect(code(() => signConnectionPolicy(owner.secretKey, { ...base, operations: ['files:copy'] }))).toBe('envelope_malformed');
    expect(code(() => parseConnectionPolicy({ type: 'connection_policy', connectionId: 'c', issuedAt: 1, operations: ['inference'] }))).toBe('envelope_malformed');
    expect(code(() => parseConnectionPolicy({ ...base, type: 'connection_policy', ceiling: { tokens: 1.5 } }))).toBe('envelope_malformed');
  });

  it('hashes a different signer or any changed field to a different value', () => {
    const signed = signConnectionPolicy(owner.secretKey, base);
    const other = signConnectionPolicy(generateOwnerKeyPair().secretKey, base);
    const changed = signConnectionPolicy(owner.secretKey, { ...base, ceiling: { requests: 11 } });
    expect(new Set([signed, other, changed].map(connectionPolicySha256)).size).toBe(3);
  });

  it('a record sealed with a policy opens only under that policy hash', () => {
    const dek = random(32);
    const sha = connectionPolicySha256(signConnectionPolicy(owner.secretKey, base));
    const laxer = connectionPolicySha256(signConnectionPolicy(owner.secretKey, { ...base, ceiling: {} }));
    const record = sealUpstreamKey(utf8('sk-1'), dek, { ...binding, policySha256: sha }, random);
    expect(record[0]).toBe(0x03);
    expect(openUpstreamKey(record, dek, { ...binding, policySha256: sha })).toEqual(utf8('sk-1'));
    expect(code(() => openUpstreamKey(record, dek, { ...binding, policySha256: laxer }))).toBe('envelope_auth_failed');
    // Dropping the policy (presenting a binding without one) does not open it either.
    expect(code(() => openUpstreamKey(record, dek, binding))).toBe('envelope_auth_failed');
    // A record sealed without a policy does not open under one.
    const old = sealUpstreamKey(utf8('sk-1'), dek, binding, random);
    expect(code(() => openUpstreamKey(old, dek, { ...binding, policySha256: sha }))).toBe('envelope_auth_failed');
  });

  it('a 0x03 record binds the allow-list too', () => {
    const dek = random(32);
    const sha = connectionPolicySha256(signConnectionPolicy(owner.secretKey, { ...base, operations: ['any'] }));
    const any = { ...binding, provider: 'any', allow: '["GET /a"]', policySha256: sha };
    const record = sealUpstreamKey(utf8('k'), dek, any, random);
    expect(code(() => openUpstreamKey(record, dek, { ...any, allow: '["GET /**"]' }))).toBe('envelope_auth_failed');
  });

  it('an owner message of another type is not a policy', () => {
    const signed = signOwnerMessage(owner.secretKey, { type: 'enroll', connectionId: 'conn_1', issuedAt: 1, operations: ['inference'], ceiling: {} });
    expect(code(() => verifyConnectionPolicy(signed, 'conn_1'))).toBe('envelope_malformed');
  });
});

describe('policy decisions', () => {
  const policy = (p: Partial<ConnectionPolicy>): ConnectionPolicy => ({ ...base, unmeteredTokens: 100, ...p });

  it('grants a kind with every access, or one access only', () => {
    expect(policyRefusal(policy({}), { kind: 'inference', access: 'write' }, 'm')).toBeUndefined();
    expect(policyRefusal(policy({}), { kind: 'files', access: 'read' }, undefined)?.code).toBe('operation');
    expect(policyRefusal(policy({ operations: ['files:read'] }), { kind: 'files', access: 'read' }, undefined)).toBeUndefined();
    expect(policyRefusal(policy({ operations: ['files:read'] }), { kind: 'files', access: 'delete' }, undefined)?.code).toBe('operation');
  });

  it('refuses models outside the list, unknown models under a list, and unpriced models under a dollar ceiling', () => {
    const listed = policy({ models: ['gpt-4o'] });
    expect(policyRefusal(listed, { kind: 'inference', access: 'write' }, 'gpt-4o')).toBeUndefined();
    expect(policyRefusal(listed, { kind: 'inference', access: 'write' }, 'o3')?.code).toBe('model');
    expect(policyRefusal(listed, { kind: 'inference', access: 'write' }, null)?.code).toBe('model');
    expect(policyRefusal(listed, { kind: 'inference', access: 'read' }, undefined)).toBeUndefined();
    const dollars = policy({ ceiling: { microUsd: 1000 }, prices: { 'gpt-4o': { inputMicroUsdPerMTok: 2_500_000, outputMicroUsdPerMTok: 10_000_000 } } });
    expect(policyRefusal(dollars, { kind: 'inference', access: 'write' }, 'gpt-4o')).toBeUndefined();
    expect(policyRefusal(dollars, { kind: 'inference', access: 'write' }, 'o3')?.code).toBe('model');
    expect(policyRefusal(policy({}), { kind: 'inference', access: 'write' }, null)).toBeUndefined();
  });

  it('reaches the request ceiling at the next request, tokens and dollars once used up', () => {
    const p = policy({ ceiling: { requests: 2, tokens: 100, microUsd: 50 } });
    expect(ceilingReached(p, { requests: 1, tokens: 99, microUsd: 49 })).toBeUndefined();
    expect(ceilingReached(p, { requests: 2, tokens: 0, microUsd: 0 })).toBe('requests');
    expect(ceilingReached(p, { requests: 0, tokens: 100, microUsd: 0 })).toBe('tokens');
    expect(ceilingReached(p, { requests: 0, tokens: 0, microUsd: 50 })).toBe('microUsd');
  });

  it('prices an answer in micro-dollars, rounded up', () => {
    const p = policy({ prices: { m: { inputMicroUsdPerMTok: 2_500_000, outputMicroUsdPerMTok: 10_000_000 } } });
    expect(costMicroUsd(p, 'm', { inputTokens: 1000, outputTokens: 100 })).toBe(3500);
    expect(costMicroUsd(p, 'm', { inputTokens: 1, outputTokens: 0 })).toBe(3);
    expect(costMicroUsd(p, 'other', { inputTokens: 1000, outputTokens: 0 })).toBe(0);
  });
});

describe('onboarding with a connection policy', () => {
  it('seals the record under the signed policy (and its shareholder set: 0x04) and gives each shareholder k = ⌊t·⌊C/q⌋/n⌋ leases a day', async () => {
    const { prepareConnection } = await import('./owner/onboard.ts');
    const { generateX25519KeyPair } = await import('./share-envelope.ts');
    const { toHex } = await import('./bytes.ts');
    const shareholders = ['a', 'b', 'c', 'd', 'e'].map((id) => ({ id, url: `http://${id}`, publicKey: toHex(generateX25519KeyPair().publicKey) }));
    const prepared = await prepareConnection({
      apiKey: utf8('sk-x'),
      binding,
      shareholders,
      threshold: 3,
      ownerSecretKey: owner.secretKey,
      pcrPolicy: { allow: [{ '0': 'ab'.repeat(48) }] },
      connectionPolicy: { ceiling: { requests: 1000 }, lease: { requests: 50 } },
    });
    expect(prepared.sealedRecord[0]).toBe(0x04); // 0x04: the policy and the shareholder set (SPEC.md §1)
    const { policy, sha256 } = verifyConnectionPolicy(prepared.connectionPolicy!, 'conn_1');
    expect(policy.operations).toEqual(['inference']);
    expect(sha256).toHaveLength(64);
    // ⌊1000/50⌋ = 20 leases a day; k = ⌊3·20/5⌋ = 12; ⌊5·12/3⌋ = 20.
    expect(prepared.enrollments.map((e) => e.body.signed.message.maxLeasesPerDay)).toEqual([12, 12, 12, 12, 12]);
    await expect(
      prepareConnection({
        apiKey: utf8('sk-x'),
        binding,
        shareholders,
        threshold: 3,
        ownerSecretKey: owner.secretKey,
        pcrPolicy: { allow: [] },
        connectionPolicy: { ceiling: { requests: 10 }, lease: { requests: 10 } },
      }),
    ).rejects.toMatchObject({ code: 'envelope_malformed' });
  });
});

describe('policyPrices', () => {
  const table: PriceLookup = (usage, model) => (model === 'known' ? { total_price: usage.input_tokens ? 0.1500001 : 0.6 } : null);
  it('prices each model in micro-dollars per million tokens, rounded up, and names the unpriced ones', () => {
    expect(policyPrices(['known', 'mystery'], 'openai', table)).toEqual({ prices: { known: { inputMicroUsdPerMTok: 150001, outputMicroUsdPerMTok: 600000 } }, unpriced: ['mystery'] });
  });
});
