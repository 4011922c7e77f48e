import { OPENAI_COMPATIBLE as O, type ProviderSpec } from './types.ts';

/** Mistral: OpenAI-compatible API. */
export const mistral: ProviderSpec = {
  id: 'mistral',
  name: 'Mistral',
  origin: 'https://api.mistral.ai',
  authScheme: 'bearer',
  upstreamBase: '/v1',
  endpoints: [...O.chat, ...O.embeddings, ...O.models, ...O.moderations, { id: 'fim.create', method: 'POST', path: /^\/fim\/completions$/, kind: 'inference', access: 'write', body: 'json', model: { in: 'json', field: 'model' }, price: { unit: 'tokens' }, stream: 'openai' }],
};
