/**
 * Providers as data (DESIGN.md §5): pinned origin, auth scheme, and the inference paths the
 * enclave may call with the key. Shared by the enclave (which enforces it) and the host/CLI
 * (which show it). Key-management, billing and organisation endpoints are never listed.
 */
import type { AuthScheme } from './sealed-record.ts';

export type ErrorShape = 'openai' | 'anthropic';

export interface ProviderSpec {
  id: string;
  name: string;
  origin: string;
  authScheme: AuthScheme;
  /** Path prefix the client-facing `/v1/...` maps onto at the upstream (e.g. `/openai/v1`). */
  upstreamBase: string;
  errorShape: ErrorShape;
  /** Regular expressions over the client path (after `/v1`), anchored. */
  allowedPaths: RegExp[];
}

const OPENAI_PATHS = [
  /^\/chat\/completions(\/[\w-]+(\/messages)?)?$/,
  /^\/completions$/,
  /^\/embeddings$/,
  /^\/responses(\/[\w-]+(\/(cancel|input_items))?)?$/,
  /^\/responses\/input_tokens$/,
  /^\/models(\/[\w.:/-]+)?$/,
  /^\/moderations$/,
  /^\/audio\/(transcriptions|translations|speech)$/,
  /^\/images\/(generations|edits|variations)$/,
  /^\/files(\/[\w-]+(\/content)?)?$/,
  /^\/uploads(\/[\w-]+(\/(parts|complete|cancel))?)?$/,
  /^\/batches(\/[\w-]+(\/cancel)?)?$/,
  /^\/vector_stores(\/[\w-]+(\/(files|file_batches|search)(\/[\w-]+(\/(content|cancel|files))?)?)?)?$/,
  /^\/fine_tuning\/jobs(\/[\w-]+(\/(cancel|events|checkpoints|pause|resume))?)?$/,
];

const ANTHROPIC_PATHS = [/^\/messages$/, /^\/messages\/count_tokens$/, /^\/models(\/[\w.:-]+)?$/];

export const PROVIDERS: Record<string, ProviderSpec> = {
  openai: {
    id: 'openai',
    name: 'OpenAI',
    origin: 'https://api.openai.com',
    authScheme: 'bearer',
    upstreamBase: '/v1',
    errorShape: 'openai',
    allowedPaths: OPENAI_PATHS,
  },
  anthropic: {
    id: 'anthropic',
    name: 'Anthropic',
    origin: 'https://api.anthropic.com',
    authScheme: 'x-api-key',
    upstreamBase: '/v1',
    errorShape: 'anthropic',
    allowedPaths: ANTHROPIC_PATHS,
  },
  openrouter: {
    id: 'openrouter',
    name: 'OpenRouter',
    origin: 'https://openrouter.ai',
    authScheme: 'bearer',
    upstreamBase: '/api/v1',
    errorShape: 'openai',
    allowedPaths: [/^\/chat\/completions$/, /^\/completions$/, /^\/embeddings$/, /^\/models$/, /^\/responses$/],
  },
};

export function providerSpec(id: string): ProviderSpec | undefined {
  return Object.hasOwn(PROVIDERS, id) ? PROVIDERS[id] : undefined;
}

/** True when `path` (client path after `/v1`, without query) is an allowed inference path. */
export function isAllowedPath(spec: ProviderSpec, path: string): boolean {
  if (path.includes('..') || path.includes('//') || path.includes('%')) return false;
  return spec.allowedPaths.some((re) => re.test(path));
}
