/**
 * The owner's side of the connection policy (SPEC.md §9): signing it, and the model prices a dollar
 * ceiling carries. The enclave only verifies and enforces policies (`../connection-policy.ts`).
 */
import { parseConnectionPolicy, type ConnectionPolicy, type ModelPrice } from '../connection-policy.ts';
import type { CanonicalValue, SignedOwnerMessage } from '../owner-signature.ts';
import { signOwnerMessage } from './owner-sign.ts';

/** Signs a policy as an owner message of type `connection_policy`. */
export function signConnectionPolicy(secretKey: Uint8Array, policy: Omit<ConnectionPolicy, 'unmeteredTokens'> & { unmeteredTokens?: number }): SignedOwnerMessage {
  const message = { type: 'connection_policy' as const, ...policy } as unknown as Record<string, CanonicalValue>;
  parseConnectionPolicy(message);
  return signOwnerMessage(secretKey, message as never);
}

/** A price lookup of the shape of @pydantic/genai-prices' `calcPrice` (the host's price table). */
export type PriceLookup = (
  usage: { input_tokens: number; output_tokens: number },
  model: string,
  options: { providerId: string },
) => { total_price: number } | null | undefined;

/**
 * The prices a dollar ceiling carries for `models` (SPEC.md §9), from the same table the host
 * meters with, passed in so this module stays free of it: micro-dollars per million tokens,
 * rounded up (the enclave must never price below the host). Returns the models with no known
 * price separately — a policy with a dollar ceiling must not be signed while any remain.
 */
export function policyPrices(models: readonly string[], priceProvider: string, lookup: PriceLookup): { prices: Record<string, ModelPrice>; unpriced: string[] } {
  const prices: Record<string, ModelPrice> = {};
  const unpriced: string[] = [];
  for (const model of models) {
    const input = lookup({ input_tokens: 1_000_000, output_tokens: 0 }, model, { providerId: priceProvider });
    const output = lookup({ input_tokens: 0, output_tokens: 1_000_000 }, model, { providerId: priceProvider });
    if (!input || !output) unpriced.push(model);
    else prices[model] = { inputMicroUsdPerMTok: Math.ceil(input.total_price * 1e6), outputMicroUsdPerMTok: Math.ceil(output.total_price * 1e6) };
  }
  return { prices, unpriced };
}
