import { OPENAI_COMPATIBLE as O, type ProviderSpec } from './types.ts';

/** DeepSeek: OpenAI-compatible API. */
export const deepseek: ProviderSpec = {
  id: 'deepseek',
  name: 'DeepSeek',
  origin: 'https://api.deepseek.com',
  authScheme: 'bearer',
  upstreamBase: '/v1',
  endpoints: [...O.chat, ...O.completions, ...O.models],
};
