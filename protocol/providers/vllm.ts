import { OPENAI_COMPATIBLE as O, type ProviderSpec } from './types.ts';

/** Self-hosted vLLM: OpenAI-compatible, origin given with `--base-url` (https, or loopback http in dev). */
export const vllm: ProviderSpec = {
  id: 'vllm',
  name: 'vLLM (self-hosted)',
  origin: undefined,
  authScheme: 'bearer',
  upstreamBase: '/v1',
  endpoints: [...O.chat, ...O.completions, ...O.embeddings, ...O.models, ...O.responses, ...O.audioTranscriptions],
};
