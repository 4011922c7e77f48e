/**
 * Stage 2 of the request path: classify. Matches the request against its connection's endpoint
 * table (method + path; no row → refused), checks the body's framing the way the upstream will
 * read it (RFC 9110 media types, strict JSON, strict multipart) and reads what the locks and the
 * reservation need — the endpoint, the scope atom it needs, the model it names — into one
 * `ClassifiedRequest`. Nothing later re-parses the raw request, and exactly the inspected bytes
 * are forwarded. Never logs a body.
 */
import type { Readable } from 'node:stream';
import { allowListPermits, matchEndpoint, type EndpointSpec, type ProviderSpec } from '../../protocol/index.ts';
import { HostError } from '../errors.ts';
import { MODEL_UNKNOWN, type ClassifiedBody, type ClassifiedRequest } from './classified.ts';
import { INTEGER_FIELDS, parseJsonObject, RequestFormatError, validateNumbers } from './json-body.ts';
import { hasUtf8Charset, isJsonType, isMultipartFormData, multipartBoundary, parseMediaType, rawHeaderValues } from './media-type.ts';
import { parseMultipart } from './multipart.ts';
import { referencedScopes, toolModels } from './references.ts';
import { requiredScope } from './scopes.ts';

const MiB = 1024 * 1024;

/** Integer fields that drive cost or fan-out: the OpenAI/Anthropic ones plus Gemini native's. */
const NUMBER_RULES = {
  ...INTEGER_FIELDS,
  'generationConfig.maxOutputTokens': { min: 1, max: 2 ** 31 - 1 },
  'generationConfig.candidateCount': { min: 1, max: 8 },
};

/** What classification needs of the raw request (a Fastify request's fields; tests pass their own). */
export interface RawRequest {
  method: string;
  url: string;
  headers: Record<string, string | string[] | undefined>;
  /** The headers as received (Node keeps only the first of repeated Content-Types in `headers`). */
  rawHeaders?: readonly string[];
  body: Readable;
}

export interface ClassifyOptions {
  /** Largest JSON body read (bytes). */
  jsonBodyLimit: number;
  /** Read streamed bodies whole too (the key signs its requests: the signature covers the body). */
  bufferWhole: boolean;
}

/** Largest body per endpoint, counted in streamed bytes; the providers' own limits. */
export function bodyLimit(endpoint: EndpointSpec, jsonLimit: number): number {
  if (endpoint.kind === 'any') return 1024 * MiB;
  if (endpoint.id === 'files.create') return 512 * MiB;
  if (endpoint.id === 'uploads.part') return 64 * MiB;
  if (endpoint.body === 'multipart') return endpoint.id.startsWith('images') ? 50 * MiB : 25 * MiB;
  if (endpoint.body === 'none') return 64 * 1024;
  return jsonLimit;
}

/** The endpoint row of an any-API call: the connection's sealed allow-list has already granted method and path. */
function anyEndpoint(method: string): EndpointSpec {
  const access = method === 'GET' || method === 'HEAD' ? 'read' : method === 'DELETE' ? 'delete' : 'write';
  return { id: 'any', method: method as EndpointSpec['method'], path: /^/, kind: 'any', access, body: 'binary', model: { in: 'none' }, price: { unit: 'request' } };
}

function refuseFormat(e: unknown): never {
  if (e instanceof RequestFormatError) throw new HostError(e.code, e.message);
  throw e;
}

/** Reads a whole body up to `limit` bytes (Content-Length refused early when it says more). */
export async function readBody(body: Readable, headers: RawRequest['headers'], limit: number): Promise<Buffer> {
  const declared = declaredLength(headers);
  if (declared !== undefined && declared > limit) throw new HostError('request_too_large', `The request body exceeds ${limit} bytes.`);
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of body) {
      size += (chunk as Buffer).length;
      if (size > limit) throw new HostError('request_too_large', `The request body exceeds ${limit} bytes.`);
      chunks.push(chunk as Buffer);
    }
  } catch (e) {
    if (e instanceof HostError) throw e;
    // The client went away (or timed out) mid-body: its request, not the gateway, failed.
    throw new HostError('request_aborted', 'The request body ended before it was complete.');
  }
  return Buffer.concat(chunks, size);
}

/** Content-Length, trusted only without Transfer-Encoding (RFC 9112 §6.3). */
export function declaredLength(headers: RawRequest['headers']): number | undefined {
  if (headers['transfer-encoding'] !== undefined) return undefined;
  const raw = headers['content-length'];
  if (typeof raw !== 'string' || !/^\d{1,15}$/.test(raw)) return undefined;
  return Number(raw);
}

function hasBody(headers: RawRequest['headers']): boolean {
  return headers['transfer-encoding'] !== undefined || (declaredLength(headers) ?? 0) > 0;
}

/** Classifies a request for `provider`; throws a HostError (4xx) for anything it cannot classify. */
export async function classify(raw: RawRequest, provider: ProviderSpec, allow: string | null, options: ClassifyOptions): Promise<ClassifiedRequest> {
  const q = raw.url.indexOf('?');
  const path = q < 0 ? raw.url : raw.url.slice(0, q);
  const query = q < 0 ? '' : raw.url.slice(q);
  const method = raw.method.toUpperCase();

  let endpoint: EndpointSpec;
  let groups: string[] = [];
  if (provider.id === 'any') {
    if (!path.startsWith('/any/') || allow === null || !allowListPermits(allow, method, path.slice(4))) {
      throw new HostError('endpoint_not_allowed', `${method} ${path} is not on this connection's allow-list.`);
    }
    endpoint = anyEndpoint(method);
  } else {
    const hit = path.startsWith('/any/') ? undefined : matchEndpoint(provider, method, path);
    if (!hit) throw new HostError('endpoint_not_allowed', `${method} ${path} is not an endpoint this key can call through ${provider.name}.`);
    endpoint = hit.endpoint;
    groups = hit.groups;
  }

  const limit = bodyLimit(endpoint, options.jsonBodyLimit);
  // A repeated Content-Type is refused (an upstream could read another one than the host did).
  const contentType = raw.rawHeaders ? rawHeaderValues(raw.rawHeaders, 'content-type') : raw.headers['content-type'];
  let body: ClassifiedBody;
  try {
    body = await readClassifiedBody(raw, endpoint, contentType, limit, options);
  } catch (e) {
    refuseFormat(e);
  }

  const json = body.format === 'json' ? body.value : undefined;
  return {
    provider,
    endpoint,
    method,
    path,
    query,
    scope: requiredScope(endpoint.kind, endpoint.access),
    body,
    requestedModel: unverifiableBatchInput(endpoint, json) ? MODEL_UNKNOWN : modelOf(endpoint, body, groups),
    extraScopes: json ? referencedScopes(json) : [],
    toolModels: json ? toolModels(json) : [],
  };
}

async function readClassifiedBody(raw: RawRequest, endpoint: EndpointSpec, contentType: string | string[] | undefined, limit: number, options: ClassifyOptions): Promise<ClassifiedBody> {
  switch (endpoint.body) {
    case 'none': {
      if (!hasBody(raw.headers)) return { format: 'none' };
      const bytes = await readBody(raw.body, raw.headers, limit);
      if (bytes.length === 0) return { format: 'none' };
      // A body where none belongs: only POST actions (cancel) may carry a JSON object, which is ignored.
      if (endpoint.method !== 'POST') throw new HostError('invalid_request', `${endpoint.method} requests to this endpoint take no body.`);
      requireJsonType(contentType);
      return jsonBody(bytes);
    }
    case 'json': {
      // Checked before the body is read: a body of another type is never parsed as JSON.
      requireJsonType(contentType);
      return jsonBody(await readBody(raw.body, raw.headers, limit));
    }
    case 'multipart': {
      const mt = parseMediaType(contentType);
      const boundary = mt && isMultipartFormData(mt) ? multipartBoundary(mt) : undefined;
      if (boundary === undefined) {
        throw new HostError('unsupported_media_type', 'This endpoint takes multipart/form-data with a valid boundary parameter.');
      }
      if (endpoint.model.in === 'multipart' || options.bufferWhole) {
        const bytes = await readBody(raw.body, raw.headers, limit);
        const parsed = parseMultipart(bytes, boundary);
        return { format: 'multipart', bytes, boundary, fields: parsed.fields, fileParts: parsed.files.length };
      }
      return { format: 'stream', boundary, declaredLength: declaredLength(raw.headers), limit };
    }
    case 'binary': {
      if (options.bufferWhole) {
        const bytes = await readBody(raw.body, raw.headers, limit);
        return { format: 'bytes', bytes };
      }
      return { format: 'stream', boundary: undefined, declaredLength: declaredLength(raw.headers), limit };
    }
  }
}

/** A JSON media type (any spelling, `+json`) in UTF-8, or 415. */
function requireJsonType(contentType: string | string[] | undefined): void {
  const mt = parseMediaType(contentType);
  if (!mt || !isJsonType(mt)) throw new HostError('unsupported_media_type', 'This endpoint takes a JSON body: send Content-Type: application/json.');
  // The body is read as UTF-8 (RFC 8259 §8.1): another declared charset would be read differently upstream.
  if (!hasUtf8Charset(mt)) throw new HostError('unsupported_media_type', 'Send JSON as UTF-8 (Content-Type: application/json; charset=utf-8, or no charset).');
}

function jsonBody(bytes: Buffer): ClassifiedBody {
  const value = parseJsonObject(bytes);
  validateNumbers(value, NUMBER_RULES);
  return { format: 'json', bytes, value };
}

/**
 * Batch input the gateway could not check line by line: a batch over an input file (uploaded
 * anywhere), or a multi-part Upload meant for batches (its parts are opaque). A model-locked key
 * cannot run those; input files uploaded through `/v1/files` are checked as they stream.
 */
function unverifiableBatchInput(endpoint: EndpointSpec, json: Record<string, unknown> | undefined): boolean {
  if (endpoint.id === 'batches.create') return true;
  return endpoint.id === 'uploads.create' && typeof json?.purpose === 'string' && json.purpose.trim().toLowerCase() === 'batch';
}

function modelOf(endpoint: EndpointSpec, body: ClassifiedBody, groups: string[]): ClassifiedRequest['requestedModel'] {
  const source = endpoint.model;
  switch (source.in) {
    case 'none':
    case 'upload':
      return undefined;
    case 'path': {
      const name = groups[source.group - 1];
      return name ? name : MODEL_UNKNOWN;
    }
    case 'json': {
      const value = body.format === 'json' ? body.value[source.field] : undefined;
      return typeof value === 'string' && value.length > 0 ? value : MODEL_UNKNOWN;
    }
    case 'multipart': {
      const value = body.format === 'multipart' ? body.fields.get(source.field) : undefined;
      return value !== undefined && value.length > 0 ? value : MODEL_UNKNOWN;
    }
  }
}
