/**
 * The providers whose API is OpenAI's, with a bearer key: one row each — id, name, pinned origin
 * (`undefined` when every customer has their own, given with `--base-url`), where OpenAI's `/v1`
 * paths sit under that origin, and which of OpenAI's endpoints the provider serves. A provider
 * with its own auth scheme or native endpoints has its own file (OpenAI, Anthropic, Azure, Gemini).
 */
import type { EndpointSpec } from './endpoints.ts';
import { OPENAI_COMPATIBLE as O, type ProviderSpec } from './types.ts';

const row = (id: string, name: string, origin: string | undefined, upstreamBase: string, endpoints: EndpointSpec[]): ProviderSpec => ({ id, name, origin, authScheme: 'bearer', upstreamBase, endpoints });

/** Mistral's fill-in-the-middle completions (`/v1/fim/completions`), priced and streamed like chat. */
const MISTRAL_FIM: EndpointSpec = { id: 'fim.create', method: 'POST', path: /^\/fim\/completions$/, kind: 'inference', access: 'write', body: 'json', model: { in: 'json', field: 'model' }, price: { unit: 'tokens' }, stream: 'openai' };

export const OPENAI_COMPATIBLE_PROVIDERS: ProviderSpec[] = [
  row('mistral', 'Mistral', 'https://api.mistral.ai', '/v1', [...O.chat, ...O.embeddings, ...O.models, ...O.moderations, MISTRAL_FIM]),
  row('groq', 'Groq', 'https://api.groq.com', '/openai/v1', [...O.chat, ...O.models, ...O.audioTranscriptions, ...O.audioSpeech, ...O.responses]),
  row('together', 'Together AI', 'https://api.together.xyz', '/v1', [...O.chat, ...O.completions, ...O.embeddings, ...O.models, ...O.imagesGenerations, ...O.audioSpeech, ...O.audioTranscriptions]),
  row('fireworks', 'Fireworks AI', 'https://api.fireworks.ai', '/inference/v1', [...O.chat, ...O.completions, ...O.embeddings, ...O.models]),
  row('deepseek', 'DeepSeek', 'https://api.deepseek.com', '/v1', [...O.chat, ...O.completions, ...O.models]),
  row('xai', 'xAI', 'https://api.x.ai', '/v1', [...O.chat, ...O.completions, ...O.embeddings, ...O.models, ...O.imagesGenerations, ...O.responses]),
  row('openrouter', 'OpenRouter', 'https://openrouter.ai', '/api/v1', [...O.chat, ...O.completions, ...O.embeddings, ...O.models, ...O.responses]),
  // Chat at the origin root (`/chat/completions`).
  row('perplexity', 'Perplexity', 'https://api.perplexity.ai', '', [...O.chat, ...O.models]),
  // Cohere's Compatibility API.
  row('cohere', 'Cohere (compatibility API)', 'https://api.cohere.com', '/compatibility/v1', [...O.chat, ...O.embeddings, ...O.models]),
  row('cerebras', 'Cerebras', 'https://api.cerebras.ai', '/v1', [...O.chat, ...O.completions, ...O.models]),
  // Self-hosted: https, or loopback http in development.
  row('vllm', 'vLLM (self-hosted)', undefined, '/v1', [...O.chat, ...O.completions, ...O.embeddings, ...O.models, ...O.responses, ...O.audioTranscriptions]),
  row('ollama', 'Ollama (self-hosted)', undefined, '/v1', [...O.chat, ...O.completions, ...O.embeddings, ...O.models]),
];
