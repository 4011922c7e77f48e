import { calcPrice } from '@pydantic/genai-prices';
import { describe, expect, it } from 'vitest';
import { maxCostMicros, MICROS, priceUsage } from './pricing.ts';

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
    const bound = maxCostMicros('openai', 'gpt-4o-mini', 200, 100)!;
    expect(bound).toBeGreaterThan(priceUsage('openai', 'gpt-4o-mini', { inputTokens: 100, outputTokens: 100 })!);
  });
});
