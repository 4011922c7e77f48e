/**
 * A provider is data plus a small adapter (docs/architecture.md §5): pinned origin, auth scheme, the client
 * paths that may be forwarded and where they go upstream, and how each endpoint is priced. Providers with
 * their own auth scheme or endpoints have a file each in this folder, OpenAI-compatible ones a row
 * in `openai-compatible.ts`; `index.ts` is the registry. What only the host reads about a
 * provider (its error shape, its id in @pydantic/genai-prices) is in ../provider-host-data.ts,
 * outside the enclave image.
 */
import type { AuthScheme } from '../sealed-record.ts';
import { OPENAI_ENDPOINTS as E, type EndpointSpec } from './endpoints.ts';

export interface ProviderSpec {
  id: string;
  name: string;
  /** Default pinned origin; `undefined` when every customer has their own (Azure, vLLM, Ollama). */
  origin: string | undefined;
  authScheme: AuthScheme;
  /** Upstream path prefix that client paths under `/v1` map onto (e.g. `/openai/v1` for Groq). */
  upstreamBase: string;
  /** The endpoints under `/v1` (patterns over the client path after `/v1`): nothing else is forwarded. */
  endpoints: EndpointSpec[];
  /**
   * Provider-native endpoints forwarded unchanged (outside `/v1`; patterns over the whole path),
   * e.g. Azure deployment URLs or Gemini's `/v1beta/models/{model}:generateContent`.
   */
  nativeEndpoints?: EndpointSpec[];
}

/** The OpenAI-compatible surface most providers implement (subsets below), as endpoint rows. */
export const OPENAI_COMPATIBLE = {
  chat: [E.chat],
  completions: [E.completions],
  embeddings: [E.embeddings],
  models: [E.models, E.modelGet],
  moderations: [E.moderations],
  audioTranscriptions: [E.audioTranscriptions],
  audioSpeech: [E.audioSpeech],
  imagesGenerations: [E.imagesGenerations],
  responses: [E.responses, E.responsesInputTokens, E.responsesGet, E.responsesCancel, E.responsesDelete],
} satisfies Record<string, EndpointSpec[]>;
