/**
 * What only the host side reads about a provider: the error shape the host answers in when it
 * refuses a request itself, and the provider id under which @pydantic/genai-prices prices its
 * models (the host's spend reservation, `securegate connect`, the dashboard's enrollment). The
 * enclave reads neither, so they live here, outside its image (enclave/README.md), keyed by the
 * provider ids of protocol/providers/; protocol/provider-host-data.test.ts checks every provider
 * has its row.
 */

export type ErrorShape = 'openai' | 'anthropic';

export interface ProviderHostData {
  errorShape: ErrorShape;
  /** Provider id in @pydantic/genai-prices, when it prices this provider's models. */
  priceProvider?: string;
}

export const PROVIDER_HOST_DATA: Record<string, ProviderHostData> = {
  openai: { errorShape: 'openai', priceProvider: 'openai' },
  anthropic: { errorShape: 'anthropic', priceProvider: 'anthropic' },
  azure: { errorShape: 'openai', priceProvider: 'azure' },
  gemini: { errorShape: 'openai', priceProvider: 'google' },
  'gemini-native': { errorShape: 'openai', priceProvider: 'google' },
  mistral: { errorShape: 'openai', priceProvider: 'mistral' },
  groq: { errorShape: 'openai', priceProvider: 'groq' },
  together: { errorShape: 'openai', priceProvider: 'together' },
  fireworks: { errorShape: 'openai', priceProvider: 'fireworks' },
  deepseek: { errorShape: 'openai', priceProvider: 'deepseek' },
  xai: { errorShape: 'openai', priceProvider: 'x-ai' },
  openrouter: { errorShape: 'openai', priceProvider: 'openrouter' },
  perplexity: { errorShape: 'openai', priceProvider: 'perplexity' },
  cohere: { errorShape: 'openai', priceProvider: 'cohere' },
  cerebras: { errorShape: 'openai', priceProvider: 'cerebras' },
  vllm: { errorShape: 'openai' },
  ollama: { errorShape: 'openai' },
  any: { errorShape: 'openai' },
};

export function providerHostData(id: string): ProviderHostData | undefined {
  return Object.hasOwn(PROVIDER_HOST_DATA, id) ? PROVIDER_HOST_DATA[id] : undefined;
}
