import { OPENAI_COMPATIBLE as O, type ProviderSpec } from './types.ts';

/** xAI: OpenAI-compatible API. */
export const xai: ProviderSpec = {
  id: 'xai',
  name: 'xAI',
  origin: 'https://api.x.ai',
  authScheme: 'bearer',
  upstreamBase: '/v1',
  endpoints: [...O.chat, ...O.completions, ...O.embeddings, ...O.models, ...O.imagesGenerations, ...O.responses],
};
