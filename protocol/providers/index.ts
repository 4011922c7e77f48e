/**
 * The provider registry. `isAllowedPath` is the one rule both host (early refusal) and enclave
 * (enforcement) apply; paths with traversal or encoded characters are never allowed.
 */
import { anthropic } from './anthropic.ts';
import { any } from './any.ts';
import { azure } from './azure.ts';
import { cerebras } from './cerebras.ts';
import { cohere } from './cohere.ts';
import { deepseek } from './deepseek.ts';
import { fireworks } from './fireworks.ts';
import { gemini, geminiNative } from './gemini.ts';
import { groq } from './groq.ts';
import { mistral } from './mistral.ts';
import { ollama } from './ollama.ts';
import { openai } from './openai.ts';
import { openrouter } from './openrouter.ts';
import { perplexity } from './perplexity.ts';
import { together } from './together.ts';
import type { ProviderSpec } from './types.ts';
import { vllm } from './vllm.ts';
import { xai } from './xai.ts';

export type { ErrorShape, ProviderSpec } from './types.ts';

export const PROVIDERS: Record<string, ProviderSpec> = Object.fromEntries(
  [openai, anthropic, azure, gemini, geminiNative, mistral, groq, together, fireworks, deepseek, xai, openrouter, perplexity, cohere, cerebras, vllm, ollama, any].map(
    (p) => [p.id, p],
  ),
);

export function providerSpec(id: string): ProviderSpec | undefined {
  return Object.hasOwn(PROVIDERS, id) ? PROVIDERS[id] : undefined;
}

function safePath(path: string): boolean {
  return !(path.includes('..') || path.includes('//') || path.includes('%') || path.includes('\\'));
}

/** True when `path` (client path after `/v1`, without query) is an allowed inference path. */
export function isAllowedPath(spec: ProviderSpec, path: string): boolean {
  return safePath(path) && spec.allowedPaths.some((re) => re.test(path));
}

/** True when `path` (full client path, without query) is an allowed provider-native path. */
export function isAllowedNativePath(spec: ProviderSpec, path: string): boolean {
  return safePath(path) && (spec.nativePaths ?? []).some((re) => re.test(path));
}

/**
 * Maps a client path (with query) onto the provider's upstream path, or undefined when it is not
 * allowed: `/v1/<rest>` → upstreamBase + rest; a native path → itself.
 */
export function upstreamPathFor(spec: ProviderSpec, clientPathWithQuery: string): string | undefined {
  const q = clientPathWithQuery.indexOf('?');
  const path = q < 0 ? clientPathWithQuery : clientPathWithQuery.slice(0, q);
  const query = q < 0 ? '' : clientPathWithQuery.slice(q);
  if (path.startsWith('/v1/') && isAllowedPath(spec, path.slice(3))) return spec.upstreamBase + path.slice(3) + query;
  if (isAllowedNativePath(spec, path)) return path + query;
  return undefined;
}
