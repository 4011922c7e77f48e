/**
 * `multipart/form-data` bodies (RFC 7578 over RFC 2046 §5.1), read strictly so that the host
 * and any upstream parser see the same fields: whatever two parsers could read differently is
 * refused rather than guessed at. The rules (each a refusal when broken):
 *
 * - CRLF line endings only; every occurrence of `--boundary` in the body is a delimiter: at the
 *   start or after CRLF, followed by CRLF or (the close delimiter) `--`. No transport padding
 *   (Go and Werkzeug accept spaces or a bare LF there, busboy does not).
 * - A preamble is allowed (it ends in CRLF and cannot contain the boundary, by the rule above);
 *   the close delimiter is required and may be followed only by one CRLF: no epilogue.
 * - At least one part. Each part has exactly one `Content-Disposition: form-data; name="…"`
 *   with an optional `; filename="…"` — lower-case, quoted, non-empty, each once, no other
 *   parameters (`name*=`/`filename*=` RFC 2231/5987 encodings are decoded by some parsers only).
 *   Quoted values may not contain `"`, `\`, `;` or control characters (parsers differ on
 *   backslash escapes, and naive ones split on `;`); browsers and the SDKs percent-encode `"`.
 * - Part headers: `Content-Disposition`, and `Content-Type` on file parts only. No folding, no
 *   other header — in particular no `Content-Transfer-Encoding` (RFC 7578 §4.7 deprecates it, and
 *   Go decodes quoted-printable where others pass it through).
 * - A name is used by one part only, except names ending in `[]` (the SDKs send arrays as
 *   repeated `timestamp_granularities[]` / `image[]` parts); `x` and `x[]` together are refused,
 *   since some parsers fold `x[]` into `x`.
 * - Field values (parts without a filename) are UTF-8 without BOM.
 *
 * Accepts what the OpenAI and Anthropic SDKs send (undici FormData, openai-node's streaming
 * encoder, httpx) — see /work/shared/specs/captures and multipart.test.ts. Pure; never throws
 * anything but RequestFormatError.
 */
import { RequestFormatError, decodeUtf8, invalid } from './json-body.ts';
import { isTchar, isValidBoundary, parseMediaType } from './media-type.ts';

export interface MultipartFile {
  name: string;
  filename: string;
  /** The part's Content-Type header value as sent (trimmed), when it has one. */
  contentType?: string;
  /** Byte offsets of the part's content in the body: [start, end). */
  start: number;
  end: number;
}

export interface MultipartPart {
  name: string;
  /** Present for file parts only. */
  filename?: string;
  contentType?: string;
  start: number;
  end: number;
}

export interface MultipartForm {
  /** Non-file fields whose name is used once (names not ending in `[]`). */
  fields: Map<string, string>;
  /** Non-file fields named `x[]`, in order, under their full name (`timestamp_granularities[]`). */
  lists: Map<string, string[]>;
  files: MultipartFile[];
  /** Every part in order. */
  parts: MultipartPart[];
}

export interface MultipartLimits {
  /** Most parts a body may have. Default 1000. */
  maxParts?: number;
  /** Most bytes of one part's header block (and of the preamble). Default 16 KiB. */
  maxHeaderBytes?: number;
  /** Most bytes of one non-file field's value. Default 1 MiB. */
  maxFieldBytes?: number;
}

export const DEFAULT_MAX_PARTS = 1000;
export const DEFAULT_MAX_HEADER_BYTES = 16 * 1024;
export const DEFAULT_MAX_FIELD_BYTES = 1024 * 1024;

const CRLFCRLF = Buffer.from('\r\n\r\n', 'latin1');

const isCrlfAt = (b: Uint8Array, i: number): boolean => i >= 0 && b[i] === 0x0d && b[i + 1] === 0x0a;
const isDashDashAt = (b: Uint8Array, i: number): boolean => b[i] === 0x2d && b[i + 1] === 0x2d;

/** `--boundary` as bytes; throws RequestFormatError for a boundary RFC 2046 does not allow. */
export function dashBoundary(boundary: string): Buffer {
  if (typeof boundary !== 'string' || !isValidBoundary(boundary)) {
    throw invalid('the multipart boundary must be 1 to 70 characters of letters, digits and \'()+_,-./:=? (not ending in a space)');
  }
  return Buffer.from(`--${boundary}`, 'latin1');
}

const boundaryInContent = (): RequestFormatError =>
  invalid('the multipart boundary appears where it is not a delimiter line (inside a part, or followed by something other than CRLF or "--"); choose a boundary that does not occur in the content and end delimiter lines with CRLF');

/** Parses a whole multipart/form-data body. Throws RequestFormatError on anything not strictly well-formed. */
export function parseMultipart(body: Uint8Array, boundary: string, limits?: MultipartLimits): MultipartForm {
  const maxParts = limits?.maxParts ?? DEFAULT_MAX_PARTS;
  const maxHeaderBytes = limits?.maxHeaderBytes ?? DEFAULT_MAX_HEADER_BYTES;
  const maxFieldBytes = limits?.maxFieldBytes ?? DEFAULT_MAX_FIELD_BYTES;
  if (!(body instanceof Uint8Array)) throw invalid('the request body is missing; send multipart/form-data');
  const b = Buffer.isBuffer(body) ? body : Buffer.from(body.buffer, body.byteOffset, body.byteLength);
  const dash = dashBoundary(boundary);

  const first = b.indexOf(dash);
  if (first < 0) throw invalid('the body does not contain the multipart boundary named in Content-Type; send the boundary from the header');
  if (first > 0 && !isCrlfAt(b, first - 2)) throw boundaryInContent();
  if (first > maxHeaderBytes) throw invalid(`the multipart preamble is longer than ${maxHeaderBytes} bytes; start the body with the first boundary`);
  let p = first + dash.length;
  if (isDashDashAt(b, p)) throw invalid('the multipart body has no parts; send at least one field');
  if (!isCrlfAt(b, p)) throw boundaryInContent();
  p += 2;

  const form: MultipartForm = { fields: new Map(), lists: new Map(), files: [], parts: [] };
  const names = new FormNames();
  while (true) {
    if (form.parts.length >= maxParts) throw invalid(`the multipart body has more than ${maxParts} parts`);
    if (isCrlfAt(b, p)) throw invalid('a multipart part has no headers; each part needs Content-Disposition: form-data; name="…"');
    const next = b.indexOf(dash, p);
    const headerEnd = b.indexOf(CRLFCRLF, p);
    if (headerEnd < 0 || (next >= 0 && next < headerEnd + 4)) {
      throw invalid('a multipart part\'s headers do not end with an empty line (CRLF CRLF) before its content');
    }
    if (headerEnd - p > maxHeaderBytes) throw invalid(`a multipart part's headers are longer than ${maxHeaderBytes} bytes`);
    const headers = parsePartHeaders(b.subarray(p, headerEnd));
    const start = headerEnd + 4;
    if (next < 0) throw invalid('the multipart body ends without its close delimiter (--boundary--); send the complete body');
    if (next - 2 < start || !isCrlfAt(b, next - 2)) throw boundaryInContent();
    const end = next - 2;

    names.add(headers.name);
    const part: MultipartPart = { name: headers.name, start, end };
    if (headers.filename !== undefined) {
      part.filename = headers.filename;
      if (headers.contentType !== undefined) part.contentType = headers.contentType;
      form.files.push({ ...part, filename: headers.filename });
    } else {
      if (end - start > maxFieldBytes) throw invalid(`the multipart field "${headers.name}" is longer than ${maxFieldBytes} bytes`, headers.name);
      const value = decodeFieldValue(b.subarray(start, end), headers.name);
      if (headers.name.endsWith('[]')) {
        const list = form.lists.get(headers.name);
        if (list) list.push(value);
        else form.lists.set(headers.name, [value]);
      } else {
        form.fields.set(headers.name, value);
      }
    }
    form.parts.push(part);

    p = next + dash.length;
    if (isCrlfAt(b, p)) {
      p += 2;
      continue;
    }
    if (!isDashDashAt(b, p)) throw boundaryInContent();
    p += 2;
    if (p === b.length || (p + 2 === b.length && isCrlfAt(b, p))) return form;
    throw invalid('the multipart body continues after its close delimiter (--boundary--); end the body there (one CRLF at most)');
  }
}

/**
 * Returns new bytes in which the non-file field `name` (used once) holds `value`; everything else
 * is byte-identical. Used for model alias rewrites. Throws RequestFormatError when the body is
 * not valid, the field is absent or repeated, or the value could not be carried safely.
 */
export function replaceField(body: Uint8Array, boundary: string, name: string, value: string): Buffer {
  const form = parseMultipart(body, boundary);
  const part = form.parts.find((p) => p.name === name);
  if (part === undefined || part.filename !== undefined || !form.fields.has(name)) {
    throw invalid(`the multipart body has no field "${name}" to rewrite`, name);
  }
  if (!value.isWellFormed()) throw invalid('the replacement value is not valid Unicode', name);
  const bytes = Buffer.from(value, 'utf8');
  if (bytes.includes(dashBoundary(boundary)) || (bytes.length >= 3 && bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf)) {
    throw invalid('the replacement value cannot be carried in this multipart body', name);
  }
  const b = Buffer.from(body.buffer, body.byteOffset, body.byteLength);
  const out = Buffer.concat([b.subarray(0, part.start), bytes, b.subarray(part.end)]);
  // A value ending in "-" or CR next to the delimiter cannot form a new delimiter (the delimiter
  // starts with CRLF), but re-reading makes the guarantee independent of that argument.
  const again = parseMultipart(out, boundary);
  if (again.fields.get(name) !== value || again.parts.length !== form.parts.length) {
    throw invalid('the replacement value cannot be carried in this multipart body', name);
  }
  return out;
}

export interface PartHeaders {
  name: string;
  filename?: string;
  contentType?: string;
}

/**
 * Parses one part's header block (the bytes between the delimiter line's CRLF and the empty
 * line, without the final CRLF CRLF) under the rules in the module header.
 */
export function parsePartHeaders(block: Uint8Array): PartHeaders {
  const text = decodeUtf8(block, 'a multipart part header');
  let disposition: string | undefined;
  let contentType: string | undefined;
  for (const line of text.split('\r\n')) {
    if (line.length === 0) throw invalid('a multipart part has an empty header line');
    for (let i = 0; i < line.length; i++) {
      const c = line.charCodeAt(i);
      if ((c < 0x20 && c !== 0x09) || c === 0x7f) {
        throw invalid(c === 0x0d || c === 0x0a ? 'a multipart header line ends with a bare CR or LF; end header lines with CRLF' : 'a multipart header contains a control character');
      }
    }
    const first = line.charCodeAt(0);
    if (first === 0x20 || first === 0x09) throw invalid('a multipart header is folded over two lines; send each header on one line');
    const colon = line.indexOf(':');
    const fieldName = colon > 0 ? line.slice(0, colon) : '';
    if (fieldName.length === 0 || ![...fieldName].every((ch) => isTchar(ch.charCodeAt(0)))) {
      throw invalid('a multipart part has a malformed header line; send "Name: value"');
    }
    const value = line.slice(colon + 1).replace(/^[ \t]+|[ \t]+$/g, '');
    switch (fieldName.toLowerCase()) {
      case 'content-disposition':
        if (disposition !== undefined) throw invalid('a multipart part has two Content-Disposition headers; send one');
        disposition = value;
        break;
      case 'content-type':
        if (contentType !== undefined) throw invalid('a multipart part has two Content-Type headers; send one');
        contentType = value;
        break;
      case 'content-transfer-encoding':
        throw invalid('multipart parts may not use Content-Transfer-Encoding (RFC 7578 §4.7); send the content as raw bytes');
      default:
        throw invalid(`a multipart part has the header "${fieldName.slice(0, 64)}", which is not accepted; send only Content-Disposition and, for files, Content-Type`);
    }
  }
  if (disposition === undefined) throw invalid('a multipart part has no Content-Disposition header; send Content-Disposition: form-data; name="…"');
  const headers = parseDisposition(disposition);
  if (contentType !== undefined) {
    if (headers.filename === undefined) {
      throw invalid(`the multipart field "${headers.name}" has a Content-Type; send plain fields without one (only file parts carry a type)`, headers.name);
    }
    if (parseMediaType(contentType) === undefined) throw invalid(`the file part "${headers.name}" has a malformed Content-Type`, headers.name);
    headers.contentType = contentType;
  }
  return headers;
}

function parseDisposition(value: string): PartHeaders {
  const bad = (why: string): RequestFormatError =>
    invalid(`a multipart Content-Disposition is not accepted (${why}); send exactly: form-data; name="field" (and for files; filename="name.ext")`);
  if (!value.startsWith('form-data')) throw bad('it must start with form-data');
  const params = new Map<string, string>();
  let i = 'form-data'.length;
  const n = value.length;
  while (i < n) {
    if (value[i] !== ';') throw bad('parameters must be separated by ";"');
    i++;
    while (value[i] === ' ' || value[i] === '\t') i++;
    const nameStart = i;
    while (i < n && value[i] !== '=' && value[i] !== ';') i++;
    const param = value.slice(nameStart, i);
    if (param !== 'name' && param !== 'filename') {
      throw bad(param.endsWith('*') ? `encoded parameter ${param.slice(0, 32)} (RFC 2231); send the value quoted as UTF-8` : `parameter "${param.slice(0, 32)}"`);
    }
    if (params.has(param)) throw bad(`${param} given twice`);
    if (value[i] !== '=' || value[i + 1] !== '"') throw bad(`${param} must be a quoted string`);
    i += 2;
    const valueStart = i;
    while (i < n && value[i] !== '"') {
      const ch = value[i];
      if (ch === '\\' || ch === ';') throw bad(`${param} contains "${ch}"`);
      i++;
    }
    if (i >= n) throw bad(`${param} has no closing quote`);
    const v = value.slice(valueStart, i);
    if (v.length === 0) throw bad(`${param} is empty`);
    params.set(param, v);
    i++;
  }
  const name = params.get('name');
  if (name === undefined) throw bad('name is missing');
  const filename = params.get('filename');
  return filename === undefined ? { name } : { name, filename };
}

/** Field values are UTF-8 text (RFC 7578 §5.1.2 default); a BOM or invalid bytes are refused. */
export function decodeFieldValue(bytes: Uint8Array, name: string): string {
  try {
    return decodeUtf8(bytes, `the multipart field "${name}"`);
  } catch (err) {
    if (err instanceof RequestFormatError) throw new RequestFormatError(err.code, err.message, { param: name });
    throw err;
  }
}

/**
 * The one-part-per-name rule, shared with the streaming inspector: a name once, unless it ends
 * in `[]`; `x` and `x[]` never together.
 */
export class FormNames {
  private readonly seen = new Set<string>();
  add(name: string): void {
    const isList = name.endsWith('[]');
    const other = isList ? name.slice(0, -2) : `${name}[]`;
    if ((!isList && this.seen.has(name)) || this.seen.has(other)) {
      throw invalid(`the multipart field "${name}" is sent more than once; send each field once (arrays as name[])`, name);
    }
    this.seen.add(name);
  }
}
