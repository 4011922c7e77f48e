import { OPENAI_COMPATIBLE as O, type ProviderSpec } from './types.ts';

/** Self-hosted Ollama: its OpenAI-compatible `/v1` API, origin given with `--base-url`. */
export const ollama: ProviderSpec = {
  id: 'ollama',
  name: 'Ollama (self-hosted)',
  origin: undefined,
  authScheme: 'bearer',
  upstreamBase: '/v1',
  endpoints: [...O.chat, ...O.completions, ...O.embeddings, ...O.models],
};
