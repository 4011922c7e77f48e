import { AZURE_DEPLOYMENT_ENDPOINTS } from './endpoints.ts';
import { OPENAI_COMPATIBLE as O, type ProviderSpec } from './types.ts';

/**
 * Azure OpenAI: the `api-key` header, a per-customer resource origin
 * (`https://<resource>.openai.azure.com`, given with `--base-url`). Clients use either the
 * OpenAI-style v1 API (`/v1/...` → `/openai/v1/...`, deployment name as `model`) or classic
 * deployment URLs (`/openai/deployments/<name>/chat/completions?api-version=…`), forwarded as is.
 */
export const azure: ProviderSpec = {
  id: 'azure',
  name: 'Azure OpenAI',
  origin: undefined,
  authScheme: 'api-key',
  upstreamBase: '/openai/v1',
  endpoints: [...O.chat, ...O.completions, ...O.embeddings, ...O.models, ...O.responses, ...O.audioTranscriptions, ...O.audioSpeech, ...O.imagesGenerations],
  nativeEndpoints: AZURE_DEPLOYMENT_ENDPOINTS,
};
