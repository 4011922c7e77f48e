import { OPENAI_COMPATIBLE as O, type ProviderSpec } from './types.ts';

/** Cerebras: OpenAI-compatible API. */
export const cerebras: ProviderSpec = {
  id: 'cerebras',
  name: 'Cerebras',
  origin: 'https://api.cerebras.ai',
  authScheme: 'bearer',
  upstreamBase: '/v1',
  endpoints: [...O.chat, ...O.completions, ...O.models],
};
