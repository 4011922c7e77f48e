import { OPENAI_COMPATIBLE as O, type ProviderSpec } from './types.ts';

/** Cohere through its OpenAI-compatible Compatibility API (`/compatibility/v1`). */
export const cohere: ProviderSpec = {
  id: 'cohere',
  name: 'Cohere (compatibility API)',
  origin: 'https://api.cohere.com',
  authScheme: 'bearer',
  upstreamBase: '/compatibility/v1',
  endpoints: [...O.chat, ...O.embeddings, ...O.models],
};
