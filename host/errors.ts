/**
 * The host's error registry and the providers' error shapes. Every refusal a client sees is a
 * JSON body in its provider's shape with a stable `code`; where retrying cannot help, the
 * response carries `x-should-retry: false` (the OpenAI and Anthropic SDKs honour it).
 */
import type { ErrorShape } from '../protocol/index.ts';
import { LOCK_ERRORS } from './locks.ts';

const GATEWAY_ERRORS = {
  invalid_api_key: { status: 401, type: 'authentication_error', retry: false },
  endpoint_not_allowed: { status: 404, type: 'invalid_request_error', retry: false },
  invalid_request: { status: 400, type: 'invalid_request_error', retry: false },
  request_too_large: { status: 413, type: 'invalid_request_error', retry: false },
  unsupported_media_type: { status: 415, type: 'invalid_request_error', retry: false },
  /** Behind a trusted proxy that did not say who the client is: the IP locks cannot be applied. */
  client_ip_unknown: { status: 400, type: 'invalid_request_error', retry: false },
  /** The body stalled (host/body-timeout.ts): a retry on a better connection can succeed. */
  request_timeout: { status: 408, type: 'invalid_request_error', retry: true },
  /** The client stopped sending its body: nobody is left to read the answer. */
  request_aborted: { status: 400, type: 'invalid_request_error', retry: false },
  /** Settled spend has reached a cap: retrying cannot help until the window turns. */
  budget_exceeded: { status: 429, type: 'rate_limit_error', retry: false },
  /** Only other requests' reservations are in the way: retry after they settle. */
  budget_busy: { status: 429, type: 'rate_limit_error', retry: true },
  /** A capped key and a request whose cost the gateway cannot bound. */
  /** A key's requests- or tokens-per-minute limit is reached: retry when the minute turns (`retry-after`). */
  rate_limit_exceeded: { status: 429, type: 'rate_limit_error', retry: true },
  /** The request's token bound alone is above the key's tokens-per-minute limit: it can never fit as sent. */
  request_over_rate_limit: { status: 429, type: 'rate_limit_error', retry: false },
  price_unknown: { status: 403, type: 'permission_error', retry: false },
  model_unpriced: { status: 403, type: 'permission_error', retry: false },
  database_unavailable: { status: 503, type: 'api_error', retry: true },
  /** Key options naming a city the city database does not know, or a model with no known price (send confirmUnknown to save anyway). */
  unknown_city: { status: 400, type: 'invalid_request_error', retry: false },
  unknown_model: { status: 400, type: 'invalid_request_error', retry: false },
  shareholders_unavailable: { status: 503, type: 'api_error', retry: true },
  enclave_unavailable: { status: 503, type: 'api_error', retry: true },
  /** The enclave refused: outside the owner-signed connection policy (operations, models). */
  connection_policy_denied: { status: 403, type: 'permission_error', retry: false },
  /** The enclave refused: the owner-signed daily ceiling (or lease budget) is used up until 00:00 UTC. */
  connection_ceiling_reached: { status: 429, type: 'rate_limit_error', retry: false },
  gateway_error: { status: 502, type: 'api_error', retry: true },
  admin_unauthorized: { status: 401, type: 'authentication_error', retry: false },
  not_found: { status: 404, type: 'not_found_error', retry: false },
  conflict: { status: 409, type: 'invalid_request_error', retry: false },
  plan_limit: { status: 403, type: 'permission_error', retry: false },
  plan_feature: { status: 403, type: 'permission_error', retry: false },
  forbidden: { status: 403, type: 'permission_error', retry: false },
  signup_closed: { status: 403, type: 'permission_error', retry: false },
  csrf_failed: { status: 403, type: 'permission_error', retry: false },
  too_many_attempts: { status: 429, type: 'rate_limit_error', retry: true },
} as const;

/** Every lock refusal is final for the request as sent: never worth an SDK retry. */
export const HOST_ERRORS: Record<string, { status: number; type: string; retry: boolean }> = {
  ...GATEWAY_ERRORS,
  ...Object.fromEntries(Object.entries(LOCK_ERRORS).map(([code, e]) => [code, { status: e.status, type: e.type, retry: false }])),
};

export type HostErrorCode = keyof typeof GATEWAY_ERRORS | keyof typeof LOCK_ERRORS;

export class HostError extends Error {
  readonly code: HostErrorCode;
  readonly retryAfter: number | undefined;
  /** The error shape of the key's provider, once known (else the path decides). */
  shape: ErrorShape | undefined;
  constructor(code: HostErrorCode, message: string, retryAfter?: number) {
    super(message);
    this.code = code;
    this.retryAfter = retryAfter;
  }
  get status(): number {
    return HOST_ERRORS[this.code]!.status;
  }
}

/** Body in the provider's error shape. */
export function errorBody(shape: ErrorShape, code: string, type: string, message: string): unknown {
  if (shape === 'anthropic') return { type: 'error', error: { type, message, code } };
  return { error: { message, type, param: null, code } };
}

/** Anthropic's native API lives under /v1/messages (and /v1/complete); everything else speaks OpenAI. */
export function errorShapeForPath(path: string): ErrorShape {
  // (the Gemini-native and any-API surfaces use the OpenAI shape: their clients read HTTP status)
  return path.startsWith('/v1/messages') || path.startsWith('/v1/complete') ? 'anthropic' : 'openai';
}
