import { OPENAI_COMPATIBLE as O, type ProviderSpec } from './types.ts';

/** Fireworks AI: OpenAI-compatible under `/inference/v1`. */
export const fireworks: ProviderSpec = {
  id: 'fireworks',
  name: 'Fireworks AI',
  origin: 'https://api.fireworks.ai',
  authScheme: 'bearer',
  upstreamBase: '/inference/v1',
  endpoints: [...O.chat, ...O.completions, ...O.embeddings, ...O.models],
};
