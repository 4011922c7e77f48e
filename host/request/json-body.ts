/**
 * JSON request bodies, read so that no upstream parser can read them differently: strict UTF-8
 * (no BOM), a JSON object at the top level, nesting depth bounded before anything recursive runs,
 * no duplicate keys at any depth (first-wins and last-wins parsers would disagree on
 * `{"model":"allowed","model":"forbidden"}`), every number finite, no lone surrogate escapes, and
 * the API's integer fields (`n`, `max_tokens`, …) integers within range. Also the error every
 * body refusal in host/request/ throws: `RequestFormatError`, with a stable `code`.
 * Pure; never logs or echoes a body.
 */

/** Stable codes (API): the lead maps them to HTTP statuses and the provider's error shape. */
export const REQUEST_FORMAT_STATUS = {
  invalid_request: 400,
  unsupported_media_type: 415,
  request_too_large: 413,
  /** Returned by callers' line checks (batch uploads); passed through as is. */
  model_not_allowed: 403,
  scope_not_granted: 403,
} as const;

export type RequestFormatCode = keyof typeof REQUEST_FORMAT_STATUS;

export class RequestFormatError extends Error {
  override readonly name = 'RequestFormatError';
  readonly code: RequestFormatCode;
  /** The request field at fault, when there is one (`max_tokens`, `model`, …). */
  readonly param: string | undefined;
  constructor(code: RequestFormatCode, message: string, options?: { param?: string; cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.param = options?.param;
  }
  get status(): number {
    return REQUEST_FORMAT_STATUS[this.code];
  }
}

export const invalid = (message: string, param?: string): RequestFormatError =>
  new RequestFormatError('invalid_request', message, param === undefined ? undefined : { param });

export interface JsonLimits {
  /** Deepest nesting of objects and arrays allowed; the top-level object is depth 1. Default 64. */
  maxDepth?: number;
}

export const DEFAULT_MAX_DEPTH = 64;
const MAX_DEPTH_CEILING = 1000;
const clampDepth = (d: number | undefined): number =>
  typeof d === 'number' && Number.isFinite(d) ? Math.max(1, Math.min(Math.floor(d), MAX_DEPTH_CEILING)) : DEFAULT_MAX_DEPTH;

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** Decodes strict UTF-8; a BOM is refused rather than silently dropped (parsers differ on it). */
export function decodeUtf8(bytes: Uint8Array, what: string): string {
  if (bytes.length >= 3 && bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf) {
    throw invalid(`${what} starts with a byte order mark; send UTF-8 without a BOM`);
  }
  try {
    return utf8.decode(bytes);
  } catch {
    throw invalid(`${what} is not valid UTF-8; send UTF-8 text`);
  }
}

/**
 * Parses a request body that must be one JSON object. Throws RequestFormatError
 * (`invalid_request`) for anything else; never throws another error.
 */
export function parseJsonObject(bytes: Uint8Array, limits?: JsonLimits): Record<string, unknown> {
  // Clamped: the value walk after parsing recurses once per level.
  const maxDepth = clampDepth(limits?.maxDepth);
  if (!(bytes instanceof Uint8Array)) throw invalid('the request body is missing; send a JSON object');
  const text = decodeUtf8(bytes, 'the request body');
  return parseJsonObjectText(text, maxDepth, 'the request body');
}

/** Same rules as parseJsonObject, over already decoded text (one JSONL line). */
export function parseJsonObjectText(text: string, maxDepth: number, what: string): Record<string, unknown> {
  maxDepth = clampDepth(maxDepth);
  let i = 0;
  while (i < text.length && isJsonSpace(text.charCodeAt(i))) i++;
  if (i >= text.length) throw invalid(`${what} is empty; send a JSON object`);
  if (text.charCodeAt(i) !== 0x7b /* { */) throw invalid(`${what} must be a JSON object ({…}) at the top level`);

  const scanned = scanStructure(text, maxDepth, what, false);
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw invalid(`${what} is not valid JSON; send a JSON object`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw invalid(`${what} must be a JSON object ({…}) at the top level`);
  }
  // JSON.parse keeps one entry per distinct key, so fewer keys than the text names means some
  // object names a key twice; only then is the text scanned again to say which.
  if (checkValues(value, what) !== scanned.keys) {
    const duplicate = scanStructure(text, maxDepth, what, true).duplicate ?? '';
    throw invalid(`${what} names the key "${printable(duplicate)}" twice in one object; send each key once`, duplicate);
  }
  return value as Record<string, unknown>;
}

const isJsonSpace = (c: number): boolean => c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d;

/**
 * One linear pass over the text, before JSON.parse: refuses nesting deeper than `maxDepth` (so
 * deep input never reaches a recursive function) and counts the keys of all objects; with
 * `findDuplicate`, also returns the first key found twice in one object (decoded, so
 * `"mod\u0065l"` and `"model"` are the same key). It trusts JSON.parse to reject what is not
 * JSON; on JSON it tracks structure exactly.
 */
function scanStructure(text: string, maxDepth: number, what: string, findDuplicate: boolean): { keys: number; duplicate: string | undefined } {
  // One frame per open container: the keys seen so far (objects; an empty set when not
  // collecting) or null (arrays).
  const frames: Array<Set<string> | null> = [];
  let expectKey = false;
  let keys = 0;
  let duplicate: string | undefined;
  const n = text.length;
  for (let i = 0; i < n; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22 /* " */) {
      // Jump to the closing quote: the next quote preceded by an even run of backslashes.
      const start = i + 1;
      let q = start;
      for (;;) {
        q = text.indexOf('"', q);
        if (q < 0) break;
        let k = q - 1;
        while (k >= start && text.charCodeAt(k) === 0x5c) k--;
        if ((q - 1 - k) % 2 === 0) break;
        q++;
      }
      if (q < 0) break; // unterminated: JSON.parse refuses it
      i = q;
      const top = frames.length > 0 ? frames[frames.length - 1] : undefined;
      if (expectKey && top) {
        expectKey = false;
        keys++;
        if (findDuplicate && duplicate === undefined) {
          let key = text.slice(start, q);
          if (key.includes('\\')) {
            try {
              key = JSON.parse(`"${key}"`) as string;
            } catch {
              continue; // not a JSON string: JSON.parse of the whole text refuses it
            }
          }
          if (top.has(key)) duplicate = key;
          else top.add(key);
        }
      }
      continue;
    }
    if (c === 0x7b /* { */ || c === 0x5b /* [ */) {
      if (frames.length >= maxDepth) {
        throw invalid(`${what} nests objects and arrays more than ${maxDepth} levels deep; flatten it`);
      }
      frames.push(c === 0x7b ? (findDuplicate ? new Set<string>() : NO_KEYS) : null);
      expectKey = c === 0x7b;
    } else if (c === 0x7d /* } */ || c === 0x5d /* ] */) {
      frames.pop();
      expectKey = false;
    } else if (c === 0x2c /* , */) {
      expectKey = frames.length > 0 && frames[frames.length - 1] !== null;
    }
  }
  return { keys, duplicate };
}

const NO_KEYS: Set<string> = new Set();

/**
 * Walks the parsed value (depth already bounded): numbers finite, strings well-formed UTF-16.
 * Returns how many keys its objects hold in all.
 */
function checkValues(value: unknown, what: string): number {
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw invalid(`${what} holds a number too large to represent (like 1e400); send a finite number`);
    return 0;
  }
  if (typeof value === 'string') {
    if (!value.isWellFormed()) throw loneSurrogate(what);
    return 0;
  }
  if (typeof value !== 'object' || value === null) return 0;
  let keys = 0;
  if (Array.isArray(value)) {
    for (const v of value) keys += checkValues(v, what);
    return keys;
  }
  const record = value as Record<string, unknown>;
  // JSON.parse builds plain objects: every enumerable key is an own key.
  for (const k in record) {
    if (!k.isWellFormed()) throw loneSurrogate(what);
    keys += 1 + checkValues(record[k], what);
  }
  return keys;
}

// A lone surrogate escape (`"\ud800"`) is legal JSON text but no UTF-8 upstream can hold it:
// some replace it with U+FFFD (so two different keys or models become equal), some refuse the
// request. Refusing it here keeps one reading.
const loneSurrogate = (what: string): RequestFormatError =>
  invalid(`${what} contains a lone UTF-16 surrogate escape (like \\ud800), which is not a Unicode character; send valid Unicode`);

/** Shortened, control-free rendering of client text for an error message. */
function printable(s: string): string {
  const t = s.replace(/[\u0000-\u001f\u007f-\u009f\ud800-\udfff]/g, '?');
  return t.length > 64 ? `${t.slice(0, 64)}…` : t;
}

export interface IntegerRule {
  min: number;
  max: number;
}

const INT32_MAX = 2 ** 31 - 1;

/**
 * The integer fields of the OpenAI and Anthropic APIs that drive cost or fan-out, by path in the
 * body (dots for nesting). Ranges are the providers' documented ones where they are tighter.
 */
export const INTEGER_FIELDS: Readonly<Record<string, IntegerRule>> = {
  n: { min: 1, max: 128 },
  max_tokens: { min: 1, max: INT32_MAX },
  max_completion_tokens: { min: 1, max: INT32_MAX },
  max_output_tokens: { min: 1, max: INT32_MAX },
  max_tool_calls: { min: 0, max: INT32_MAX },
  best_of: { min: 1, max: 20 },
  // Seeds are int64 upstream; the safe-integer range is what JSON.parse reads exactly.
  seed: { min: -Number.MAX_SAFE_INTEGER, max: Number.MAX_SAFE_INTEGER },
  top_logprobs: { min: 0, max: 20 },
  dimensions: { min: 1, max: 65_536 },
  'thinking.budget_tokens': { min: 1, max: INT32_MAX },
};

/**
 * Checks the integer fields named in `rules` (default INTEGER_FIELDS) where present: an integer
 * within the rule's range, or `null` (the APIs treat null as absent). Anything else is
 * `invalid_request` naming the field. Other fields are not looked at.
 */
export function validateNumbers(value: Record<string, unknown>, rules: Readonly<Record<string, IntegerRule>> = INTEGER_FIELDS): void {
  for (const [path, rule] of Object.entries(rules)) {
    let v: unknown = value;
    for (const part of path.split('.')) {
      if (typeof v !== 'object' || v === null || Array.isArray(v) || !Object.hasOwn(v, part)) {
        v = undefined;
        break;
      }
      v = (v as Record<string, unknown>)[part];
    }
    if (v === undefined || v === null) continue;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < rule.min || v > rule.max) {
      throw invalid(`"${path}" must be an integer from ${rule.min} to ${rule.max}; send it as a plain JSON integer in that range, or leave it out`, path);
    }
  }
}
