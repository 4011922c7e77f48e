/**
 * Media types (`Content-Type`) parsed the way RFC 9110 §8.3.1 defines them, so the host reads a
 * body's type exactly as a standards-following upstream would: type and subtype are
 * case-insensitive tokens, parameters are `;name=value` with a token or a quoted-string value and
 * case-insensitive names. Anything ambiguous — a header sent twice, a parameter given twice, bytes
 * the grammar does not allow — yields `undefined`, which callers treat as "could not tell" and
 * refuse. Pure; never throws.
 */

export interface MediaType {
  /** Lower-cased, e.g. `application`. */
  type: string;
  /** Lower-cased, e.g. `vnd.api+json`. */
  subtype: string;
  /** `type/subtype`, lower-cased. */
  essence: string;
  /** Parameter names lower-cased; values as sent (case kept), quoted-strings unquoted and unescaped. */
  parameters: ReadonlyMap<string, string>;
  /**
   * Names of parameters whose quoted-string value used a quoted-pair (`\x`). Receivers disagree on
   * whether to unescape them (RFC 9110 says yes, many multipart parsers say no), so a value that
   * needed one must not be trusted where that difference matters (the multipart boundary).
   */
  escaped: ReadonlySet<string>;
}

// RFC 9110 §5.6.2: tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." / "^" / "_" / "`" / "|" / "~" / DIGIT / ALPHA
export function isTchar(c: number): boolean {
  return (
    (c >= 0x30 && c <= 0x39) ||
    (c >= 0x41 && c <= 0x5a) ||
    (c >= 0x61 && c <= 0x7a) ||
    c === 0x21 || c === 0x23 || c === 0x24 || c === 0x25 || c === 0x26 || c === 0x27 || c === 0x2a ||
    c === 0x2b || c === 0x2d || c === 0x2e || c === 0x5e || c === 0x5f || c === 0x60 || c === 0x7c || c === 0x7e
  );
}

const isOws = (c: number): boolean => c === 0x20 || c === 0x09;

/**
 * Parses a `Content-Type` header value. `undefined` for an absent header, a header given more than
 * once (an array: which one would the upstream use?), or anything outside the RFC 9110 grammar.
 */
export function parseMediaType(header: string | string[] | undefined): MediaType | undefined {
  if (typeof header !== 'string') return undefined;
  const s = header;
  const n = s.length;
  // Header field values are octets (Node hands them over as latin1); anything wider was not received.
  for (let i = 0; i < n; i++) if (s.charCodeAt(i) > 0xff) return undefined;

  let i = 0;
  let end = n;
  while (i < end && isOws(s.charCodeAt(i))) i++;
  while (end > i && isOws(s.charCodeAt(end - 1))) end--;

  const readToken = (): string | undefined => {
    const start = i;
    while (i < end && isTchar(s.charCodeAt(i))) i++;
    return i > start ? s.slice(start, i) : undefined;
  };

  const type = readToken();
  if (type === undefined || s.charCodeAt(i) !== 0x2f /* / */ || i >= end) return undefined;
  i++;
  const subtype = readToken();
  if (subtype === undefined) return undefined;

  const parameters = new Map<string, string>();
  const escaped = new Set<string>();
  // parameters = *( OWS ";" OWS [ parameter ] )
  while (true) {
    while (i < end && isOws(s.charCodeAt(i))) i++;
    if (i >= end) break;
    if (s.charCodeAt(i) !== 0x3b /* ; */) return undefined;
    i++;
    while (i < end && isOws(s.charCodeAt(i))) i++;
    if (i >= end || s.charCodeAt(i) === 0x3b) continue; // empty parameter
    const rawName = readToken();
    if (rawName === undefined || i >= end || s.charCodeAt(i) !== 0x3d /* = */) return undefined;
    i++;
    const name = rawName.toLowerCase();
    let value: string;
    if (i < end && s.charCodeAt(i) === 0x22 /* " */) {
      // quoted-string = DQUOTE *( qdtext / quoted-pair ) DQUOTE
      i++;
      let out = '';
      let closed = false;
      while (i < end) {
        const c = s.charCodeAt(i);
        if (c === 0x22) {
          closed = true;
          i++;
          break;
        }
        if (c === 0x5c /* \ */) {
          // quoted-pair = "\" ( HTAB / SP / VCHAR / obs-text )
          const d = i + 1 < end ? s.charCodeAt(i + 1) : -1;
          if (!(d === 0x09 || (d >= 0x20 && d !== 0x7f && d >= 0))) return undefined;
          escaped.add(name);
          out += s[i + 1];
          i += 2;
          continue;
        }
        // qdtext = HTAB / SP / %x21 / %x23-5B / %x5D-7E / obs-text
        if (!(c === 0x09 || (c >= 0x20 && c !== 0x7f))) return undefined;
        out += s[i];
        i++;
      }
      if (!closed) return undefined;
      value = out;
    } else {
      const v = readToken();
      if (v === undefined) return undefined;
      value = v;
    }
    if (parameters.has(name)) return undefined;
    parameters.set(name, value);
  }

  const t = type.toLowerCase();
  const st = subtype.toLowerCase();
  return { type: t, subtype: st, essence: `${t}/${st}`, parameters, escaped };
}

/**
 * Every value of header `name` as received, from Node's `req.rawHeaders` (name/value pairs).
 * Node's `req.headers` keeps only the first `Content-Type` of several and drops the rest, while
 * an upstream may read the last: pass this to parseMediaType so a repeated header is refused.
 */
export function rawHeaderValues(rawHeaders: readonly string[], name: string): string | string[] | undefined {
  const lower = name.toLowerCase();
  const values: string[] = [];
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    if (rawHeaders[i]!.toLowerCase() === lower) values.push(rawHeaders[i + 1]!);
  }
  return values.length === 0 ? undefined : values.length === 1 ? values[0] : values;
}

/**
 * JSON bodies: `application/json` and every `+json` structured-syntax suffix (RFC 6839 §3.1,
 * e.g. `application/vnd.api+json`), plus the legacy `text/json`. Erring towards "this is JSON"
 * is the safe side: the body then gets its model checked.
 */
export function isJsonType(mt: MediaType | undefined): boolean {
  if (mt === undefined) return false;
  return mt.essence === 'application/json' || mt.essence === 'text/json' || mt.subtype.endsWith('+json');
}

/** True when the charset parameter is absent or names UTF-8 — the only encoding the host decodes JSON in. */
export function hasUtf8Charset(mt: MediaType): boolean {
  const cs = mt.parameters.get('charset');
  return cs === undefined || /^utf-?8$/i.test(cs);
}

export function isMultipartFormData(mt: MediaType | undefined): boolean {
  return mt !== undefined && mt.essence === 'multipart/form-data';
}

// RFC 2046 §5.1.1: bcharsnospace := DIGIT / ALPHA / "'" / "(" / ")" / "+" / "_" / "," / "-" / "." / "/" / ":" / "=" / "?"
const BOUNDARY = /^[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]$/;

/** True for a boundary RFC 2046 §5.1.1 allows: 1..70 bchars, not ending in a space. */
export function isValidBoundary(boundary: string): boolean {
  return BOUNDARY.test(boundary);
}

/**
 * The boundary of a `multipart/*` type, or `undefined` when it is missing, outside RFC 2046's
 * character set or length, or was written with a quoted-pair (receivers unescape differently).
 */
export function multipartBoundary(mt: MediaType | undefined): string | undefined {
  if (mt === undefined || mt.type !== 'multipart' || mt.escaped.has('boundary')) return undefined;
  const b = mt.parameters.get('boundary');
  return b !== undefined && isValidBoundary(b) ? b : undefined;
}
