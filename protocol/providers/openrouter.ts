import { OPENAI_COMPATIBLE as O, type ProviderSpec } from './types.ts';

/** OpenRouter: OpenAI-compatible under `/api/v1`. */
export const openrouter: ProviderSpec = {
  id: 'openrouter',
  name: 'OpenRouter',
  origin: 'https://openrouter.ai',
  authScheme: 'bearer',
  upstreamBase: '/api/v1',
  endpoints: [...O.chat, ...O.completions, ...O.embeddings, ...O.models, ...O.responses],
};
