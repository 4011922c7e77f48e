import { calcPrice, findProvider, waitForUpdate, type Usage } from '@pydantic/genai-prices';
import fc from 'fast-check';
import { describe, expect, it, vi } from 'vitest';
import type { PriceRule } from '../protocol/index.ts';
import { flatPrice, MICROS, priceUsage, reservationBound, settledCost, type Bound, type BoundQuestion, type TokenUsage } from './pricing.ts';

// The real calcPrice, watched: a test can tell whether priceUsage called it.
vi.mock('@pydantic/genai-prices', { spy: true });

describe('pricing', () => {
  const cases: Array<[string, string, string, { inputTokens: number; outputTokens: number; cacheReadTokens?: number }]> = [
    ['openai', 'openai', 'gpt-4o-mini', { inputTokens: 1234, outputTokens: 567 }],
    ['openai', 'openai', 'gpt-4o', { inputTokens: 10, outputTokens: 1, cacheReadTokens: 5 }],
    ['anthropic', 'anthropic', 'claude-3-5-sonnet-20241022', { inputTokens: 2000, outputTokens: 300 }],
  ];

  it('gives the price data\'s own result, before and after a model is cached', () => {
    for (const [provider, priceProvider, model, usage] of cases) {
      const reference = calcPrice(
        { input_tokens: usage.inputTokens + (usage.cacheReadTokens ?? 0), output_tokens: usage.outputTokens, ...(usage.cacheReadTokens ? { cache_read_tokens: usage.cacheReadTokens } : {}) },
        model,
        { providerId: priceProvider },
      );
      expect(reference, model).not.toBeNull();
      const want = Math.ceil(reference!.total_price * MICROS);
      expect(priceUsage(provider, model, usage), `${model} first`).toBe(want);
      expect(priceUsage(provider, model, usage), `${model} cached`).toBe(want);
      // A different usage on the cached model still prices exactly.
      const double = { ...usage, inputTokens: usage.inputTokens * 2 };
      const ref2 = calcPrice({ input_tokens: double.inputTokens + (usage.cacheReadTokens ?? 0), output_tokens: usage.outputTokens, ...(usage.cacheReadTokens ? { cache_read_tokens: usage.cacheReadTokens } : {}) }, model, { providerId: priceProvider });
      expect(priceUsage(provider, model, double)).toBe(Math.ceil(ref2!.total_price * MICROS));
    }
  });

  it('knows no price for an unknown model, and bounds a request above its real cost', () => {
    expect(priceUsage('openai', 'no-such-model-xyz', { inputTokens: 1, outputTokens: 1 })).toBeNull();
    const bound = reservationBound({ provider: 'openai', model: 'gpt-4o-mini', rule: { unit: 'tokens' }, json: { model: 'gpt-4o-mini', messages: [], max_tokens: 100 }, bodyBytes: 200 });
    expect(bound.ok).toBe(true);
    expect(bound.ok && bound.micros).toBeGreaterThan(priceUsage('openai', 'gpt-4o-mini', { inputTokens: 100, outputTokens: 100 })!);
  });
});

/** The usage priceUsage hands calcPrice for a TokenUsage: the contract its fast path must keep. */
const calcUsage = (u: TokenUsage): Usage => ({
  input_tokens: u.inputTokens + (u.cacheReadTokens ?? 0) + (u.cacheWriteTokens ?? 0),
  output_tokens: u.outputTokens,
  ...(u.cacheReadTokens ? { cache_read_tokens: u.cacheReadTokens } : {}),
  ...(u.cacheWriteTokens ? { cache_write_tokens: u.cacheWriteTokens } : {}),
  ...(u.audioSeconds ? { audio_seconds: u.audioSeconds, input_audio_seconds: u.audioSeconds } : {}),
});
const calcMicros = (u: TokenUsage, model: string, options: Parameters<typeof calcPrice>[2]) => {
  const result = calcPrice(calcUsage(u), model, options);
  return result ? Math.ceil(result.total_price * MICROS) : null;
};
/** How many times priceUsage called calcPrice. */
const calcPriceCalls = (f: () => unknown): number => {
  const before = vi.mocked(calcPrice).mock.calls.length;
  f();
  return vi.mocked(calcPrice).mock.calls.length - before;
};

describe('priceUsage without calcPrice on the hot path', () => {
  // Zero, one, round figures (where rounding up to the micro-dollar is most sensitive), large.
  const FIXED: TokenUsage[] = [
    { inputTokens: 0, outputTokens: 0 },
    { inputTokens: 1, outputTokens: 1 },
    { inputTokens: 0, outputTokens: 0, cacheReadTokens: 1, cacheWriteTokens: 1, audioSeconds: 1 },
    { inputTokens: 1000, outputTokens: 1000, cacheReadTokens: 1000 },
    { inputTokens: 1234, outputTokens: 567, cacheReadTokens: 89, cacheWriteTokens: 12, audioSeconds: 7.5 },
    { inputTokens: 1_000_000, outputTokens: 1_000_000, cacheReadTokens: 1_000_000, cacheWriteTokens: 1_000_000, audioSeconds: 3600 },
    { inputTokens: 123_456_789, outputTokens: 98_765_432, cacheReadTokens: 5_555_555, cacheWriteTokens: 777_777, audioSeconds: 86_400.25 },
  ];
  const randomUsage: fc.Arbitrary<TokenUsage> = fc.record({
    inputTokens: fc.nat(2_000_000),
    outputTokens: fc.nat(200_000),
    cacheReadTokens: fc.option(fc.nat(2_000_000), { nil: undefined }),
    cacheWriteTokens: fc.option(fc.nat(500_000), { nil: undefined }),
    audioSeconds: fc.option(fc.double({ min: 0, max: 10_000, noNaN: true }), { nil: undefined }),
  });

  it('prices every model of the bundled price data as calcPrice does, to the micro-dollar, most without calling it', async () => {
    // The library's active data: the bundled data, since nothing here calls updatePrices.
    const providers = (await waitForUpdate()) ?? [];
    // Collected rather than asserted one by one: ~90,000 expect() calls would take seconds.
    const wrong: string[] = [];
    const same = (got: unknown, want: unknown, what: string) => {
      if (!Object.is(got, want)) wrong.push(`${what}: ${String(got)}, not ${String(want)}`);
    };
    let models = 0;
    let flat = 0;
    let fastByName = 0;
    for (const provider of providers) {
      const byName = { provider: findProvider({ providerId: provider.id })! };
      for (const model of provider.models) {
        models++;
        const usages = [...FIXED, ...fc.sample(randomUsage, { numRuns: 20, seed: models })];
        const what = (usage: TokenUsage) => `${provider.id} ${model.id} ${JSON.stringify(usage)}`;
        // The model's own price (an exact match on its id) through flatPrice: the same double as
        // calcPrice's total, not only the same micro-dollars.
        const price = flatPrice(provider.id, model);
        if (price) {
          flat++;
          const alone = { provider: { ...provider, models: [{ ...model, match: { equals: model.id } }] } };
          for (const usage of usages) same(price(usage), calcPrice(calcUsage(usage), model.id, alone)!.total_price, what(usage));
        }
        // The model's name as a request gives it, through priceUsage: its first call finds the
        // model with calcPrice, later ones should not need it. Past the first, the reference
        // searches only the model found, as priceUsage did before it had a fast path.
        const [first, ...rest] = usages;
        const found = calcPrice(calcUsage(first!), model.id, byName);
        same(priceUsage(provider.id, model.id, first!), found && Math.ceil(found.total_price * MICROS), what(first!));
        const narrowed = found && { provider: { ...found.provider, models: [found.model] } };
        let calls = 0;
        for (const usage of rest) {
          const want = narrowed && calcMicros(usage, model.id, narrowed);
          calls += calcPriceCalls(() => same(priceUsage(provider.id, model.id, usage), want, what(usage)));
        }
        if (calls === 0) fastByName++;
      }
    }
    expect(wrong.slice(0, 10)).toEqual([]);
    // ~1,700 models, ~1,620 of them with flat prices, ~1,570 found by their id.
    expect(models).toBeGreaterThan(1000);
    expect(flat / models).toBeGreaterThan(0.9);
    expect(fastByName / models).toBeGreaterThan(0.85);
  });

  it('agrees with calcPrice on odd usages too: fractions, -0, huge, negative, NaN, infinite', () => {
    // Flat prices with cache writes, audio by the hour with and without input audio, a fee per request.
    const flatModels: Array<[string, string, string]> = [
      ['openai', 'openai', 'gpt-4o-mini'],
      ['anthropic', 'anthropic', 'claude-3-5-sonnet-20241022'],
      ['openai', 'openai', 'whisper-1'],
      ['xai', 'x-ai', 'grok-voice-think-fast-1.0'],
      ['perplexity', 'perplexity', 'sonar'],
    ];
    const count = fc.oneof(fc.nat(2_000_000), fc.double(), fc.constantFrom(-0, -1, 0.5, 1e308, Number.NaN));
    const outcome = (f: () => number | null) => {
      try {
        return f();
      } catch {
        return 'throws';
      }
    };
    fc.assert(
      fc.property(
        fc.constantFrom(...flatModels),
        fc.record({ inputTokens: count, outputTokens: count, cacheReadTokens: fc.option(count, { nil: undefined }), cacheWriteTokens: fc.option(count, { nil: undefined }), audioSeconds: fc.option(count, { nil: undefined }) }),
        ([provider, priceProvider, model], usage) => {
          priceUsage(provider, model, { inputTokens: 1, outputTokens: 1 });
          expect(calcPriceCalls(() => priceUsage(provider, model, { inputTokens: 2, outputTokens: 2 })), model).toBe(0);
          expect(outcome(() => priceUsage(provider, model, usage))).toBe(outcome(() => calcMicros(usage, model, { providerId: priceProvider })));
        },
      ),
      { numRuns: 2000 },
    );
  });

  it('leaves a tiered price to calcPrice: gpt-5.4 costs more per token from 272k input tokens', () => {
    const model = calcPrice({ input_tokens: 0, output_tokens: 0 }, 'gpt-5.4', { providerId: 'openai' })!.model;
    expect(flatPrice('openai', model)).toBeUndefined();
    const below = { inputTokens: 271_000, outputTokens: 1000 };
    const above = { inputTokens: 273_000, outputTokens: 1000 };
    for (const usage of [below, above, below]) {
      const want = calcMicros(usage, 'gpt-5.4', { providerId: 'openai' });
      expect(calcPriceCalls(() => expect(priceUsage('openai', 'gpt-5.4', usage)).toBe(want))).toBe(1);
    }
    expect(priceUsage('openai', 'gpt-5.4', above)! / 273).toBeGreaterThan(priceUsage('openai', 'gpt-5.4', below)! / 271);
  });

  it('leaves a price by time of day to calcPrice: deepseek-chat costs less outside 00:30–16:30 UTC', () => {
    const usage = { inputTokens: 10_000, outputTokens: 2000, cacheReadTokens: 5000 };
    vi.useFakeTimers({ toFake: ['Date'] });
    try {
      const at = (iso: string) => {
        vi.setSystemTime(new Date(iso));
        const micros = priceUsage('deepseek', 'deepseek-chat', usage);
        expect(micros).toBe(calcMicros(usage, 'deepseek-chat', { providerId: 'deepseek', timestamp: new Date(iso) }));
        return micros!;
      };
      const peak = at('2026-03-02T12:00:00Z');
      expect(at('2026-03-02T20:00:00Z')).toBeLessThan(peak);
      expect(at('2026-03-03T12:00:00Z')).toBe(peak);
    } finally {
      vi.useRealTimers();
    }
  });

  it('throws calcPrice\'s error for a usage calcPrice rejects, on a model it prices without calcPrice', () => {
    priceUsage('openai', 'gpt-4o-mini', { inputTokens: 1, outputTokens: 1 });
    const rejected: TokenUsage[] = [
      { inputTokens: -1, outputTokens: 0 },
      { inputTokens: 1, outputTokens: Number.NaN },
      { inputTokens: 1, outputTokens: 1, cacheReadTokens: Number.POSITIVE_INFINITY },
      // input_tokens (5) passes calcPrice's check; the uncached input (−5) does not.
      { inputTokens: -5, outputTokens: 0, cacheReadTokens: 10 },
    ];
    for (const usage of rejected) {
      expect(() => calcPrice(calcUsage(usage), 'gpt-4o-mini', { providerId: 'openai' })).toThrow();
      expect(() => priceUsage('openai', 'gpt-4o-mini', usage)).toThrow();
    }
  });
});

/**
 * Reservation bounds (issue 16, "Spend is an upper bound, always"). Prices come from the bundled
 * genai-prices data and price-tables.ts; the expected figures below are worked out from those.
 */
const TOKENS: PriceRule = { unit: 'tokens' };
const chat = (model: string, extra: Record<string, unknown> = {}) => ({ model, messages: [{ role: 'user', content: 'Say hello.' }], ...extra });
const ask = (provider: string, model: string | undefined, json: Record<string, unknown> | undefined, rule: PriceRule = TOKENS, bodyBytes?: number): BoundQuestion => ({
  provider,
  model,
  rule,
  json,
  bodyBytes: bodyBytes ?? (json ? Buffer.byteLength(JSON.stringify(json)) : 0),
});
const okMicros = (b: Bound): number => {
  if (!b.ok) throw new Error(`expected a bound, got ${b.code}: ${b.message}`);
  return b.micros;
};
const code = (b: Bound) => (b.ok ? 'ok' : b.code);

/** One API shape per provider family: how it names the output ceiling and the choice count. */
interface Shape {
  provider: string;
  model: string;
  body: (max: number | undefined, n: number) => Record<string, unknown>;
  cacheWrite: boolean;
  /** The model's context window in the price data: no answer is longer. */
  context: number;
}
const SHAPES: Shape[] = [
  { provider: 'openai', model: 'gpt-4o-mini', body: (max, n) => chat('gpt-4o-mini', { max_completion_tokens: max, n }), cacheWrite: false, context: 128_000 },
  // Tiered: 272k input tokens and above cost double.
  { provider: 'openai', model: 'gpt-5.4', body: (max) => ({ model: 'gpt-5.4', input: 'Say hello.', max_output_tokens: max }), cacheWrite: false, context: 1_050_000 },
  // Tiered above 200k, with cache-write rates above the input rate.
  { provider: 'anthropic', model: 'claude-sonnet-4-5', body: (max) => chat('claude-sonnet-4-5', { max_tokens: max ?? 64 }), cacheWrite: true, context: 200_000 },
  { provider: 'gemini-native', model: 'gemini-2.5-flash', body: (max, n) => ({ contents: [{ parts: [{ text: 'Say hello.' }] }], generationConfig: { maxOutputTokens: max, candidateCount: n } }), cacheWrite: false, context: 1_048_576 },
  // Peak and off-peak prices by time of day.
  { provider: 'deepseek', model: 'deepseek-chat', body: (max, n) => chat('deepseek-chat', { max_tokens: max, n }), cacheWrite: false, context: 64_000 },
];

describe('reservationBound: tokens', () => {
  it('is at least the price of any usage the request could produce, and finite', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...SHAPES),
        fc.integer({ min: 0, max: 600_000 }),
        fc.option(fc.integer({ min: 0, max: 200_000 }), { nil: undefined }),
        fc.integer({ min: 1, max: 8 }),
        fc.double({ min: 0, max: 1, noNaN: true }),
        fc.double({ min: 0, max: 1, noNaN: true }),
        fc.double({ min: 0, max: 1, noNaN: true }),
        fc.double({ min: 0, max: 1, noNaN: true }),
        (shape, bodyBytes, max, n, inShare, cacheShare, writeShare, outShare) => {
          const json = shape.body(max, n);
          const bound = okMicros(reservationBound(ask(shape.provider, shape.model, json, TOKENS, bodyBytes)));
          expect(Number.isSafeInteger(bound) && bound >= 0).toBe(true);
          // Any usage with input ≤ bytes and output ≤ choices × (the request's max, or the model's context).
          const choices = shape.provider === 'openai' && shape.model === 'gpt-5.4' ? 1 : shape.provider === 'anthropic' ? 1 : n;
          const maxOut = Math.min(shape.provider === 'anthropic' ? (max ?? 64) : (max ?? shape.context), shape.context);
          const input = Math.floor(bodyBytes * inShare);
          const cacheRead = Math.floor((bodyBytes - input) * cacheShare);
          const cacheWrite = shape.cacheWrite ? Math.floor((bodyBytes - input - cacheRead) * writeShare) : 0;
          const usage: TokenUsage = { inputTokens: input, outputTokens: Math.floor(choices * maxOut * outShare), cacheReadTokens: cacheRead, cacheWriteTokens: cacheWrite };
          const price = priceUsage(shape.provider, shape.model, usage);
          expect(price).not.toBeNull();
          expect(bound).toBeGreaterThanOrEqual(price!);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('never falls when n or max_tokens grows', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 100_000 }),
        fc.integer({ min: 1, max: 64 }),
        fc.integer({ min: 0, max: 64 }),
        fc.integer({ min: 0, max: 2_000_000 }),
        fc.integer({ min: 0, max: 2_000_000 }),
        (bodyBytes, n, moreN, max, moreMax) => {
          const at = (nn: number, mm: number) => okMicros(reservationBound(ask('openai', 'gpt-5.4', chat('gpt-5.4', { n: nn, max_tokens: mm }), TOKENS, bodyBytes)));
          const base = at(n, max);
          expect(at(n + moreN, max)).toBeGreaterThanOrEqual(base);
          expect(at(n, max + moreMax)).toBeGreaterThanOrEqual(base);
        },
      ),
      { numRuns: 200 },
    );
  });

  it('reserves n times the single-choice amount: n: 60 holds at least 60× what n: 1 holds', () => {
    const one = okMicros(reservationBound(ask('openai', 'gpt-4o-mini', chat('gpt-4o-mini', { max_tokens: 4096 }))));
    const sixty = okMicros(reservationBound(ask('openai', 'gpt-4o-mini', chat('gpt-4o-mini', { max_tokens: 4096, n: 60 }))));
    expect(sixty).toBeGreaterThanOrEqual(60 * one);
  });

  it('counts legacy completions best_of and every prompt of a prompt list', () => {
    const one = okMicros(reservationBound(ask('openai', 'gpt-4o-mini', { model: 'gpt-4o-mini', prompt: 'a', max_tokens: 100 })));
    const bestOf = okMicros(reservationBound(ask('openai', 'gpt-4o-mini', { model: 'gpt-4o-mini', prompt: 'a', max_tokens: 100, n: 2, best_of: 5 })));
    const prompts = okMicros(reservationBound(ask('openai', 'gpt-4o-mini', { model: 'gpt-4o-mini', prompt: ['a', 'b', 'c'], max_tokens: 100 })));
    expect(bestOf).toBeGreaterThanOrEqual(5 * one);
    expect(prompts).toBeGreaterThanOrEqual(3 * one);
  });

  it('prices a tiered model at its highest tier, even for a small request', () => {
    // gpt-5.4: $2.50/$15 per M below 272k input tokens, $5/$22.50 above.
    const bytes = 1000;
    const bound = okMicros(reservationBound(ask('openai', 'gpt-5.4', { model: 'gpt-5.4', input: 'x', max_output_tokens: 1000 }, TOKENS, bytes)));
    expect(bound).toBeGreaterThanOrEqual(bytes * 5 + 1000 * 22.5);
    // Usage past the tier threshold is still covered by the bound of a body that large.
    const big = okMicros(reservationBound(ask('openai', 'gpt-5.4', { model: 'gpt-5.4', input: 'x', max_output_tokens: 1000 }, TOKENS, 300_000)));
    expect(big).toBeGreaterThanOrEqual(priceUsage('openai', 'gpt-5.4', { inputTokens: 300_000, outputTokens: 1000 })!);
  });

  it('prices a model with peak hours at its peak price whatever the time', () => {
    // deepseek-chat: $0.27/$1.10 per M from 00:30 to 16:30 UTC, $0.135/$0.55 otherwise.
    const bound = okMicros(reservationBound(ask('deepseek', 'deepseek-chat', chat('deepseek-chat', { max_tokens: 1000 }), TOKENS, 1000)));
    expect(bound).toBeGreaterThanOrEqual(1000 * 0.27 + 1000 * 1.1);
  });

  it('holds the model\'s whole context as output when the request names no maximum', () => {
    // gpt-4o-mini: 128,000-token context at $0.60 per M output.
    const b = reservationBound(ask('openai', 'gpt-4o-mini', chat('gpt-4o-mini')));
    expect(okMicros(b)).toBeGreaterThanOrEqual(128_000 * 0.6);
    // …and says that naming one lowers the amount held.
    expect(b.ok && b.hint).toMatch(/max_tokens/);
    expect(reservationBound(ask('openai', 'gpt-4o-mini', chat('gpt-4o-mini', { max_tokens: 10 })))).not.toHaveProperty('hint');
  });

  it('reads only the ceiling the API applies: max_tokens on a Responses request does not lower the bound', () => {
    const ignored = okMicros(reservationBound(ask('openai', 'gpt-4o-mini', { model: 'gpt-4o-mini', input: 'hi', max_tokens: 1 })));
    const unnamed = okMicros(reservationBound(ask('openai', 'gpt-4o-mini', { model: 'gpt-4o-mini', input: 'hi' })));
    expect(ignored).toBeGreaterThanOrEqual(unnamed - 1);
    expect(ignored).toBeGreaterThanOrEqual(128_000 * 0.6);
  });

  it('takes the largest ceiling when a body fits more than one API, so a field one of them ignores cannot lower it', () => {
    const both = okMicros(reservationBound(ask('openai', 'gpt-4o-mini', { model: 'gpt-4o-mini', messages: [], input: 'hi', max_tokens: 1 })));
    expect(both).toBeGreaterThanOrEqual(128_000 * 0.6);
  });

  it('holds twice the Standard price for priority processing, and refuses a premium speed it has no price for', () => {
    const standard = okMicros(reservationBound(ask('openai', 'gpt-5', { model: 'gpt-5', input: 'x', max_output_tokens: 1000 }, TOKENS, 100)));
    const priority = okMicros(reservationBound(ask('openai', 'gpt-5', { model: 'gpt-5', input: 'x', max_output_tokens: 1000, service_tier: 'priority' }, TOKENS, 100)));
    expect(priority).toBeGreaterThanOrEqual(2 * (standard - 1));
    expect(code(reservationBound(ask('anthropic', 'claude-opus-4-6', chat('claude-opus-4-6', { max_tokens: 10, speed: 'fast' }))))).toBe('price_unknown');
  });

  it('costs nothing on a model the price data lists as free', () => {
    expect(reservationBound(ask('openrouter', 'nousresearch/hermes-3-llama-3.1-405b:free', chat('nousresearch/hermes-3-llama-3.1-405b:free')))).toEqual({ ok: true, micros: 0 });
  });

  it('refuses a model whose maximum output is unknown when the request names none, and says to set max_tokens', () => {
    const b = reservationBound(ask('groq', 'llama-3.3-70b-versatile', chat('llama-3.3-70b-versatile')));
    expect(code(b)).toBe('price_unknown');
    expect(!b.ok && b.message).toMatch(/max_tokens/);
    expect(code(reservationBound(ask('groq', 'llama-3.3-70b-versatile', chat('llama-3.3-70b-versatile', { max_tokens: 100 }))))).toBe('ok');
  });

  it('refuses an unpriced model as price_unknown', () => {
    expect(code(reservationBound(ask('openai', 'no-such-model-xyz', chat('no-such-model-xyz', { max_tokens: 10 }))))).toBe('price_unknown');
    expect(code(reservationBound(ask('openai', undefined, chat('x', { max_tokens: 10 }))))).toBe('price_unknown');
  });

  it('refuses absurd or malformed limits as invalid_request', () => {
    for (const extra of [{ max_tokens: 1e300 }, { max_tokens: 1.5 }, { max_tokens: -1 }, { max_tokens: '100' }, { max_completion_tokens: 2e9 }, { n: 0 }, { n: 129 }, { n: 2.5 }, { best_of: 1e9 }]) {
      expect(code(reservationBound(ask('openai', 'gpt-4o-mini', chat('gpt-4o-mini', extra)))), JSON.stringify(extra)).toBe('invalid_request');
    }
    expect(code(reservationBound(ask('gemini-native', 'gemini-2.5-flash', { contents: [], generationConfig: { candidateCount: 1000 } })))).toBe('invalid_request');
    // The same protobuf field under both of its JSON names: which one the upstream reads is not ours to guess.
    expect(code(reservationBound(ask('gemini-native', 'gemini-2.5-flash', { contents: [], generationConfig: { maxOutputTokens: 10, max_output_tokens: 100_000 } })))).toBe('invalid_request');
    expect(code(reservationBound(ask('gemini-native', 'gemini-2.5-flash', { contents: [], generationConfig: { maxOutputTokens: 10 }, generation_config: {} })))).toBe('invalid_request');
  });

  it('refuses inputs referenced by id or URL: the gateway cannot see them', () => {
    const cases: Array<[string, string, Record<string, unknown>]> = [
      ['openai', 'gpt-5.4', { model: 'gpt-5.4', input: 'go on', previous_response_id: 'resp_123', max_output_tokens: 10 }],
      ['openai', 'gpt-5.4', { model: 'gpt-5.4', input: 'go on', conversation: 'conv_123', max_output_tokens: 10 }],
      ['openai', 'gpt-5.4', { model: 'gpt-5.4', input: [{ role: 'user', content: [{ type: 'input_file', file_id: 'file-1' }] }], max_output_tokens: 10 }],
      ['openai', 'gpt-4o', chat('gpt-4o', { max_tokens: 10, messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'https://example.com/cat.png' } }] }] })],
      ['openai', 'gpt-4o', chat('gpt-4o', { max_tokens: 10, messages: [{ role: 'user', content: [{ type: 'file', file: { file_id: 'file-1' } }] }] })],
      ['anthropic', 'claude-sonnet-4-5', chat('claude-sonnet-4-5', { max_tokens: 10, messages: [{ role: 'user', content: [{ type: 'image', source: { type: 'url', url: 'https://example.com/cat.png' } }] }] })],
      ['gemini-native', 'gemini-2.5-flash', { contents: [{ parts: [{ fileData: { fileUri: 'https://generativelanguage.googleapis.com/v1beta/files/x' } }] }], generationConfig: { maxOutputTokens: 10 } }],
      ['gemini-native', 'gemini-2.5-flash', { contents: [], cachedContent: 'cachedContents/abc', generationConfig: { maxOutputTokens: 10 } }],
      ['openai', 'gpt-4o-audio-preview', chat('gpt-4o-audio-preview', { max_tokens: 10, messages: [{ role: 'assistant', audio: { id: 'audio_abc' } }, { role: 'user', content: 'and then?' }] })],
    ];
    for (const [provider, model, json] of cases) {
      const b = reservationBound(ask(provider, model, json));
      expect(code(b), JSON.stringify(json)).toBe('price_unknown');
      expect(!b.ok && b.message).toMatch(/cannot see/);
    }
  });

  it('refuses hosted tools billed per call, naming the tool', () => {
    const cases: Array<[string, string, Record<string, unknown>, string]> = [
      ['openai', 'gpt-5.4', { model: 'gpt-5.4', input: 'news?', tools: [{ type: 'web_search' }], max_output_tokens: 10 }, 'web_search'],
      ['openai', 'gpt-5.4', { model: 'gpt-5.4', input: 'run', tools: [{ type: 'code_interpreter', container: { type: 'auto' } }], max_output_tokens: 10 }, 'code_interpreter'],
      ['openai', 'gpt-5.4', { model: 'gpt-5.4', input: 'draw', tools: [{ type: 'image_generation' }], max_output_tokens: 10 }, 'image_generation'],
      ['openai', 'gpt-5.4', { model: 'gpt-5.4', input: 'ls', tools: [{ type: 'shell', environment: { type: 'container_auto' } }], max_output_tokens: 10 }, 'shell'],
      ['openai', 'gpt-4o', chat('gpt-4o', { max_tokens: 10, web_search_options: {} }), 'web_search_options'],
      ['anthropic', 'claude-sonnet-4-5', chat('claude-sonnet-4-5', { max_tokens: 10, tools: [{ type: 'web_search_20250305', name: 'web_search' }] }), 'web_search_20250305'],
      ['gemini-native', 'gemini-2.5-flash', { contents: [], tools: [{ googleSearch: {} }], generationConfig: { maxOutputTokens: 10 } }, 'googleSearch'],
    ];
    for (const [provider, model, json, tool] of cases) {
      const b = reservationBound(ask(provider, model, json));
      expect(code(b), tool).toBe('price_unknown');
      expect(!b.ok && b.message).toContain(tool);
    }
  });

  it('bounds client-executed tools, adding an allowance per tool definition for the prompt tokens providers add', () => {
    const plain = okMicros(reservationBound(ask('anthropic', 'claude-sonnet-4-5', chat('claude-sonnet-4-5', { max_tokens: 10 }))));
    const tools = [{ name: 'get_weather', input_schema: { type: 'object' } }, { type: 'bash_20250124', name: 'bash' }];
    const withTools = reservationBound(ask('anthropic', 'claude-sonnet-4-5', chat('claude-sonnet-4-5', { max_tokens: 10, tools })));
    expect(okMicros(withTools)).toBeGreaterThan(plain);
    const fn = reservationBound(ask('openai', 'gpt-5.4', { model: 'gpt-5.4', input: 'x', max_output_tokens: 10, tools: [{ type: 'function', name: 'f', parameters: { type: 'object', properties: { file_id: { type: 'string' } } } }] }));
    expect(code(fn)).toBe('ok');
  });

  it('counts each inline image at its worst token cost, not its bytes, and refuses inline PDFs and video', () => {
    const image = okMicros(reservationBound(ask('openai', 'gpt-4o-mini', chat('gpt-4o-mini', { max_tokens: 10, messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'data:image/png;base64,iVBORw0KGgo=' } }] }] }))));
    // gpt-4o-mini bills a high-detail image as up to 48,169 tokens at $0.15 per M.
    expect(image).toBeGreaterThanOrEqual(48_169 * 0.15);
    const pdf = reservationBound(ask('openai', 'gpt-4o', chat('gpt-4o', { max_tokens: 10, messages: [{ role: 'user', content: [{ type: 'file', file: { filename: 'a.pdf', file_data: 'data:application/pdf;base64,JVBERi0=' } }] }] })));
    expect(code(pdf)).toBe('price_unknown');
    const video = reservationBound(ask('gemini-native', 'gemini-2.5-flash', { contents: [{ parts: [{ inlineData: { mimeType: 'video/mp4', data: 'AAAA' } }] }], generationConfig: { maxOutputTokens: 10 } }));
    expect(code(video)).toBe('price_unknown');
  });

  it('prices embeddings on input only: every byte a token at the highest input rate', () => {
    const json = { model: 'text-embedding-3-large', input: ['hello', 'world'] };
    const bytes = Buffer.byteLength(JSON.stringify(json));
    const b = okMicros(reservationBound(ask('openai', 'text-embedding-3-large', json, { unit: 'input_tokens' })));
    expect(b).toBeGreaterThanOrEqual(bytes * 0.13);
    expect(b).toBeGreaterThanOrEqual(priceUsage('openai', 'text-embedding-3-large', { inputTokens: bytes, outputTokens: 0 })!);
  });
});

describe('reservationBound: other units', () => {
  it('costs nothing for free and request-counted endpoints', () => {
    expect(reservationBound(ask('openai', undefined, undefined, { unit: 'free' }))).toEqual({ ok: true, micros: 0 });
    expect(reservationBound(ask('any', undefined, undefined, { unit: 'request' }))).toEqual({ ok: true, micros: 0 });
  });

  it('refuses batches and fine-tuning jobs: the provider bills them later', () => {
    const b = reservationBound(ask('openai', 'gpt-4o-mini', { input_file_id: 'file-1' }, { unit: 'unbounded' }));
    expect(code(b)).toBe('price_unknown');
    expect(!b.ok && b.message).toMatch(/spend cap cannot start them/);
  });

  it('prices DALL·E per image at the highest size and quality the request leaves open', () => {
    const image: PriceRule = { unit: 'image' };
    // dall-e-3: $0.04 standard / $0.08 hd at 1024², $0.08 / $0.12 at 1792×1024.
    expect(okMicros(reservationBound(ask('openai', 'dall-e-3', { prompt: 'a cat', size: '1024x1024', quality: 'standard' }, image)))).toBeGreaterThanOrEqual(40_000);
    expect(okMicros(reservationBound(ask('openai', 'dall-e-3', { prompt: 'a cat', size: '1024x1024' }, image)))).toBeGreaterThanOrEqual(80_000);
    expect(okMicros(reservationBound(ask('openai', 'dall-e-3', { prompt: 'a cat' }, image)))).toBeGreaterThanOrEqual(120_000);
    // dall-e-2: $0.02 at 1024², times n.
    expect(okMicros(reservationBound(ask('openai', 'dall-e-2', { prompt: 'a cat', n: 5 }, image)))).toBeGreaterThanOrEqual(5 * 20_000);
    expect(code(reservationBound(ask('openai', 'dall-e-2', { prompt: 'a cat', n: 500 }, image)))).toBe('invalid_request');
    expect(code(reservationBound(ask('openai', 'no-such-image-model', { prompt: 'a cat' }, image)))).toBe('price_unknown');
    // Names that exist on Object.prototype are not table entries.
    expect(code(reservationBound(ask('openai', 'constructor', { prompt: 'a cat' }, image)))).toBe('price_unknown');
    expect(okMicros(reservationBound(ask('openai', 'dall-e-3', { prompt: 'a cat', size: 'constructor', quality: 'toString' }, image)))).toBeGreaterThanOrEqual(120_000);
  });

  it('bounds gpt-image output-image tokens at the highest size and quality, and edits by their input images', () => {
    const image: PriceRule = { unit: 'image' };
    // gpt-image-1: 6,240 output tokens for a high-quality 1024×1536 image at $40 per M = $0.2496.
    const two = okMicros(reservationBound(ask('openai', 'gpt-image-1', { prompt: 'a cat', n: 2 }, image)));
    expect(two).toBeGreaterThanOrEqual(2 * 6240 * 40);
    const low = okMicros(reservationBound(ask('openai', 'gpt-image-1', { prompt: 'a cat', size: '1024x1024', quality: 'low' }, image)));
    expect(low).toBeLessThan(two / 2);
    const edit = reservationBound({ provider: 'openai', model: 'gpt-image-1', rule: image, json: undefined, bodyBytes: 200_000, fields: new Map([['prompt', 'add a hat'], ['n', '1']]) });
    expect(okMicros(edit)).toBeGreaterThan(low);
    // Knowing the edit sends one image (instead of the API's maximum of 16 plus a mask) lowers the bound.
    const oneImage = reservationBound({ provider: 'openai', model: 'gpt-image-1', rule: image, json: undefined, bodyBytes: 200_000, fields: new Map([['prompt', 'add a hat']]), fileParts: 1 });
    expect(okMicros(oneImage)).toBeLessThan(okMicros(edit));
    expect(okMicros(oneImage)).toBeGreaterThanOrEqual(65_536 * 10 + 6240 * 40);
    expect(code(reservationBound({ provider: 'openai', model: 'gpt-image-1', rule: image, json: undefined, bodyBytes: 1000, fields: new Map([['n', 'many']]) }))).toBe('invalid_request');
  });

  it('bounds transcription from the upload size at 6 kbit/s, per minute or per token', () => {
    const audio: PriceRule = { unit: 'audio_seconds' };
    // whisper-1: $0.006 per minute; 750,000 bytes at 750 B/s = 1,000 s = $0.10.
    const whisper = okMicros(reservationBound({ provider: 'openai', model: 'whisper-1', rule: audio, json: undefined, bodyBytes: 750_000, fields: new Map([['model', 'whisper-1']]) }));
    expect(whisper).toBeGreaterThanOrEqual(100_000);
    const tokens = reservationBound({ provider: 'openai', model: 'gpt-4o-transcribe', rule: audio, json: undefined, bodyBytes: 750_000, fields: new Map([['model', 'gpt-4o-transcribe']]) });
    // 1,000 s × 32 audio tokens/s at $6 per M, plus the 16,000-token context as output at $10 per M.
    expect(okMicros(tokens)).toBeGreaterThanOrEqual(1000 * 32 * 6 + 16_000 * 10);
    expect(code(reservationBound({ provider: 'openai', model: 'no-such-asr', rule: audio, json: undefined, bodyBytes: 1000 }))).toBe('price_unknown');
  });

  it('prices speech per input character, counting UTF-8 bytes, and bounds token-priced TTS from the input', () => {
    const speech: PriceRule = { unit: 'characters' };
    // tts-1: $15 per M characters; "héllo 👋" is 7 UTF-16 units but 11 UTF-8 bytes.
    const b = okMicros(reservationBound(ask('openai', 'tts-1', { model: 'tts-1', input: 'héllo 👋', voice: 'alloy' }, speech)));
    expect(b).toBeGreaterThanOrEqual(11 * 15);
    const mini = (speed?: number) => okMicros(reservationBound(ask('openai', 'gpt-4o-mini-tts', { model: 'gpt-4o-mini-tts', input: 'hello world', voice: 'alloy', ...(speed ? { speed } : {}) }, speech)));
    expect(mini(0.25)).toBeGreaterThan(mini());
    expect(code(reservationBound(ask('openai', 'tts-1', { model: 'tts-1', voice: 'alloy' }, speech)))).toBe('invalid_request');
  });
});

describe('reservationBound on arbitrary input', () => {
  it('never throws, and answers a safe non-negative integer or a coded refusal with a reason', () => {
    const units: PriceRule['unit'][] = ['tokens', 'input_tokens', 'image', 'audio_seconds', 'characters', 'free', 'unbounded', 'request'];
    fc.assert(
      fc.property(
        fc.constantFrom('openai', 'anthropic', 'gemini-native', 'groq', 'azure', 'nope'),
        fc.option(fc.constantFrom('gpt-4o-mini', 'gpt-5.4', 'claude-sonnet-4-5', 'gemini-2.5-flash', 'dall-e-3', 'gpt-image-1', 'whisper-1', 'tts-1', 'gpt-4o-mini-tts', 'unknown-model'), { nil: undefined }),
        fc.constantFrom(...units),
        fc.dictionary(fc.constantFrom('messages', 'input', 'prompt', 'n', 'best_of', 'max_tokens', 'max_output_tokens', 'max_completion_tokens', 'size', 'quality', 'speed', 'tools', 'generationConfig', 'service_tier'), fc.jsonValue({ maxDepth: 3 })),
        fc.oneof(fc.integer({ min: 0, max: 1e9 }), fc.constantFrom(Number.NaN, -1, Number.POSITIVE_INFINITY, 1e300)),
        (provider, model, unit, json, bodyBytes) => {
          const b = reservationBound({ provider, model, rule: { unit }, json: json as Record<string, unknown>, bodyBytes });
          if (b.ok) expect(Number.isSafeInteger(b.micros) && b.micros >= 0).toBe(true);
          else {
            expect(['price_unknown', 'invalid_request']).toContain(b.code);
            expect(b.message.length).toBeGreaterThan(0);
          }
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe('settledCost', () => {
  const usage: TokenUsage = { inputTokens: 1000, outputTokens: 500 };
  const priced = priceUsage('openai', 'gpt-4o-mini', usage)!;

  it('charges a complete answer its usage', () => {
    expect(settledCost({ provider: 'openai', model: 'gpt-4o-mini', usage, complete: true, boundMicros: 1_000_000 })).toBe(priced);
  });

  it('charges an incomplete answer the bound, never less than the usage seen', () => {
    expect(settledCost({ provider: 'openai', model: 'gpt-4o-mini', usage, complete: false, boundMicros: 1_000_000 })).toBe(1_000_000);
    expect(settledCost({ provider: 'openai', model: 'gpt-4o-mini', usage: undefined, complete: true, boundMicros: 777 })).toBe(777);
    expect(settledCost({ provider: 'openai', model: 'gpt-4o-mini', usage, complete: false, boundMicros: 1 })).toBe(priced);
  });

  it('charges a transcription priced by duration for its seconds', () => {
    // whisper-1: $0.006 per minute.
    expect(settledCost({ provider: 'openai', model: 'whisper-1', usage: { inputTokens: 0, outputTokens: 0, audioSeconds: 60 }, complete: true, boundMicros: 100_000 })).toBe(6000);
  });

  it('without a bound, charges whatever partial usage there is, else nothing', () => {
    expect(settledCost({ provider: 'openai', model: 'gpt-4o-mini', usage, complete: false, boundMicros: null })).toBe(priced);
    expect(settledCost({ provider: 'openai', model: undefined, usage, complete: false, boundMicros: null })).toBe(0);
    expect(settledCost({ provider: 'openai', model: 'no-such-model-xyz', usage, complete: true, boundMicros: null })).toBe(0);
    expect(settledCost({ provider: 'openai', model: 'gpt-4o-mini', usage: { inputTokens: -5, outputTokens: Number.NaN }, complete: true, boundMicros: null })).toBe(0);
  });
});
