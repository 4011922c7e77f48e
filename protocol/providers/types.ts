/**
 * A provider is data plus a small adapter (DESIGN.md §5): pinned origin, auth scheme, the client
 * paths that may be forwarded and where they go upstream, the error shape, and how usage is
 * priced. One file per provider in this folder; `index.ts` is the registry.
 */
import type { AuthScheme } from '../sealed-record.ts';

export type ErrorShape = 'openai' | 'anthropic';

export interface ProviderSpec {
  id: string;
  name: string;
  /** Default pinned origin; `undefined` when every customer has their own (Azure, vLLM, Ollama). */
  origin: string | undefined;
  authScheme: AuthScheme;
  /** Upstream path prefix that client paths under `/v1` map onto (e.g. `/openai/v1` for Groq). */
  upstreamBase: string;
  errorShape: ErrorShape;
  /** Anchored patterns over the client path after `/v1` (inference endpoints only). */
  allowedPaths: RegExp[];
  /**
   * Provider-native paths forwarded unchanged (outside `/v1`), e.g. Azure deployment URLs or
   * Gemini's `/v1beta/models/{model}:generateContent`.
   */
  nativePaths?: RegExp[];
  /** Provider id in @pydantic/genai-prices, when it prices this provider's models. */
  priceProvider?: string;
  /** Where the client SDKs put the key when they talk to this provider natively. */
  docs?: string;
}

/** The OpenAI-compatible inference surface most providers implement (subsets below). */
export const OPENAI_COMPATIBLE = {
  chat: /^\/chat\/completions$/,
  completions: /^\/completions$/,
  embeddings: /^\/embeddings$/,
  models: /^\/models(\/[\w.:/-]+)?$/,
  moderations: /^\/moderations$/,
  audioTranscriptions: /^\/audio\/(transcriptions|translations)$/,
  audioSpeech: /^\/audio\/speech$/,
  imagesGenerations: /^\/images\/generations$/,
  responses: /^\/responses(\/[\w-]+(\/(cancel|input_items))?)?$/,
};
