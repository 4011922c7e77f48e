import { OPENAI_COMPATIBLE as O, type ProviderSpec } from './types.ts';

/** Mistral: OpenAI-compatible API. */
export const mistral: ProviderSpec = {
  id: 'mistral',
  name: 'Mistral',
  origin: 'https://api.mistral.ai',
  authScheme: 'bearer',
  upstreamBase: '/v1',
  errorShape: 'openai',
  priceProvider: 'mistral',
  allowedPaths: [O.chat, O.embeddings, O.models, O.moderations, /^\/fim\/completions$/],
};
