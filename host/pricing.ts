/**
 * Prices from `@pydantic/genai-prices` (bundled data, works offline; operators update it by
 * upgrading the package — `npm update @pydantic/genai-prices` — and restarting), plus the tables
 * in `price-tables.ts` for what that data lacks. Money is kept in integer micro-dollars
 * everywhere so counters add up exactly.
 *
 * Two questions are answered here, both pure functions of their arguments and the price data:
 * - `reservationBound`: before a request is forwarded, the most it can cost — a true upper bound
 *   over everything the request allows (every byte a token, `n` × the maximum output, the highest
 *   tier and rate the model has). Anything the gateway cannot bound is `price_unknown`, never a
 *   guess: a capped key refuses it.
 * - `settledCost`: afterwards, what to charge — the usage when the answer reported it in full, the
 *   bound otherwise.
 *
 * Known gaps of the bound, each documented where it is made (price-tables.ts): audio length is
 * bounded from bytes at Opus's lowest nominal bitrate (DTX silence or container timestamps could
 * undercut it); token-priced TTS from a seconds-per-character margin; provider-added prompt
 * tokens and per-image tokens from published figures with headroom; a project whose default
 * service tier is Priority is billed above Standard without the request saying so.
 *
 * Never logs or returns request content.
 */
import { calcPrice, findProvider, type ModelInfo, type ModelPrice, type PriceOptions, type Provider, type TieredPrices } from '@pydantic/genai-prices';
import { providerHostData, type PriceRule } from '../protocol/index.ts';
import {
  AUDIO_TOKENS_PER_SECOND,
  GPT_IMAGE_OUTPUT_TOKENS,
  GPT_IMAGE_PARTIAL_IMAGE_TOKENS,
  IMAGE_PRICES,
  MAX_EDIT_INPUT_IMAGES,
  MAX_TOKENS_PER_INPUT_IMAGE,
  MIN_AUDIO_BYTES_PER_SECOND,
  MIN_BILLED_AUDIO_SECONDS,
  PROMPT_OVERHEAD_TOKENS,
  PROMPT_OVERHEAD_TOKENS_PER_TOOL,
  PRIORITY_TIER_FACTOR,
  TTS_MIN_SPEED,
  TTS_PRICE_PER_CHARACTER,
  TTS_SECONDS_PER_CHARACTER,
} from './price-tables.ts';

export const MICROS = 1_000_000;

export interface TokenUsage {
  inputTokens: number;
  outputTokens: number;
  cacheReadTokens?: number;
  cacheWriteTokens?: number;
  /** Seconds of audio, for models priced by duration (whisper-1: a transcription's `duration`). */
  audioSeconds?: number;
}

/** genai-prices knows providers by its own ids (ProviderHostData.priceProvider). */
const priceProviderOf = (provider: string) => providerHostData(provider)?.priceProvider ?? provider;

/** The price data's provider entry, found once per provider (calcPrice would search it every call). */
const providerCache = new Map<string, Provider | undefined>();
function priceOptions(provider: string): PriceOptions {
  const id = priceProviderOf(provider);
  if (!providerCache.has(id)) providerCache.set(id, findProvider({ providerId: id }));
  const found = providerCache.get(id);
  return found ? { provider: found } : { providerId: id };
}

/** A model's total price in dollars for a usage, or undefined for a usage it leaves to calcPrice. */
type FlatPrice = (usage: TokenUsage) => number | undefined;

/** What a flat price multiplies: calcPrice's usage for the key, less what more specific priced keys take. */
type Quantity = 'uncachedInput' | 'cacheRead' | 'cacheWrite' | 'output' | 'inputAudio' | 'otherAudio' | 'request';

/**
 * The price keys flatPrice computes, as genai-prices' unit registry (dist/index.js) defines them:
 * the divisor (`per`) and which of calcPrice's three sums the cost goes to (by the unit's
 * direction; audio_hours and requests_kcount have none).
 */
const FLAT_KEYS: Readonly<Record<string, { quantity: Quantity; per: number; sum: 'input' | 'output' | 'other' }>> = {
  input_mtok: { quantity: 'uncachedInput', per: 1e6, sum: 'input' },
  cache_read_mtok: { quantity: 'cacheRead', per: 1e6, sum: 'input' },
  cache_write_mtok: { quantity: 'cacheWrite', per: 1e6, sum: 'input' },
  output_mtok: { quantity: 'output', per: 1e6, sum: 'output' },
  input_audio_hours: { quantity: 'inputAudio', per: 3600, sum: 'input' },
  audio_hours: { quantity: 'otherAudio', per: 3600, sum: 'other' },
  requests_kcount: { quantity: 'request', per: 1000, sum: 'other' },
};

/**
 * Registered price keys for usage priceUsage never reports. None is an ancestor of a reported
 * unit, so calcPrice multiplies each by 0 and subtracts 0 from its ancestors: they change nothing.
 */
const UNREPORTED_KEYS = new Set([
  'cache_write_1h_mtok', 'input_audio_mtok', 'output_audio_mtok', 'cache_audio_read_mtok', 'input_image_mtok', 'cache_image_read_mtok',
  'output_image_mtok', 'input_video_mtok', 'output_video_mtok', 'output_reasoning_mtok', 'output_citation_mtok',
  'web_searches_kcount', 'storage_searches_kcount', 'input_document_kpages', 'input_annotated_document_kpages', 'input_text_messages_kcount',
]);

/** A usage count calcPrice accepts without throwing: a finite, non-negative number. */
const isCount = (v: unknown): v is number => typeof v === 'number' && v >= 0 && v < Infinity;

/**
 * calcPrice's arithmetic for a model whose price is one plain number per key (no tiers, no start
 * dates or hours), compiled once so a request costs no allocation: for each key in the price
 * object's order, price × quantity ÷ per, added into the input, output or other sum, and
 * input + output + other — the same operations in the same order (genai-prices 0.1.8,
 * dist/index.js `he`, `ne`, `_e`), so the same double. Undefined (calcPrice prices it) for
 * anything else: tiers, prices by date or time of day, keys not listed above, and Groq's Whisper
 * models, which calcPrice bills for at least 10 seconds.
 *
 * Only for a model calcPrice has already priced: its checks of a price's shape (ancestor and join
 * keys present) do not depend on the usage, so a model that passed them once always does. For a
 * usage calcPrice would reject (negative, NaN, not a number), the function answers undefined.
 */
export function flatPrice(providerId: string, model: ModelInfo): FlatPrice | undefined {
  if (Array.isArray(model.prices)) return undefined;
  if (providerId === 'groq' && (model.id === 'whisper-large-v3' || model.id === 'whisper-large-v3-turbo')) return undefined;
  const terms: Array<{ price: number; quantity: Quantity; per: number; sum: 'input' | 'output' | 'other' }> = [];
  for (const [key, price] of Object.entries(model.prices)) {
    if (price === undefined) continue;
    if (typeof price !== 'number') return undefined;
    if (UNREPORTED_KEYS.has(key)) continue;
    const unit = Object.hasOwn(FLAT_KEYS, key) ? FLAT_KEYS[key] : undefined;
    if (!unit) return undefined;
    terms.push({ price, ...unit });
  }
  const priced = (quantity: Quantity) => terms.some((t) => t.quantity === quantity);
  const readPriced = priced('cacheRead');
  const writePriced = priced('cacheWrite');
  const inputAudioPriced = priced('inputAudio');

  return (usage) => {
    const { inputTokens, outputTokens, cacheReadTokens, cacheWriteTokens, audioSeconds } = usage;
    // priceUsage's input_tokens, and its other fields only when truthy (absent counts as 0).
    const input = inputTokens + (cacheReadTokens ?? 0) + (cacheWriteTokens ?? 0);
    // Anything but counts goes to calcPrice, to be rejected as calcPrice rejects it. (A negative
    // inputTokens that the cache tokens outweigh passes its input_tokens check but not its leaves.)
    const counts = isCount(inputTokens) && isCount(input) && isCount(outputTokens);
    if (!counts || !isCount(cacheReadTokens ?? 0) || !isCount(cacheWriteTokens ?? 0) || !isCount(audioSeconds ?? 0)) return undefined;
    const read = cacheReadTokens || 0;
    const write = cacheWriteTokens || 0;
    const audio = audioSeconds || 0;
    // calcPrice's leaf values (`ne`): a unit's usage less the leaves of the more specific units
    // the model prices, summed in its order (cache_read before cache_write). With non-negative
    // counts none is negative, so its tolerance and its error never apply.
    let cached = 0;
    if (readPriced) cached += read;
    if (writePriced) cached += write;
    let inputSum = 0;
    let outputSum = 0;
    let otherSum = 0;
    for (const t of terms) {
      let quantity: number;
      switch (t.quantity) {
        case 'uncachedInput': quantity = input - cached; break;
        case 'cacheRead': quantity = read; break;
        case 'cacheWrite': quantity = write; break;
        case 'output': quantity = outputTokens; break;
        case 'inputAudio': quantity = audio; break;
        // priceUsage reports the same seconds as audio and as input audio.
        case 'otherAudio': quantity = audio - (inputAudioPriced ? audio : 0); break;
        case 'request': quantity = 1; break;
      }
      const cost = (t.price * quantity) / t.per;
      if (t.sum === 'input') inputSum += cost;
      else if (t.sum === 'output') outputSum += cost;
      else otherSum += cost;
    }
    return inputSum + outputSum + otherSum;
  };
}

/** What priceUsage keeps of a model once calcPrice has found it. */
interface PricedModel {
  /**
   * The provider as the price data has it, narrowed to the matched model, so calcPrice matches
   * the model name against one model instead of all the provider's. Same data, same result.
   */
  provider: Provider;
  flat: FlatPrice | undefined;
}
/** By price provider id, then by the model name requests give (no key to build on every call). */
const modelCache = new Map<string, Map<string, PricedModel>>();
let cachedModels = 0;

/** Cost of `usage` in micro-dollars, or null when the model has no known price. */
export function priceUsage(provider: string, model: string, usage: TokenUsage): number | null {
  const priceProvider = priceProviderOf(provider);
  const known = modelCache.get(priceProvider)?.get(model);
  const flat = known?.flat?.(usage);
  if (flat !== undefined) return Math.ceil(flat * MICROS);
  const result = calcPrice(
    {
      input_tokens: usage.inputTokens + (usage.cacheReadTokens ?? 0) + (usage.cacheWriteTokens ?? 0),
      output_tokens: usage.outputTokens,
      ...(usage.cacheReadTokens ? { cache_read_tokens: usage.cacheReadTokens } : {}),
      ...(usage.cacheWriteTokens ? { cache_write_tokens: usage.cacheWriteTokens } : {}),
      ...(usage.audioSeconds ? { audio_seconds: usage.audioSeconds, input_audio_seconds: usage.audioSeconds } : {}),
    },
    model,
    known ? { provider: known.provider } : priceOptions(provider),
  );
  if (result && !known && cachedModels < 10_000) {
    const models = modelCache.get(priceProvider) ?? new Map<string, PricedModel>();
    models.set(model, { provider: { ...result.provider, models: [result.model] }, flat: flatPrice(result.provider.id, result.model) });
    modelCache.set(priceProvider, models);
    cachedModels++;
  }
  return result ? Math.ceil(result.total_price * MICROS) : null;
}

const rateCache = new Map<string, { input: number; output: number } | null>();

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

export function dollarsToMicros(value: number | string): number {
  const n = typeof value === 'string' ? Number(value.replace(/^\$/, '')) : value;
  if (!Number.isFinite(n) || n < 0 || n > 1e9) throw new Error(`not a dollar amount: ${value}`);
  return Math.round(n * MICROS);
}

// ─── Reservation bounds ─────────────────────────────────────────────────────────────────────────

/** What the reservation needs to know about a classified request. */
export interface BoundQuestion {
  /** Connection provider id (openai, anthropic, azure, gemini, gemini-native, groq, …). */
  provider: string;
  /** The resolved model (after alias resolution); undefined when the endpoint names none. */
  model: string | undefined;
  /** From the endpoint row. */
  rule: PriceRule;
  /** The parsed, validated JSON body (numbers are finite JS numbers). */
  json: Record<string, unknown> | undefined;
  /** Request body size in bytes (JSON, multipart or declared upload length). */
  bodyBytes: number;
  /** Non-file multipart fields (audio, image edits). */
  fields?: Map<string, string>;
  /**
   * File parts in a multipart body (an image edit's images and mask). Each input image is priced
   * at its worst token cost; when absent, the API's maximum (MAX_EDIT_INPUT_IMAGES) is assumed.
   */
  fileParts?: number;
}

export type Bound =
  /**
   * `hint`, when present, says how the client can lower the amount (the request named no output
   * ceiling, so the model's maximum is held): for a budget refusal's message.
   */
  | { ok: true; micros: number; hint?: string }
  | { ok: false; code: 'price_unknown' | 'invalid_request'; message: string };

/** Largest token count a request may name; anything above is refused as absurd, not priced. */
export const MAX_REQUEST_TOKENS = 1_000_000_000;
/** Largest `n` / `best_of` / `candidateCount` a request may name. */
export const MAX_CHOICES = 128;

const SET_MAX_TOKENS = 'Set max_tokens (max_completion_tokens, max_output_tokens or generationConfig.maxOutputTokens, as the API names it) to have the request priced.';

const unknown = (message: string): Bound => ({ ok: false, code: 'price_unknown', message });
const invalid = (message: string): Bound => ({ ok: false, code: 'invalid_request', message });

/**
 * Micro-dollars, rounded up, with one micro of headroom so that float rounding on a different path
 * (priceUsage goes through genai-prices' own arithmetic) can never put the settled price above the
 * bound; clamped to Number.MAX_SAFE_INTEGER.
 */
function micros(x: number): Bound {
  if (Number.isNaN(x) || x < 0) return unknown('The price of this request could not be computed.');
  if (x === 0) return { ok: true, micros: 0 };
  return { ok: true, micros: Math.min(Math.ceil(x) + 1, Number.MAX_SAFE_INTEGER) };
}

/** The highest rates a model can charge, in micro-dollars (per token, per second, per request). */
interface WorstRates {
  /** Highest input-side token rate (input, cache writes and reads, audio/image/video input), top tier. */
  input: number;
  /** Highest output-side token rate (text, audio, image, reasoning output), top tier. */
  output: number;
  hasTokenPrices: boolean;
  /** The price data lists the model with no price at all (OpenRouter's `:free` models): it costs nothing. */
  free: boolean;
  /** Fixed fee per request (`requests_kcount`). */
  perRequest: number;
  /** Per second of audio (`audio_hours`, `input_audio_hours`), when the model is priced by duration. */
  perAudioSecond: number | undefined;
  contextWindow: number | undefined;
  /** Price keys no rule here can bound (document pages, characters, pixels, …). */
  unboundable: string[];
}

/**
 * Fees charged per call of a hosted tool (web search, file search, code execution). The tools
 * themselves are refused (`scanTools`), so these keys cannot be charged.
 */
const HOSTED_TOOL_KEYS = new Set(['web_searches_kcount', 'storage_searches_kcount', 'code_executions_kcount']);

/** The highest price of a flat or tiered price (tiers apply by input size; the top one is worst). */
function topTier(v: number | TieredPrices | undefined): number {
  if (typeof v === 'number') return v;
  if (!v) return 0;
  return Math.max(v.base, ...v.tiers.map((t) => t.price));
}

/**
 * Every price set of the model that can apply from `now` on. genai-prices picks a conditional
 * price by scanning from the last entry: a time-of-day window (peak hours) wins inside its
 * window; the first start-date entry already in the past, or an unconstrained one, wins otherwise
 * and hides every entry before it. A request may run across a window boundary, so all windows
 * count, and a future start date counts too.
 */
function reachablePrices(model: ModelInfo, now: Date): ModelPrice[] {
  if (!Array.isArray(model.prices)) return [model.prices];
  const out: ModelPrice[] = [];
  for (let i = model.prices.length - 1; i >= 0; i--) {
    const entry = model.prices[i]!;
    out.push(entry.prices);
    const c = entry.constraint;
    if (c === undefined || (c.type === 'start_date' && now >= new Date(c.start_date))) break;
  }
  return out;
}

function worstRatesOf(model: ModelInfo, now: Date): WorstRates {
  const rates: WorstRates = { input: 0, output: 0, hasTokenPrices: false, free: true, perRequest: 0, perAudioSecond: undefined, contextWindow: model.context_window, unboundable: [] };
  for (const prices of reachablePrices(model, now)) {
    for (const [key, value] of Object.entries(prices)) {
      if (value === undefined) continue;
      rates.free = false;
      const top = topTier(value);
      if (key.endsWith('_mtok')) {
        // Dollars per million tokens are micro-dollars per token.
        rates.hasTokenPrices = true;
        if (key.startsWith('output_')) rates.output = Math.max(rates.output, top);
        else rates.input = Math.max(rates.input, top);
      } else if (key === 'requests_kcount') {
        rates.perRequest = Math.max(rates.perRequest, (top * MICROS) / 1000);
      } else if (key === 'audio_hours' || key === 'input_audio_hours') {
        rates.perAudioSecond = Math.max(rates.perAudioSecond ?? 0, (top * MICROS) / 3600);
      } else if (!HOSTED_TOOL_KEYS.has(key) && top > 0 && !rates.unboundable.includes(key)) {
        rates.unboundable.push(key);
      }
    }
  }
  return rates;
}

/** The price data's entry for a model (the same match calcPrice makes, provider fallbacks included). */
function modelInfo(provider: string, model: string): ModelInfo | undefined {
  try {
    return calcPrice({ input_tokens: 0, output_tokens: 0 }, model, priceOptions(provider))?.model;
  } catch {
    return undefined;
  }
}

/** Cached per UTC day: a start date passing can only lower the worst rates, never raise them. */
const worstRateCache = new Map<string, WorstRates | null>();
let worstRateDay = -1;
const DAY_MS = 86_400_000;

function worstRates(provider: string, model: string): WorstRates | undefined {
  const now = Date.now();
  const day = Math.floor(now / DAY_MS);
  if (day !== worstRateDay) {
    worstRateCache.clear();
    worstRateDay = day;
  }
  const id = `${priceProviderOf(provider)}\0${model}`;
  let rates = worstRateCache.get(id);
  if (rates === undefined) {
    const info = modelInfo(provider, model);
    rates = info ? worstRatesOf(info, new Date(now)) : null;
    if (worstRateCache.size < 10_000) worstRateCache.set(id, rates);
  }
  return rates ?? undefined;
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** A token count the request names: absent/null → undefined; otherwise an integer 0..MAX_REQUEST_TOKENS. */
function tokenCount(v: unknown, name: string): number | undefined | Bound {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) return invalid(`${name} must be a non-negative integer.`);
  if (v > MAX_REQUEST_TOKENS) return invalid(`${name} (${v}) is larger than any model can produce; the gateway accepts at most ${MAX_REQUEST_TOKENS}.`);
  return v;
}

/** A choice count the request names: absent/null → undefined; otherwise an integer 1..MAX_CHOICES. */
function choiceCount(v: unknown, name: string): number | undefined | Bound {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > MAX_CHOICES) return invalid(`${name} must be an integer from 1 to ${MAX_CHOICES}.`);
  return v;
}

const isBound = (v: unknown): v is Bound => isObject(v) && typeof v.ok === 'boolean';

/** Gemini's native generation config, under either spelling the API accepts. */
function geminiConfigs(json: Record<string, unknown>): Record<string, unknown>[] {
  return [json.generationConfig, json.generation_config].filter(isObject);
}

/**
 * Protobuf JSON accepts a field under its camelCase and its snake_case name. A body that gives
 * one under both leaves it to the upstream parser which one wins, so it is refused rather than
 * guessed (no parser differential between what was priced and what runs).
 */
function doubleSpelling(json: Record<string, unknown>): Bound | undefined {
  const pairs: Array<[Record<string, unknown>, string, string]> = [[json, 'generationConfig', 'generation_config']];
  for (const c of geminiConfigs(json)) pairs.push([c, 'maxOutputTokens', 'max_output_tokens'], [c, 'candidateCount', 'candidate_count']);
  for (const [obj, camel, snake] of pairs) {
    if (obj[camel] !== undefined && obj[snake] !== undefined) return invalid(`${camel} and ${snake} are the same field; give it once.`);
  }
  return undefined;
}

/**
 * The output ceiling the upstream will apply: the fields the API in question reads. A field the
 * upstream ignores must never lower the bound (a Responses request with `max_tokens: 1` still
 * produces up to the model's maximum), so which fields count depends on the API's body shape;
 * every known field is still checked for sanity. Reasoning/thinking tokens are inside these
 * ceilings: OpenAI's max_completion_tokens/max_output_tokens include reasoning, Anthropic's
 * thinking budget must be below max_tokens, and Gemini's maxOutputTokens caps thoughts and answer
 * together (observed: googleapis/python-genai#2062).
 */
function outputCeiling(provider: string, json: Record<string, unknown>): number | undefined | Bound {
  const twice = doubleSpelling(json);
  if (twice) return twice;
  const read = new Map<string, number>();
  const check = (obj: Record<string, unknown>, fields: string[], prefix = '') => {
    for (const f of fields) {
      const v = tokenCount(obj[f], prefix + f);
      if (isBound(v)) return v;
      if (v !== undefined) read.set(prefix + f, v);
    }
    return undefined;
  };
  const bad = check(json, ['max_completion_tokens', 'max_tokens', 'max_output_tokens']);
  if (bad) return bad;
  for (const c of geminiConfigs(json)) {
    const b = check(c, ['maxOutputTokens', 'max_output_tokens'], 'generationConfig.');
    if (b) return b;
  }
  // Every API the body could be for: the bound takes the largest ceiling among them, and a
  // candidate that names none has the model's own maximum.
  const candidates: string[][] = [];
  if (provider === 'gemini-native') candidates.push(['generationConfig.maxOutputTokens', 'generationConfig.max_output_tokens']);
  else {
    if ('messages' in json) candidates.push(provider === 'anthropic' ? ['max_tokens'] : ['max_completion_tokens', 'max_tokens']);
    if ('input' in json) candidates.push(['max_output_tokens']);
    if (typeof json.prompt === 'string' || Array.isArray(json.prompt)) candidates.push(['max_tokens']);
  }
  if (candidates.length === 0) return undefined;
  let most = 0;
  for (const fields of candidates) {
    const values = fields.map((f) => read.get(f)).filter((v): v is number => v !== undefined);
    if (values.length === 0) return undefined;
    most = Math.max(most, ...values);
  }
  return most;
}

/** How many answers one request asks for: n, best_of (legacy completions), Gemini's candidateCount. */
function choicesOf(json: Record<string, unknown>): number | Bound {
  let most = 1;
  const sources: Array<[unknown, string]> = [[json.n, 'n'], [json.best_of, 'best_of']];
  for (const c of geminiConfigs(json)) sources.push([c.candidateCount, 'candidateCount'], [c.candidate_count, 'candidate_count']);
  for (const [v, name] of sources) {
    const n = choiceCount(v, name);
    if (isBound(n)) return n;
    if (n !== undefined) most = Math.max(most, n);
  }
  // Legacy completions take a list of prompts and answer each one n times.
  const prompt = json.prompt;
  if (Array.isArray(prompt) && prompt.length > 1 && prompt.every((p) => typeof p === 'string' || Array.isArray(p))) most *= prompt.length;
  return most;
}

/** What the content walk found that changes the bound. */
interface ContentScan {
  /** Inline images: each priced at MAX_TOKENS_PER_INPUT_IMAGE, whatever its bytes. */
  images: number;
  /** Tool definitions (each may add provider-side prompt tokens). */
  tools: number;
  /** Input referenced by id or URL that the host cannot see. */
  unseen?: string;
  /** Inline content that can cost more tokens than its bytes and has no per-item bound (PDF, video). */
  opaque?: string;
  /** A hosted tool the provider bills per call. */
  hosted?: string;
}

/** Keys whose string value is fetched by the provider unless it is a `data:` URL. */
const URL_KEYS = new Set(['image_url', 'url', 'file_url', 'video_url', 'audio_url', 'document_url', 'fileUri', 'file_uri', 'input_image_url']);
/** Keys that name stored input by id. */
const ID_KEYS = new Set(['file_id', 'previous_response_id', 'conversation', 'cachedContent', 'cached_content', 'container', 'vector_store_ids']);
/** Subtrees that are not content: schemas, metadata, citations of earlier answers. */
const SKIPPED_KEYS = new Set(['metadata', 'parameters', 'input_schema', 'schema', 'response_format', 'responseSchema', 'response_schema', 'responseJsonSchema', 'response_json_schema', 'annotations', 'tools', 'tool_choice']);
/** Top-level switches that turn on provider-run work billed per call. */
const HOSTED_SWITCHES = ['web_search_options', 'search_parameters', 'mcp_servers', 'plugins'];

/** Responses/chat tool types the client executes (billed as tokens only). */
const CLIENT_TOOL_TYPES = new Set(['function', 'custom', 'local_shell', 'apply_patch', 'computer', 'computer_use_preview', 'namespace']);
/** Anthropic-defined tools the client executes (bash_20250124, text_editor_20250728, computer_20250124, memory_20250818…). */
const ANTHROPIC_CLIENT_TOOL = /^(bash|text_editor|str_replace_editor|str_replace_based_edit_tool|computer|memory)_\d+$/;

function mediaKind(mime: string): 'image' | 'fine' | 'opaque' {
  const m = mime.trim().toLowerCase();
  if (m.startsWith('image/')) return 'image';
  // Audio is ≤ 32 tokens per second, far below the bytes any codec needs; text is bytes.
  if (m.startsWith('audio/') || m.startsWith('text/') || m === 'application/json') return 'fine';
  return 'opaque';
}

function classifyInline(scan: ContentScan, mime: string, where: string): void {
  const kind = mediaKind(mime);
  if (kind === 'image') scan.images++;
  else if (kind === 'opaque') scan.opaque ??= `${where} (${mime || 'no media type'})`;
}

function scanString(scan: ContentScan, key: string, s: string): void {
  if (s.charCodeAt(4) === 0x3a && /^data:/i.test(s)) {
    classifyInline(scan, s.slice(5).split(/[;,]/, 1)[0] ?? '', `an inline ${key}`);
    return;
  }
  if (URL_KEYS.has(key)) scan.unseen ??= `a URL the provider fetches, in ${key}`;
  else if (key === 'file_data') scan.opaque ??= 'an inline file without a media type';
}

function scanContent(json: Record<string, unknown>): ContentScan {
  const scan: ContentScan = { images: 0, tools: 0 };
  // Two parallel stacks (key, value): no allocation per node on the hot path.
  const keys: string[] = [''];
  const values: unknown[] = [json];
  while (values.length) {
    const key = keys.pop()!;
    const v = values.pop();
    if (typeof v === 'string') scanString(scan, key, v);
    else if (Array.isArray(v)) {
      for (const item of v) {
        keys.push(key);
        values.push(item);
      }
    } else if (isObject(v)) {
      if (v.type === 'item_reference') scan.unseen ??= 'an item_reference';
      // Anthropic content sources: base64 is inline; url and file are fetched by the provider.
      if (key === 'source' && (v.type === 'url' || v.type === 'file')) scan.unseen ??= `a ${v.type} source`;
      if (key === 'source' && v.type === 'base64' && typeof v.media_type === 'string') classifyInline(scan, v.media_type, 'an inline document');
      // Gemini inline parts.
      if ((key === 'inlineData' || key === 'inline_data') && isObject(v)) {
        const mime = v.mimeType ?? v.mime_type;
        classifyInline(scan, typeof mime === 'string' ? mime : '', 'inline data');
      }
      // Responses' reusable prompt template, stored upstream.
      if (key === 'prompt' && typeof v.id === 'string') scan.unseen ??= 'a stored prompt (prompt.id)';
      // Chat Completions: an assistant turn's audio named by the id of an earlier answer's audio.
      if (key === 'audio' && typeof v.id === 'string') scan.unseen ??= 'an earlier answer\'s audio (audio.id)';
      for (const k in v) {
        const child = v[k];
        if (SKIPPED_KEYS.has(k) || child === null || child === undefined) continue;
        if (ID_KEYS.has(k)) {
          scan.unseen ??= k;
          continue;
        }
        keys.push(k);
        values.push(child);
      }
    }
  }
  return scan;
}

/** Hosted (provider-run, per-call billed) tools among the request's tool definitions. */
function scanTools(provider: string, json: Record<string, unknown>, scan: ContentScan): void {
  for (const name of HOSTED_SWITCHES) if (json[name] !== undefined && json[name] !== null) scan.hosted ??= name;
  // Chat Completions' deprecated `functions` list adds the same prompt tokens as `tools`.
  if (Array.isArray(json.functions)) scan.tools += json.functions.length;
  const tools = json.tools;
  if (!Array.isArray(tools)) return;
  for (const t of tools) {
    if (!isObject(t)) continue;
    if (provider === 'gemini-native') {
      for (const [k, v] of Object.entries(t)) {
        if (k === 'functionDeclarations' || k === 'function_declarations') scan.tools += Array.isArray(v) ? v.length : 1;
        else scan.hosted ??= k;
      }
      continue;
    }
    scan.tools += t.type === 'namespace' && Array.isArray(t.tools) ? t.tools.length : 1;
    const type = t.type;
    if (type === undefined || (typeof type === 'string' && (CLIENT_TOOL_TYPES.has(type) || ANTHROPIC_CLIENT_TOOL.test(type)))) continue;
    if (type === 'shell' && (t.environment === undefined || t.environment === null || (isObject(t.environment) && t.environment.type === 'local'))) continue;
    if (type === 'tool_search' && t.execution === 'client') continue;
    scan.hosted ??= typeof type === 'string' ? type : 'a tool of unknown type';
  }
}

/** Refusals that apply to any token-priced request body. */
function contentRefusal(scan: ContentScan): Bound | undefined {
  if (scan.unseen) return unknown(`The request references input the gateway cannot see (${scan.unseen}); its size is unknown until the provider reads it, so it cannot be bounded. Send the content inline instead.`);
  if (scan.hosted) return unknown(`The request uses the hosted tool "${scan.hosted}", which the provider bills per call on top of tokens, and whose results add input the gateway cannot see; it cannot be bounded.`);
  if (scan.opaque) return unknown(`The request contains ${scan.opaque}, which can cost more tokens than its bytes; it cannot be bounded.`);
  return undefined;
}

function modelRefusal(rates: WorstRates | undefined, q: BoundQuestion, model: string): Bound | undefined {
  if (!rates) return unknown(`No price is known for model "${model}" on ${q.provider}.`);
  if (rates.unboundable.length) return unknown(`Model "${model}" is also billed per ${rates.unboundable.join(', ')}, which the gateway cannot bound before the request runs.`);
  return undefined;
}

/** Worst-case input tokens of a body: every byte a token, plus provider-added prompt tokens and per-image tokens. */
function inputTokenBound(bodyBytes: number, scan: ContentScan): number {
  return bodyBytes + PROMPT_OVERHEAD_TOKENS + scan.tools * PROMPT_OVERHEAD_TOKENS_PER_TOOL + scan.images * MAX_TOKENS_PER_INPUT_IMAGE;
}

/**
 * `tokens` and `input_tokens`. Generation is priced per choice — the whole input plus the maximum
 * output, at the worst rates — times the number of choices (n, best_of, candidateCount, legacy
 * prompt lists), as issue 16 asks: providers bill the prompt once, so this holds the input
 * n times over, but a bound is a bound.
 */
function tokenBound(q: BoundQuestion, model: string, generates: boolean): Bound {
  const json = q.json ?? {};
  let choices = 1;
  let ceiling: number | undefined;
  if (generates) {
    const c = outputCeiling(q.provider, json);
    if (isBound(c)) return c;
    ceiling = c;
    const n = choicesOf(json);
    if (isBound(n)) return n;
    choices = n;
  }
  const rates = worstRates(q.provider, model);
  const refused = modelRefusal(rates, q, model);
  if (refused) return refused;
  if (rates!.free) return { ok: true, micros: 0 };
  if (!rates!.hasTokenPrices) return unknown(`Model "${model}" is not priced per token.`);
  let outputTokens = 0;
  if (generates) {
    if (/search|deep-research/i.test(model) || model.endsWith(':online')) {
      return unknown(`Model "${model}" runs web searches billed per search on top of tokens; the gateway cannot bound them.`);
    }
    const ctx = rates!.contextWindow;
    let perChoice = ceiling ?? ctx;
    if (perChoice === undefined) return unknown(`No maximum output is known for model "${model}", so the request cannot be bounded. ${SET_MAX_TOKENS}`);
    if (ctx !== undefined) perChoice = Math.min(perChoice, ctx);
    outputTokens = perChoice;
    // Predicted outputs: rejected prediction tokens are billed as output, and come from the body.
    if (json.prediction !== undefined && json.prediction !== null) outputTokens += q.bodyBytes;
  }
  const scan = scanContent(json);
  scanTools(q.provider, json, scan);
  const content = contentRefusal(scan);
  if (content) return content;
  // Anthropic's fast mode bills a premium the price data does not carry.
  if (json.speed !== undefined && json.speed !== null && json.speed !== 'standard') return unknown(`speed "${String(json.speed)}" is billed at a premium the gateway has no price for.`);
  const factor = json.service_tier === 'priority' ? PRIORITY_TIER_FACTOR : 1;
  const one = micros(factor * (inputTokenBound(q.bodyBytes, scan) * rates!.input + outputTokens * rates!.output + rates!.perRequest));
  if (!one.ok) return one;
  const total = Math.min(one.micros * choices, Number.MAX_SAFE_INTEGER);
  if (generates && ceiling === undefined) {
    return { ok: true, micros: total, hint: `The request names no maximum output, so the model's maximum (${outputTokens} tokens) is held; setting max_tokens lowers the amount.` };
  }
  return { ok: true, micros: total };
}

/** A parameter of an image request, from the JSON body or the multipart fields. */
function imageParam(q: BoundQuestion, name: string): unknown {
  if (q.json) return q.json[name];
  const v = q.fields?.get(name);
  if (v === undefined) return undefined;
  return /^\d{1,9}$/.test(v) ? Number(v) : v;
}

/** The highest value in a size → quality table, narrowed to the request's size and quality when the table knows them. */
function worstOf<T extends Readonly<Record<string, Readonly<Partial<Record<string, number>>>>>>(table: T, size: unknown, quality: unknown): number {
  // Object.hasOwn: a size or quality named `constructor` must not reach Object.prototype.
  const sizes = typeof size === 'string' && Object.hasOwn(table, size) ? [table[size]!] : Object.values(table);
  let best = 0;
  for (const bySize of sizes) {
    const qualities = typeof quality === 'string' && Object.hasOwn(bySize, quality) ? [bySize[quality]] : Object.values(bySize);
    for (const v of qualities) if (v !== undefined) best = Math.max(best, v);
  }
  return best;
}

/** `image`: per image by n, size and quality; gpt-image models also by output-image tokens and input tokens. */
function imageBound(q: BoundQuestion, model: string): Bound {
  const n = choiceCount(imageParam(q, 'n'), 'n');
  if (isBound(n)) return n;
  const partial = imageParam(q, 'partial_images');
  const partialImages = partial === undefined || partial === null ? 0 : partial;
  if (typeof partialImages !== 'number' || !Number.isInteger(partialImages) || partialImages < 0 || partialImages > MAX_CHOICES) return invalid(`partial_images must be an integer from 0 to ${MAX_CHOICES}.`);
  const size = imageParam(q, 'size');
  const quality = imageParam(q, 'quality');
  const table = Object.hasOwn(IMAGE_PRICES, model) ? IMAGE_PRICES[model] : undefined;
  if (!table) return unknown(`No per-image price is known for model "${model}" on ${q.provider}.`);
  const perImage = worstOf(table, size, quality) * MICROS;
  if (!model.startsWith('gpt-image')) return micros((n ?? 1) * perImage);

  const rates = worstRates(q.provider, model);
  const refused = modelRefusal(rates, q, model);
  if (refused) return refused;
  const fileParts = q.fileParts !== undefined && Number.isInteger(q.fileParts) && q.fileParts >= 0 ? q.fileParts : MAX_EDIT_INPUT_IMAGES;
  const scan = q.json ? scanContent(q.json) : { images: fileParts, tools: 0 };
  const content = contentRefusal(scan);
  if (content) return content;
  const outputTokens = worstOf(GPT_IMAGE_OUTPUT_TOKENS, size, quality) + partialImages * GPT_IMAGE_PARTIAL_IMAGE_TOKENS;
  const output = (n ?? 1) * Math.max(perImage, outputTokens * rates!.output);
  return micros(inputTokenBound(q.bodyBytes, scan) * rates!.input + output + rates!.perRequest);
}

/**
 * `audio_seconds`: the duration bounded from the upload size at the lowest bitrate an accepted
 * codec carries (Opus, 6 kbit/s, see MIN_AUDIO_BYTES_PER_SECOND), priced per second or, for
 * token-priced transcription models, as audio input tokens plus the model's whole context as output.
 */
function audioBound(q: BoundQuestion, model: string): Bound {
  const rates = worstRates(q.provider, model);
  const refused = modelRefusal(rates, q, model);
  if (refused) return refused;
  const seconds = Math.max(q.bodyBytes / MIN_AUDIO_BYTES_PER_SECOND, MIN_BILLED_AUDIO_SECONDS);
  if (rates!.perAudioSecond !== undefined) return micros(seconds * rates!.perAudioSecond + rates!.perRequest);
  if (!rates!.hasTokenPrices) return unknown(`Model "${model}" has no per-second or per-token price.`);
  if (rates!.contextWindow === undefined) return unknown(`No maximum output is known for transcription model "${model}".`);
  let fieldBytes = 0;
  for (const [k, v] of q.fields ?? []) fieldBytes += utf8Length(k) + utf8Length(v);
  const inputTokens = seconds * AUDIO_TOKENS_PER_SECOND + fieldBytes + PROMPT_OVERHEAD_TOKENS;
  return micros(inputTokens * rates!.input + rates!.contextWindow * rates!.output + rates!.perRequest);
}

function utf8Length(s: string): number {
  let bytes = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) bytes += 1;
    else if (c < 0x800) bytes += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length && (s.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      bytes += 4;
      i++;
    } else bytes += 3;
  }
  return bytes;
}

/**
 * `characters`: TTS. Per-character models are priced on the input's UTF-8 length (never less than
 * its UTF-16 length or its character count, whichever the provider counts). Token-priced models
 * (gpt-4o-mini-tts, Gemini TTS) are bounded by TTS_SECONDS_PER_CHARACTER seconds of speech per
 * character of input and instructions, divided by the requested speed, at AUDIO_TOKENS_PER_SECOND.
 */
function speechBound(q: BoundQuestion, model: string): Bound {
  const json = q.json ?? {};
  const input = json.input;
  if (typeof input !== 'string') return invalid('input must be a string.');
  const instructions = typeof json.instructions === 'string' ? json.instructions : '';
  const speed = json.speed ?? 1;
  if (typeof speed !== 'number' || !(speed > 0) || speed > 1000) return invalid('speed must be a positive number.');
  const perChar = Object.hasOwn(TTS_PRICE_PER_CHARACTER, model) ? TTS_PRICE_PER_CHARACTER[model] : undefined;
  if (perChar !== undefined) return micros(utf8Length(input) * perChar * MICROS);
  const rates = worstRates(q.provider, model);
  const refused = modelRefusal(rates, q, model);
  if (refused) return refused;
  if (!rates!.hasTokenPrices) return unknown(`Model "${model}" has no per-character or per-token price.`);
  const seconds = ((utf8Length(input) + utf8Length(instructions)) * TTS_SECONDS_PER_CHARACTER) / Math.max(speed, TTS_MIN_SPEED);
  const inputTokens = q.bodyBytes + PROMPT_OVERHEAD_TOKENS;
  return micros(inputTokens * rates!.input + seconds * AUDIO_TOKENS_PER_SECOND * rates!.output + rates!.perRequest);
}

/**
 * The most a request can cost, in micro-dollars, or why it cannot be bounded. Fail closed: every
 * byte of the body may be a token, every allowed choice may run to its maximum output, at the
 * model's highest rate and tier; inputs the host cannot see, hosted tools and unpriced models are
 * `price_unknown`; absurd or malformed limits are `invalid_request`. Never throws.
 */
export function reservationBound(q: BoundQuestion): Bound {
  try {
    const unit = q.rule.unit;
    if (unit === 'free' || unit === 'request') return { ok: true, micros: 0 };
    if (unit === 'unbounded') return unknown('Batches and fine-tuning jobs are billed by the provider later, for work the gateway cannot bound; a key with a spend cap cannot start them.');
    if (!Number.isFinite(q.bodyBytes) || q.bodyBytes < 0) return unknown('The request body size is unknown, so the request cannot be bounded.');
    const model = q.model;
    if (!model) return unknown('The request names no model, so the gateway cannot price it.');
    switch (unit) {
      case 'tokens':
        return tokenBound(q, model, true);
      case 'input_tokens':
        return tokenBound(q, model, false);
      case 'image':
        return imageBound(q, model);
      case 'audio_seconds':
        return audioBound(q, model);
      case 'characters':
        return speechBound(q, model);
      default:
        return unknown(`Price rule "${String(unit)}" is unknown.`);
    }
  } catch {
    return unknown('The price of this request could not be computed.');
  }
}

/**
 * What to charge once the answer has ended. A complete answer with usage is charged its usage;
 * anything less (stream aborted or broken, usage never arrived, only partial usage) is charged the
 * reservation's bound, since the provider may have produced up to it — and never less than the
 * usage seen so far. Without a bound (uncapped key, unpriced model) the partial usage is all
 * there is to charge.
 */
export function settledCost(q: { provider: string; model: string | undefined; usage: TokenUsage | undefined; complete: boolean; boundMicros: number | null }): number {
  const seen = q.usage && q.model ? safeMicros(usagePrice(q.provider, q.model, q.usage)) : null;
  const bound = q.boundMicros === null ? null : safeMicros(q.boundMicros);
  if (q.complete && q.usage && seen !== null) return seen;
  if (bound !== null) return Math.max(bound, seen ?? 0);
  return seen ?? 0;
}

/** priceUsage, but a malformed usage (negative, NaN) prices as unknown instead of throwing. */
function usagePrice(provider: string, model: string, usage: TokenUsage): number | null {
  try {
    return priceUsage(provider, model, usage);
  } catch {
    return null;
  }
}

function safeMicros(v: number | null): number | null {
  if (v === null || Number.isNaN(v)) return null;
  return Math.min(Math.max(Math.ceil(v), 0), Number.MAX_SAFE_INTEGER);
}
