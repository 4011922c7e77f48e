/**
 * The provider registry. `isAllowedPath` is the one rule both host (early refusal) and enclave
 * (enforcement) apply; paths with traversal or encoded characters are never allowed.
 */
import { anthropic } from './anthropic.ts';
import { any } from './any.ts';
import { azure } from './azure.ts';
import { gemini, geminiNative } from './gemini.ts';
import { openai } from './openai.ts';
import { OPENAI_COMPATIBLE_PROVIDERS } from './openai-compatible.ts';
import type { EndpointSpec } from './endpoints.ts';
import type { ProviderSpec } from './types.ts';

export type { ProviderSpec } from './types.ts';
export * from './endpoints.ts';
export * from './kinds.ts';

export const PROVIDERS: Record<string, ProviderSpec> = Object.fromEntries(
  [openai, anthropic, azure, gemini, geminiNative, ...OPENAI_COMPATIBLE_PROVIDERS, any].map(
    (p) => [p.id, p],
  ),
);

export function providerSpec(id: string): ProviderSpec | undefined {
  return Object.hasOwn(PROVIDERS, id) ? PROVIDERS[id] : undefined;
}

function safePath(path: string): boolean {
  return !(path.includes('..') || path.includes('//') || path.includes('%') || path.includes('\\'));
}

/** True when `path` (client path after `/v1`, without query) is a path of one of the provider's endpoints. */
export function isAllowedPath(spec: ProviderSpec, path: string): boolean {
  return safePath(path) && spec.endpoints.some((e) => e.path.test(path));
}

/** True when `path` (full client path, without query) is a path of one of the provider's native endpoints. */
export function isAllowedNativePath(spec: ProviderSpec, path: string): boolean {
  return safePath(path) && (spec.nativeEndpoints ?? []).some((e) => e.path.test(path));
}

/**
 * The endpoint row a request matches (method and path), with the path's capture groups; undefined
 * when none does — such a request is refused. `path` is the full client path without query.
 */
export function matchEndpoint(spec: ProviderSpec, method: string, path: string): { endpoint: EndpointSpec; groups: string[] } | undefined {
  if (!safePath(path)) return undefined;
  const tryRows = (rows: EndpointSpec[], subject: string) => {
    for (const endpoint of rows) {
      if (endpoint.method !== method) continue;
      const m = endpoint.path.exec(subject);
      if (m) return { endpoint, groups: m.slice(1).map((g) => g ?? '') };
    }
    return undefined;
  };
  if (path.startsWith('/v1/')) {
    const hit = tryRows(spec.endpoints, path.slice(3));
    if (hit) return hit;
  }
  return tryRows(spec.nativeEndpoints ?? [], path);
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
