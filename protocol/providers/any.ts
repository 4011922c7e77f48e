import type { ProviderSpec } from './types.ts';

/**
 * "Any API" connections (Stripe, Slack, GitHub, Google, …): no fixed origin, scheme or paths —
 * each connection pins its own origin, auth scheme and a method + path allow-list, all bound into
 * the sealed record (version 0x02). Reached under `/any/...` on the gateway; no usage parsing,
 * request-count caps only.
 */
export const any: ProviderSpec = {
  id: 'any',
  name: 'Any API (pinned origin + allow-list)',
  origin: undefined,
  authScheme: 'bearer',
  upstreamBase: '',
  endpoints: [],
};
