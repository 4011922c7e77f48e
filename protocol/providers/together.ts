import { OPENAI_COMPATIBLE as O, type ProviderSpec } from './types.ts';

/** Together AI: OpenAI-compatible API. */
export const together: ProviderSpec = {
  id: 'together',
  name: 'Together AI',
  origin: 'https://api.together.xyz',
  authScheme: 'bearer',
  upstreamBase: '/v1',
  endpoints: [...O.chat, ...O.completions, ...O.embeddings, ...O.models, ...O.imagesGenerations, ...O.audioSpeech, ...O.audioTranscriptions],
};
