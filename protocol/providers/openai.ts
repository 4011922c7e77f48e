import { OPENAI_ENDPOINTS } from './endpoints.ts';
import type { ProviderSpec } from './types.ts';

/** OpenAI: every endpoint a project key can call; admin and organisation endpoints never. */
export const openai: ProviderSpec = {
  id: 'openai',
  name: 'OpenAI',
  origin: 'https://api.openai.com',
  authScheme: 'bearer',
  upstreamBase: '/v1',
  endpoints: Object.values(OPENAI_ENDPOINTS),
};
