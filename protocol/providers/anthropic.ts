import { ANTHROPIC_ENDPOINTS } from './endpoints.ts';
import type { ProviderSpec } from './types.ts';

/** Anthropic's native Messages API; `anthropic-version` / `anthropic-beta` pass through. */
export const anthropic: ProviderSpec = {
  id: 'anthropic',
  name: 'Anthropic',
  origin: 'https://api.anthropic.com',
  authScheme: 'x-api-key',
  upstreamBase: '/v1',
  endpoints: ANTHROPIC_ENDPOINTS,
};
