/**
 * The one typed value a request is classified into (host/request/classify.ts). Every lock, the
 * scope check and the spend reservation read this value — nothing re-parses the raw request.
 */
import type { EndpointSpec, ProviderSpec } from '../../protocol/index.ts';

/** What the host read of the body: exactly these bytes are forwarded (or, for `stream`, the bytes as they pass). */
export type ClassifiedBody =
  | { format: 'none' }
  /** A JSON object, validated (numbers, depth); `bytes` is what was received. */
  | { format: 'json'; bytes: Buffer; value: Record<string, unknown> }
  /** A whole multipart body (small endpoints: audio, image edits), parsed strictly. */
  | { format: 'multipart'; bytes: Buffer; boundary: string; fields: Map<string, string>; fileParts: number }
  /** Opaque bytes read whole (a signed any-API request). */
  | { format: 'bytes'; bytes: Buffer }
  /**
   * Streamed to the enclave as it arrives (file uploads, upload parts, any-API bodies), counted
   * against `limit`; multipart uploads are checked while they pass (upload-inspector.ts).
   */
  | { format: 'stream'; boundary: string | undefined; declaredLength: number | undefined; limit: number };

export interface ClassifiedRequest {
  provider: ProviderSpec;
  endpoint: EndpointSpec;
  method: string;
  /** Client path without query (already checked: no dot segments, no percent-encoding). */
  path: string;
  /** Raw query string including `?`, or ''. */
  query: string;
  /** The scope atom the key needs (`inference:write`, `files:read`, …). */
  scope: string;
  body: ClassifiedBody;
  /**
   * The model as the request names it (before alias resolution): a string, `undefined` when the
   * endpoint names none, or `'unknown'` when it should name one but the host could not read it —
   * a key with a model allow-list refuses the latter.
   */
  requestedModel: string | undefined | typeof MODEL_UNKNOWN;
  /** Scope atoms the stored data the body names by id needs (`files:read` for a `file_id`, …). */
  extraScopes: string[];
  /** Models the body's tools run besides its own (request/references.ts). */
  toolModels: Array<string | typeof MODEL_UNKNOWN>;
}

export const MODEL_UNKNOWN = Symbol('model_unknown');
