/**
 * Prices `@pydantic/genai-prices` does not carry, and the per-unit facts the reservation needs to
 * turn a request into a worst-case amount: per-image prices and output-image token counts, per-
 * character TTS prices, and the conversion ratios for audio and images.
 *
 * Every number says where it comes from. Dollar figures are OpenAI's and Google's published list
 * prices as of 2026 (OpenAI "Pricing" page, platform.openai.com/docs/pricing, sections "Image
 * generation" and "Transcription and speech generation"; Google "Gemini Developer API pricing",
 * ai.google.dev/gemini-api/docs/pricing, section "Imagen"). When a provider changes a price,
 * change it here; a model missing from these tables is refused on a capped key, never guessed.
 *
 * Pure data: no I/O, nothing here is ever read from a request.
 */

/** Image quality as the Images API names it; `standard`/`hd` are DALL·E 3's, the rest gpt-image's. */
export type ImageQuality = 'low' | 'medium' | 'high' | 'standard' | 'hd';

/** Dollars per image, by size, then quality (`standard` for models with a single quality). */
type PerImagePrices = Readonly<Record<string, Readonly<Partial<Record<ImageQuality, number>>>>>;

/**
 * Per-image list prices (OpenAI "Pricing" page, "Image generation" table, 2026; Google
 * "Gemini Developer API pricing", "Imagen" rows, 2026). For gpt-image models these are the
 * published per-image equivalents of their output-token prices; the reservation takes the larger
 * of this and the token count below times the model's output rate. Cross-checked against
 * LiteLLM's price file (shared/specs/litellm-model_prices_and_context_window.json, 2026-07-24):
 * every figure matches it (DALL·E's per-pixel rows × pixels) except where noted.
 */
export const IMAGE_PRICES: Readonly<Record<string, PerImagePrices>> = {
  'dall-e-2': {
    '256x256': { standard: 0.016 },
    '512x512': { standard: 0.018 },
    '1024x1024': { standard: 0.02 },
  },
  'dall-e-3': {
    '1024x1024': { standard: 0.04, hd: 0.08 },
    '1024x1792': { standard: 0.08, hd: 0.12 },
    '1792x1024': { standard: 0.08, hd: 0.12 },
  },
  'gpt-image-1': {
    '1024x1024': { low: 0.011, medium: 0.042, high: 0.167 },
    '1024x1536': { low: 0.016, medium: 0.063, high: 0.25 },
    '1536x1024': { low: 0.016, medium: 0.063, high: 0.25 },
  },
  // High quality: $0.036 / $0.052 as published; LiteLLM's Azure rows work out to $0.033 / $0.050
  // (4,160 / 6,240 tokens at $8 per M). The higher figures are kept.
  'gpt-image-1-mini': {
    '1024x1024': { low: 0.005, medium: 0.011, high: 0.036 },
    '1024x1536': { low: 0.006, medium: 0.015, high: 0.052 },
    '1536x1024': { low: 0.006, medium: 0.015, high: 0.052 },
  },
  'gpt-image-1.5': {
    '1024x1024': { low: 0.009, medium: 0.034, high: 0.133 },
    '1024x1536': { low: 0.013, medium: 0.05, high: 0.2 },
    '1536x1024': { low: 0.013, medium: 0.05, high: 0.2 },
  },
  'imagen-3.0-generate-002': { any: { standard: 0.04 } },
  'imagen-4.0-generate-001': { any: { standard: 0.04 } },
  'imagen-4.0-fast-generate-001': { any: { standard: 0.02 } },
  'imagen-4.0-ultra-generate-001': { any: { standard: 0.06 } },
};

/**
 * Output-image tokens per image for the gpt-image family (OpenAI "Image generation" guide,
 * "Cost and latency" table, 2026: 1024×1024 low/medium/high = 272/1056/4160, 1024×1536 and
 * 1536×1024 = 408/1584/6240). Models named in IMAGE_PRICES with a `gpt-image` prefix use it.
 */
export const GPT_IMAGE_OUTPUT_TOKENS: Readonly<Record<string, Readonly<Record<'low' | 'medium' | 'high', number>>>> = {
  '1024x1024': { low: 272, medium: 1056, high: 4160 },
  '1024x1536': { low: 408, medium: 1584, high: 6240 },
  '1536x1024': { low: 408, medium: 1584, high: 6240 },
};

/** Each streamed partial image costs 100 extra output-image tokens (same guide, "Streaming"). */
export const GPT_IMAGE_PARTIAL_IMAGE_TOKENS = 100;

/**
 * Images an edit request can send: up to 16 input images plus a mask (OpenAI API reference,
 * "Create image edit", `image`: "up to 16 images" for gpt-image models).
 */
export const MAX_EDIT_INPUT_IMAGES = 17;

/**
 * Upper bound on the input tokens one image costs, whatever its byte size. A small, highly
 * compressible PNG can cost far more tokens than it has bytes, so images are counted per image,
 * not per byte. The largest published figure is gpt-4o-mini's: 2,833 + 5,667 per 512-px tile, at
 * most 8 tiles at `detail: high` (OpenAI "Images and vision" guide, "Calculating costs") =
 * 48,169; patch-based models stop at 1,536 patches × 2.46 (gpt-4.1-nano) ≈ 3,779; Anthropic's
 * images are ≈ width × height / 750 ≤ ≈ 1,600 after resizing; Gemini's are 258 per tile. Rounded
 * up to 2^16 for headroom.
 */
export const MAX_TOKENS_PER_INPUT_IMAGE = 65_536;

/**
 * Input tokens a provider may add to a prompt that are not in its bytes: chat-template tokens per
 * message and the tool-use system prompt (Anthropic "Tool use" pricing table, 2026: 346 tokens for
 * the tool-use system prompt; 245–735 per Anthropic-defined tool such as bash, text editor and
 * computer use). A flat allowance per request plus one per tool definition covers them.
 */
export const PROMPT_OVERHEAD_TOKENS = 1_024;
export const PROMPT_OVERHEAD_TOKENS_PER_TOOL = 1_024;

/**
 * TTS priced per input character (OpenAI "Pricing" page, "Transcription and speech generation",
 * 2026: tts-1 $15.00 / 1M characters, tts-1-hd $30.00 / 1M characters). Dollars per character.
 */
export const TTS_PRICE_PER_CHARACTER: Readonly<Record<string, number>> = {
  'tts-1': 15 / 1e6,
  'tts-1-hd': 30 / 1e6,
  // Azure OpenAI's names for the same models, at the same list prices (Azure "Azure OpenAI
  // Service pricing" page, "Speech" rows, 2026: TTS $15 / 1M characters, TTS HD $30 / 1M).
  tts: 15 / 1e6,
  'tts-hd': 30 / 1e6,
};

/**
 * Audio tokens per second of audio. OpenAI counts user audio at 1 token per 100 ms and generated
 * audio at 1 token per 50 ms (OpenAI "Realtime API — Managing costs", 2026); Gemini counts 32
 * tokens per second of audio (Google "Gemini API — Audio understanding", "Technical details").
 * The larger, 32/s, is used for every provider.
 */
export const AUDIO_TOKENS_PER_SECOND = 32;

/**
 * Seconds of speech a token-priced TTS model can produce per input character, at speed 1.0.
 * Ordinary speech runs at 12–15 characters per second (≈150 words per minute); 1 s per
 * character leaves a margin of more than 10× for slow voices and `instructions` that ask for
 * pauses. A request's `speed` (0.25–4.0 on OpenAI) divides it. This is a documented margin, not a
 * law: the provider does not publish a cap on audio length per character.
 */
export const TTS_SECONDS_PER_CHARACTER = 1;
export const TTS_MIN_SPEED = 0.25;

/**
 * The fewest bytes per second an uploaded audio file can carry: Opus at its lowest bitrate,
 * 6 kbit/s = 750 bytes/s (RFC 6716 §2.1.1, "bitrates from 6 kb/s to 510 kb/s"); Opus in Ogg or
 * WebM is an accepted upload format for OpenAI and Groq transcription. MP3's lowest (MPEG-2.5
 * Layer III, 8 kbit/s) is higher. Opus DTX (near-silent stretches sent as empty packets) and
 * container timestamps that skip time can undercut it; see the module header in pricing.ts.
 */
export const MIN_AUDIO_BYTES_PER_SECOND = 750;

/** Groq bills a transcription for at least 10 s (genai-prices applies the same minimum). */
export const MIN_BILLED_AUDIO_SECONDS = 10;

/**
 * `service_tier: "priority"` bills above the price data's Standard rates: at most 2× (OpenAI
 * "Pricing" page, Priority column, 2026: gpt-5 $2.50 / $20.00 per M against Standard's
 * $1.25 / $10.00; gpt-4.1 and o3 1.75×, gpt-4o 1.7×).
 */
export const PRIORITY_TIER_FACTOR = 2;
