/**
 * Endpoint tables: what each provider endpoint is, as data (docs/architecture.md §4.1). The host classifies
 * every request against its connection's table once — a request that matches no row is refused —
 * and every lock and the spend reservation read only that classification. The enclave applies the
 * same paths (without methods) as its allow-list.
 *
 * A row says: method + anchored path pattern, the operation kind and access (which key scope it
 * needs), how its body must be framed, where the model is named, and how it is priced.
 */
import type { Access, EndpointKind } from './kinds.ts';

/** How the request body must be framed (media type checked per RFC 9110 before anything else). */
export type BodyFormat =
  /** No body is allowed (GET, DELETE). */
  | 'none'
  /** `application/json` or any `+json` type; must parse as a JSON object. */
  | 'json'
  /** `multipart/form-data` per RFC 7578, parsed strictly. */
  | 'multipart'
  /** Opaque bytes (upload parts): streamed, never parsed. */
  | 'binary';

/** Where the endpoint names its model. */
export type ModelSource =
  | { in: 'none' }
  | { in: 'json'; field: string }
  | { in: 'multipart'; field: string }
  /** A capture group of the path pattern (Gemini native `models/{m}:…`, Azure `deployments/{d}/…`). */
  | { in: 'path'; group: number }
  /** File uploads: with `purpose=batch`, every JSONL line's `body.model` is checked as it streams. */
  | { in: 'upload' };

/** How a request is priced before it is forwarded (the reservation is an upper bound). */
export type PriceRule =
  /** Text generation: input bound from the body bytes, plus n × max output, at the highest tier. */
  | { unit: 'tokens' }
  /** Embeddings, moderations with a price, token counting: input tokens only. */
  | { unit: 'input_tokens' }
  /** Image generation/edit: per image by n, size and quality. */
  | { unit: 'image' }
  /** Speech to text: per audio second (bounded from the upload size). */
  | { unit: 'audio_seconds' }
  /** Text to speech: per input character. */
  | { unit: 'characters' }
  /** Listing, reading, deleting, uploading: no upstream usage charge. */
  | { unit: 'free' }
  /** The upstream bills later for work the host cannot bound (batches, fine-tuning jobs). */
  | { unit: 'unbounded' }
  /** Any-API: counted against request caps only. */
  | { unit: 'request' };

export interface EndpointSpec {
  /** Stable id, e.g. `chat.create`; audit and tests name endpoints by it. */
  id: string;
  method: 'GET' | 'POST' | 'DELETE' | 'PUT' | 'PATCH';
  /**
   * Anchored pattern. Over the client path after `/v1` for rows in `endpoints`, over the whole
   * client path for rows in `nativeEndpoints`.
   */
  path: RegExp;
  kind: EndpointKind;
  access: Access;
  body: BodyFormat;
  model: ModelSource;
  price: PriceRule;
  /** Streams usage as SSE when the JSON body says `stream: true`. */
  stream?: 'openai' | 'responses' | 'anthropic' | 'gemini';
}

const json = (field = 'model'): ModelSource => ({ in: 'json', field });
const NONE: ModelSource = { in: 'none' };
const FREE: PriceRule = { unit: 'free' };

/** Rows of the OpenAI API; other OpenAI-compatible providers take the subsets they implement. */
export const OPENAI_ENDPOINTS = {
  chat: { id: 'chat.create', method: 'POST', path: /^\/chat\/completions$/, kind: 'inference', access: 'write', body: 'json', model: json(), price: { unit: 'tokens' }, stream: 'openai' },
  chatList: { id: 'chat.list', method: 'GET', path: /^\/chat\/completions$/, kind: 'stored', access: 'read', body: 'none', model: NONE, price: FREE },
  chatGet: { id: 'chat.get', method: 'GET', path: /^\/chat\/completions\/[\w-]+(\/messages)?$/, kind: 'stored', access: 'read', body: 'none', model: NONE, price: FREE },
  chatUpdate: { id: 'chat.update', method: 'POST', path: /^\/chat\/completions\/[\w-]+$/, kind: 'stored', access: 'write', body: 'json', model: NONE, price: FREE },
  chatDelete: { id: 'chat.delete', method: 'DELETE', path: /^\/chat\/completions\/[\w-]+$/, kind: 'stored', access: 'delete', body: 'none', model: NONE, price: FREE },
  completions: { id: 'completions.create', method: 'POST', path: /^\/completions$/, kind: 'inference', access: 'write', body: 'json', model: json(), price: { unit: 'tokens' }, stream: 'openai' },
  embeddings: { id: 'embeddings.create', method: 'POST', path: /^\/embeddings$/, kind: 'inference', access: 'write', body: 'json', model: json(), price: { unit: 'input_tokens' } },
  responses: { id: 'responses.create', method: 'POST', path: /^\/responses$/, kind: 'inference', access: 'write', body: 'json', model: json(), price: { unit: 'tokens' }, stream: 'responses' },
  responsesInputTokens: { id: 'responses.input_tokens', method: 'POST', path: /^\/responses\/input_tokens$/, kind: 'inference', access: 'write', body: 'json', model: json(), price: FREE },
  responsesGet: { id: 'responses.get', method: 'GET', path: /^\/responses\/[\w-]+(\/input_items)?$/, kind: 'stored', access: 'read', body: 'none', model: NONE, price: FREE },
  responsesCancel: { id: 'responses.cancel', method: 'POST', path: /^\/responses\/[\w-]+\/cancel$/, kind: 'stored', access: 'write', body: 'none', model: NONE, price: FREE },
  responsesDelete: { id: 'responses.delete', method: 'DELETE', path: /^\/responses\/[\w-]+$/, kind: 'stored', access: 'delete', body: 'none', model: NONE, price: FREE },
  models: { id: 'models.list', method: 'GET', path: /^\/models$/, kind: 'models', access: 'read', body: 'none', model: NONE, price: FREE },
  modelGet: { id: 'models.get', method: 'GET', path: /^\/models\/[\w.:/-]+$/, kind: 'models', access: 'read', body: 'none', model: NONE, price: FREE },
  modelDelete: { id: 'models.delete', method: 'DELETE', path: /^\/models\/[\w.:/-]+$/, kind: 'fine_tuning', access: 'delete', body: 'none', model: NONE, price: FREE },
  moderations: { id: 'moderations.create', method: 'POST', path: /^\/moderations$/, kind: 'inference', access: 'write', body: 'json', model: json(), price: FREE },
  audioTranscriptions: { id: 'audio.transcriptions', method: 'POST', path: /^\/audio\/(transcriptions|translations)$/, kind: 'inference', access: 'write', body: 'multipart', model: { in: 'multipart', field: 'model' }, price: { unit: 'audio_seconds' } },
  audioSpeech: { id: 'audio.speech', method: 'POST', path: /^\/audio\/speech$/, kind: 'inference', access: 'write', body: 'json', model: json(), price: { unit: 'characters' } },
  imagesGenerations: { id: 'images.generations', method: 'POST', path: /^\/images\/generations$/, kind: 'inference', access: 'write', body: 'json', model: json(), price: { unit: 'image' } },
  imagesEdits: { id: 'images.edits', method: 'POST', path: /^\/images\/(edits|variations)$/, kind: 'inference', access: 'write', body: 'multipart', model: { in: 'multipart', field: 'model' }, price: { unit: 'image' } },
  filesList: { id: 'files.list', method: 'GET', path: /^\/files$/, kind: 'files', access: 'read', body: 'none', model: NONE, price: FREE },
  filesUpload: { id: 'files.create', method: 'POST', path: /^\/files$/, kind: 'files', access: 'write', body: 'multipart', model: { in: 'upload' }, price: FREE },
  filesGet: { id: 'files.get', method: 'GET', path: /^\/files\/[\w-]+(\/content)?$/, kind: 'files', access: 'read', body: 'none', model: NONE, price: FREE },
  filesDelete: { id: 'files.delete', method: 'DELETE', path: /^\/files\/[\w-]+$/, kind: 'files', access: 'delete', body: 'none', model: NONE, price: FREE },
  uploadsCreate: { id: 'uploads.create', method: 'POST', path: /^\/uploads$/, kind: 'uploads', access: 'write', body: 'json', model: NONE, price: FREE },
  uploadsPart: { id: 'uploads.part', method: 'POST', path: /^\/uploads\/[\w-]+\/parts$/, kind: 'uploads', access: 'write', body: 'multipart', model: NONE, price: FREE },
  uploadsFinish: { id: 'uploads.finish', method: 'POST', path: /^\/uploads\/[\w-]+\/(complete|cancel)$/, kind: 'uploads', access: 'write', body: 'json', model: NONE, price: FREE },
  batchesCreate: { id: 'batches.create', method: 'POST', path: /^\/batches$/, kind: 'batches', access: 'write', body: 'json', model: NONE, price: { unit: 'unbounded' } },
  batchesList: { id: 'batches.list', method: 'GET', path: /^\/batches(\/[\w-]+)?$/, kind: 'batches', access: 'read', body: 'none', model: NONE, price: FREE },
  batchesCancel: { id: 'batches.cancel', method: 'POST', path: /^\/batches\/[\w-]+\/cancel$/, kind: 'batches', access: 'write', body: 'none', model: NONE, price: FREE },
  vectorStoresRead: { id: 'vector_stores.read', method: 'GET', path: /^\/vector_stores(\/[\w-]+(\/(files|file_batches)(\/[\w-]+(\/(content|files))?)?)?)?$/, kind: 'vector_stores', access: 'read', body: 'none', model: NONE, price: FREE },
  vectorStoresWrite: { id: 'vector_stores.write', method: 'POST', path: /^\/vector_stores(\/[\w-]+(\/(files|file_batches)(\/[\w-]+(\/cancel)?)?)?)?$/, kind: 'vector_stores', access: 'write', body: 'json', model: NONE, price: FREE },
  vectorStoresSearch: { id: 'vector_stores.search', method: 'POST', path: /^\/vector_stores\/[\w-]+\/search$/, kind: 'vector_stores', access: 'read', body: 'json', model: NONE, price: FREE },
  vectorStoresDelete: { id: 'vector_stores.delete', method: 'DELETE', path: /^\/vector_stores\/[\w-]+(\/files\/[\w-]+)?$/, kind: 'vector_stores', access: 'delete', body: 'none', model: NONE, price: FREE },
  fineTuningCreate: { id: 'fine_tuning.create', method: 'POST', path: /^\/fine_tuning\/jobs$/, kind: 'fine_tuning', access: 'write', body: 'json', model: json(), price: { unit: 'unbounded' } },
  fineTuningRead: { id: 'fine_tuning.read', method: 'GET', path: /^\/fine_tuning\/jobs(\/[\w-]+(\/(events|checkpoints))?)?$/, kind: 'fine_tuning', access: 'read', body: 'none', model: NONE, price: FREE },
  fineTuningControl: { id: 'fine_tuning.control', method: 'POST', path: /^\/fine_tuning\/jobs\/[\w-]+\/(cancel|pause|resume)$/, kind: 'fine_tuning', access: 'write', body: 'none', model: NONE, price: FREE },
} as const satisfies Record<string, EndpointSpec>;

/** Anthropic's Messages API. */
export const ANTHROPIC_ENDPOINTS: EndpointSpec[] = [
  { id: 'messages.create', method: 'POST', path: /^\/messages$/, kind: 'inference', access: 'write', body: 'json', model: json(), price: { unit: 'tokens' }, stream: 'anthropic' },
  { id: 'messages.count_tokens', method: 'POST', path: /^\/messages\/count_tokens$/, kind: 'inference', access: 'write', body: 'json', model: json(), price: FREE },
  { id: 'models.list', method: 'GET', path: /^\/models$/, kind: 'models', access: 'read', body: 'none', model: NONE, price: FREE },
  { id: 'models.get', method: 'GET', path: /^\/models\/[\w.:-]+$/, kind: 'models', access: 'read', body: 'none', model: NONE, price: FREE },
];

/** Gemini's native API: the model is a path segment (`/v1beta/models/{model}:generateContent`). */
export const GEMINI_NATIVE_ENDPOINTS: EndpointSpec[] = [
  { id: 'gemini.generate', method: 'POST', path: /^\/v1beta\/models\/([\w.-]+):generateContent$/, kind: 'inference', access: 'write', body: 'json', model: { in: 'path', group: 1 }, price: { unit: 'tokens' } },
  { id: 'gemini.stream', method: 'POST', path: /^\/v1beta\/models\/([\w.-]+):streamGenerateContent$/, kind: 'inference', access: 'write', body: 'json', model: { in: 'path', group: 1 }, price: { unit: 'tokens' }, stream: 'gemini' },
  { id: 'gemini.count_tokens', method: 'POST', path: /^\/v1beta\/models\/([\w.-]+):countTokens$/, kind: 'inference', access: 'write', body: 'json', model: { in: 'path', group: 1 }, price: FREE },
  { id: 'gemini.embed', method: 'POST', path: /^\/v1beta\/models\/([\w.-]+):(embedContent|batchEmbedContents)$/, kind: 'inference', access: 'write', body: 'json', model: { in: 'path', group: 1 }, price: { unit: 'input_tokens' } },
  { id: 'gemini.models', method: 'GET', path: /^\/v1beta\/models(\/[\w.-]+)?$/, kind: 'models', access: 'read', body: 'none', model: NONE, price: FREE },
];

/** Azure's classic deployment URLs: the deployment (which names the model) is a path segment. */
export const AZURE_DEPLOYMENT_ENDPOINTS: EndpointSpec[] = [
  { id: 'azure.chat', method: 'POST', path: /^\/openai\/deployments\/([\w.-]+)\/chat\/completions$/, kind: 'inference', access: 'write', body: 'json', model: { in: 'path', group: 1 }, price: { unit: 'tokens' }, stream: 'openai' },
  { id: 'azure.completions', method: 'POST', path: /^\/openai\/deployments\/([\w.-]+)\/completions$/, kind: 'inference', access: 'write', body: 'json', model: { in: 'path', group: 1 }, price: { unit: 'tokens' }, stream: 'openai' },
  { id: 'azure.embeddings', method: 'POST', path: /^\/openai\/deployments\/([\w.-]+)\/embeddings$/, kind: 'inference', access: 'write', body: 'json', model: { in: 'path', group: 1 }, price: { unit: 'input_tokens' } },
  { id: 'azure.transcriptions', method: 'POST', path: /^\/openai\/deployments\/([\w.-]+)\/audio\/(transcriptions|translations)$/, kind: 'inference', access: 'write', body: 'multipart', model: { in: 'path', group: 1 }, price: { unit: 'audio_seconds' } },
  { id: 'azure.speech', method: 'POST', path: /^\/openai\/deployments\/([\w.-]+)\/audio\/speech$/, kind: 'inference', access: 'write', body: 'json', model: { in: 'path', group: 1 }, price: { unit: 'characters' } },
  { id: 'azure.images', method: 'POST', path: /^\/openai\/deployments\/([\w.-]+)\/images\/generations$/, kind: 'inference', access: 'write', body: 'json', model: { in: 'path', group: 1 }, price: { unit: 'image' } },
];
