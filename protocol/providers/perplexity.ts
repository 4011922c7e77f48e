import { OPENAI_COMPATIBLE as O, type ProviderSpec } from './types.ts';

/** Perplexity: OpenAI-compatible chat at the origin root (`/chat/completions`). */
export const perplexity: ProviderSpec = {
  id: 'perplexity',
  name: 'Perplexity',
  origin: 'https://api.perplexity.ai',
  authScheme: 'bearer',
  upstreamBase: '',
  endpoints: [...O.chat, ...O.models],
};
