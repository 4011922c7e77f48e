/**
 * Prices from `@pydantic/genai-prices` (bundled data, works offline; operators update it by
 * upgrading the package — `npm update @pydantic/genai-prices` — and restarting). Money is kept in
 * integer micro-dollars everywhere so counters add up exactly.
 */
import { calcPrice, findProvider, type PriceOptions, type Provider } from '@pydantic/genai-prices';
import { providerSpec } from '../protocol/index.ts';

export const MICROS = 1_000_000;

export interface TokenUsage {
  inputTokens: number;
  outputTokens: number;
  cacheReadTokens?: number;
  cacheWriteTokens?: number;
}

/** genai-prices knows providers by its own ids (ProviderSpec.priceProvider). */
const priceProviderOf = (provider: string) => providerSpec(provider)?.priceProvider ?? provider;

/** The price data's provider entry, found once per provider (calcPrice would search it every call). */
const providerCache = new Map<string, Provider | undefined>();
function priceOptions(provider: string): PriceOptions {
  const id = priceProviderOf(provider);
  if (!providerCache.has(id)) providerCache.set(id, findProvider({ providerId: id }));
  const found = providerCache.get(id);
  return found ? { provider: found } : { providerId: id };
}

const rateCache = new Map<string, { input: number; output: number } | null>();

/**
 * Once a model has been priced, later calls search only its entry: the provider as the price data
 * has it, narrowed to the one matched model (calcPrice would otherwise match the model name
 * against every model of the provider on every request). Same data, same result.
 */
const modelCache = new Map<string, Provider>();

/** Cost of `usage` in micro-dollars, or null when the model has no known price. */
export function priceUsage(provider: string, model: string, usage: TokenUsage): number | null {
  const cacheKey = `${priceProviderOf(provider)}\0${model}`;
  const narrowed = modelCache.get(cacheKey);
  const result = calcPrice(
    {
      input_tokens: usage.inputTokens + (usage.cacheReadTokens ?? 0) + (usage.cacheWriteTokens ?? 0),
      output_tokens: usage.outputTokens,
      ...(usage.cacheReadTokens ? { cache_read_tokens: usage.cacheReadTokens } : {}),
      ...(usage.cacheWriteTokens ? { cache_write_tokens: usage.cacheWriteTokens } : {}),
    },
    model,
    narrowed ? { provider: narrowed } : priceOptions(provider),
  );
  if (result && !narrowed && modelCache.size < 10_000) modelCache.set(cacheKey, { ...result.provider, models: [result.model] });
  return result ? Math.ceil(result.total_price * MICROS) : null;
}

/** Per-token prices (micro-dollars per token), cached: used for upper-bound reservations. */
export function tokenRates(provider: string, model: string): { input: number; output: number } | null {
  const id = `${provider}\0${model}`;
  if (!rateCache.has(id)) {
    const input = calcPrice({ input_tokens: 1_000_000, output_tokens: 0 }, model, priceOptions(provider));
    const output = calcPrice({ input_tokens: 0, output_tokens: 1_000_000 }, model, priceOptions(provider));
    rateCache.set(id, input && output ? { input: input.total_price, output: output.total_price } : null);
  }
  return rateCache.get(id)!;
}

/** Default ceiling on output when a request names no max_tokens (tokens). */
export const DEFAULT_MAX_OUTPUT_TOKENS = 16_384;

/**
 * Upper bound for one request: input estimated from the body (≤ 1 token per byte… divided by 2 to
 * stay realistic for UTF-8 text while still over-estimating typical 4 bytes/token), plus the
 * requested (or default) maximum output, at the model's prices.
 */
export function maxCostMicros(provider: string, model: string, bodyBytes: number, maxOutputTokens: number | undefined): number | null {
  const rates = tokenRates(provider, model);
  if (!rates) return null;
  const inputTokens = Math.ceil(bodyBytes / 2);
  const output = maxOutputTokens ?? DEFAULT_MAX_OUTPUT_TOKENS;
  return Math.ceil(inputTokens * rates.input + output * rates.output) + 1;
}

/** Reads the request's output ceiling from the fields the providers use. */
export function requestedMaxOutput(body: Record<string, unknown> | undefined): number | undefined {
  for (const field of ['max_completion_tokens', 'max_tokens', 'max_output_tokens']) {
    const v = body?.[field];
    if (typeof v === 'number' && Number.isInteger(v) && v > 0) return v;
  }
  return undefined;
}

export function dollarsToMicros(value: number | string): number {
  const n = typeof value === 'string' ? Number(value.replace(/^\$/, '')) : value;
  if (!Number.isFinite(n) || n < 0 || n > 1e9) throw new Error(`not a dollar amount: ${value}`);
  return Math.round(n * MICROS);
}
