/**
 * What an inference body reaches besides its own endpoint: stored data it names by id (files,
 * earlier responses, conversations, prompts, vector stores, cached content) and other models its
 * tools run (the Responses API's `image_generation` tool runs an image model of its own). A key
 * needs the scope of everything it reads — an `inference`-only key must not read the owner's
 * files through `file_id` — and a model-locked key must allow every model the request runs.
 * Pure; the walk is iterative and the body's depth is already bounded by the JSON parser.
 */
import { MODEL_UNKNOWN } from './classified.ts';

/** Keys naming stored data, and the scope reading it needs. */
const ID_SCOPES: Record<string, string> = {
  file_id: 'files:read',
  input_file_id: 'files:read',
  training_file: 'files:read',
  validation_file: 'files:read',
  fileUri: 'files:read',
  file_uri: 'files:read',
  container: 'files:read',
  vector_store_ids: 'vector_stores:read',
  previous_response_id: 'stored:read',
  conversation: 'stored:read',
  cachedContent: 'stored:read',
  cached_content: 'stored:read',
};

/** Subtrees that describe data rather than reference it (a tool's JSON schema may well have a `file_id` property). */
const SCHEMA_KEYS = new Set(['metadata', 'parameters', 'input_schema', 'schema', 'response_format', 'responseSchema', 'response_schema', 'responseJsonSchema', 'response_json_schema', 'json_schema']);

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** The scope atoms the stored data a body names by id needs, beyond its endpoint's own. */
export function referencedScopes(body: Record<string, unknown>): string[] {
  const needs = new Set<string>();
  const stack: Array<[string, unknown]> = [['', body]];
  while (stack.length > 0) {
    const [key, v] = stack.pop()!;
    if (Array.isArray(v)) {
      for (const item of v) stack.push([key, item]);
      continue;
    }
    if (!isObject(v)) continue;
    if (v.type === 'item_reference') needs.add('stored:read');
    if (key === 'prompt' && typeof v.id === 'string') needs.add('stored:read');
    if (key === 'audio' && typeof v.id === 'string') needs.add('stored:read');
    for (const k in v) {
      const child = v[k];
      if (child === null || child === undefined || SCHEMA_KEYS.has(k)) continue;
      const scope = Object.hasOwn(ID_SCOPES, k) ? ID_SCOPES[k] : undefined;
      if (scope !== undefined) {
        needs.add(scope);
        continue;
      }
      stack.push([k, child]);
    }
  }
  return [...needs].sort();
}

/**
 * Models a body's tools run besides its own (`tools[].model`); a tool that runs a model of the
 * provider's choosing without naming it counts as MODEL_UNKNOWN.
 */
export function toolModels(body: Record<string, unknown>): Array<string | typeof MODEL_UNKNOWN> {
  const tools = body.tools;
  if (!Array.isArray(tools)) return [];
  const out: Array<string | typeof MODEL_UNKNOWN> = [];
  for (const t of tools) {
    if (!isObject(t)) continue;
    if (typeof t.model === 'string') out.push(t.model);
    else if (t.model !== undefined && t.model !== null) out.push(MODEL_UNKNOWN);
    else if (t.type === 'image_generation') out.push(MODEL_UNKNOWN);
  }
  return out;
}
