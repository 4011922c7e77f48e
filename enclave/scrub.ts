/**
 * Invariant 9: no response carries the upstream key. Every response header and body byte leaving
 * the enclave passes through a `KeyScrubber`, which overwrites each occurrence of the key in the
 * encodings an upstream may echo it in — raw, base64 and base64url (at every alignment, so the
 * key inside a longer encoded string such as a Basic credential is caught), hex (either case),
 * URL/percent-encoded, JSON-escaped — with `*` of the same length (Content-Length stays true).
 * Streaming: only the end of a chunk that could begin a match (its longest suffix that is a prefix
 * of some pattern, usually nothing) is held back until the next chunk, so a match split across
 * chunks, at any offset, is still caught while ordinary streamed text passes at once — holding a
 * fixed tail delayed every SSE event by one. Never logs what it removes.
 */
import { hash } from 'node:crypto';

/** Base64 alphabet over `bytes`, the part that does not depend on what precedes or follows. */
function base64Cores(key: Buffer, alphabet: 'base64' | 'base64url'): string[] {
  const cores: string[] = [];
  for (let shift = 0; shift < 3; shift++) {
    // With `shift` bytes before the key, its bits start at char ⌈shift·8/6⌉ and stop being
    // influenced by what follows after ⌊(shift+len)·8/6⌋ chars.
    const encoded = Buffer.concat([Buffer.alloc(shift), key]).toString(alphabet).replace(/=+$/, '');
    const start = Math.ceil((shift * 8) / 6);
    const end = Math.floor(((shift + key.length) * 8) / 6);
    if (end - start >= 8) cores.push(encoded.slice(start, end));
  }
  return cores;
}

function percentEncodings(key: string): string[] {
  const bytes = [...Buffer.from(key)];
  /** Percent-encodes every byte outside `keep` (a set of ASCII characters). */
  const encode = (keep: RegExp, space = '%20') =>
    bytes.map((b) => (b === 0x20 && space !== '%20' ? space : b < 0x80 && keep.test(String.fromCharCode(b)) ? String.fromCharCode(b) : `%${b.toString(16).padStart(2, '0').toUpperCase()}`)).join('');
  const forms = [
    encodeURIComponent(key),
    encode(/[A-Za-z0-9\-._~]/), // RFC 3986 §2.3 unreserved only
    encode(/[A-Za-z0-9\-._~/]/), // path-safe (Python quote())
    encode(/[A-Za-z0-9\-._*]/, '+'), // application/x-www-form-urlencoded (WHATWG URLSearchParams)
    encode(/[A-Za-z0-9\-._~]/, '+'), // form encoding as Python quote_plus()
    encode(/$^/), // every byte
  ];
  // Hex digits of either case.
  return [...forms, ...forms.map((f) => f.replace(/%[0-9A-F]{2}/g, (m) => m.toLowerCase()))];
}

function jsonEscapings(key: string): string[] {
  const plain = JSON.stringify(key).slice(1, -1);
  const slash = plain.replace(/\//g, '\\/');
  // Fully \u-escaped (some serializers escape every non-alphanumeric character).
  const unicode = [...key].map((c) => (/[A-Za-z0-9]/.test(c) ? c : `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`)).join('');
  return [plain, slash, unicode];
}

/** Every byte pattern the key may be echoed as; longest first, de-duplicated. */
export function keyPatterns(key: string): Buffer[] {
  if (key.length === 0) return [];
  const raw = Buffer.from(key, 'utf8');
  const forms = new Set<string>([
    key,
    ...base64Cores(raw, 'base64'),
    ...base64Cores(raw, 'base64url'),
    raw.toString('hex'),
    raw.toString('hex').toUpperCase(),
    ...percentEncodings(key),
    ...jsonEscapings(key),
  ]);
  return [...forms].filter((f) => f.length > 0).map((f) => Buffer.from(f, 'utf8')).sort((a, b) => b.length - a.length);
}

/**
 * Building the patterns costs more than relaying a small answer (~150 µs: a dozen encodings of
 * the key), so they are kept per key, found by the key's SHA-256 (a high-entropy API key's
 * digest tells nothing), a bounded number of keys, oldest dropped first. They only mask output;
 * holding them serves no request, so a key's lease rules are untouched.
 */
const PATTERN_CACHE_KEYS = 1024;
const patternCache = new Map<string, Buffer[]>();

export function cachedKeyPatterns(key: string): Buffer[] {
  const id = hash('sha256', key, 'base64');
  let patterns = patternCache.get(id);
  if (patterns === undefined) {
    patterns = keyPatterns(key);
    if (patternCache.size >= PATTERN_CACHE_KEYS) patternCache.delete(patternCache.keys().next().value!);
    patternCache.set(id, patterns);
  }
  return patterns;
}

const STAR = 0x2a;

export class KeyScrubber {
  readonly #patterns: Buffer[];
  readonly #hold: number;
  /** A value shorter than the shortest pattern cannot hold one (most header values). */
  readonly #shortest: number;
  #pending: Buffer = Buffer.alloc(0);

  constructor(key: string) {
    this.#patterns = cachedKeyPatterns(key);
    this.#hold = Math.max(0, (this.#patterns[0]?.length ?? 0) - 1);
    this.#shortest = this.#patterns.at(-1)?.length ?? Infinity;
  }

  /** Overwrites every pattern occurrence in `buf` (in place) that starts before `limit`; returns the end of the last one. */
  #mask(buf: Buffer, limit: number): number {
    let covered = 0;
    for (const p of this.#patterns) {
      let at = buf.indexOf(p);
      while (at >= 0 && at < limit) {
        buf.fill(STAR, at, at + p.length);
        covered = Math.max(covered, at + p.length);
        at = buf.indexOf(p, at + 1);
      }
    }
    return covered;
  }

  /** Scrubs a whole value at once (headers, bounded bodies). */
  scrubBuffer(data: Buffer): Buffer {
    const copy = Buffer.from(data);
    this.#mask(copy, copy.length);
    return copy;
  }

  scrubString(text: string): string {
    if (text.length < this.#shortest) return text;
    return this.scrubBuffer(Buffer.from(text, 'latin1')).toString('latin1');
  }

  /** Streams: returns what may be emitted now; keeps a tail that could be the start of a match. */
  push(chunk: Buffer): Buffer {
    const buf = this.#pending.length ? Buffer.concat([this.#pending, chunk]) : Buffer.from(chunk);
    this.#mask(buf, buf.length);
    // Any match not yet complete starts inside the longest suffix that begins some pattern.
    const emit = buf.length - this.#partialTail(buf);
    this.#pending = buf.subarray(emit);
    return buf.subarray(0, emit);
  }

  /** Length of the longest suffix of `buf` that is a proper prefix of a pattern (0 if none). */
  #partialTail(buf: Buffer): number {
    let longest = 0;
    const from = Math.max(0, buf.length - this.#hold);
    for (const p of this.#patterns) {
      const first = p[0]!;
      // Earliest start first: the first one that works is the longest for this pattern.
      for (let at = Math.max(from, buf.length - (p.length - 1)); at < buf.length; at++) {
        if (buf[at] !== first) continue;
        const n = buf.length - at;
        if (n <= longest) break;
        if (buf.compare(p, 0, n, at, buf.length) === 0) {
          longest = n;
          break;
        }
      }
    }
    return longest;
  }

  /** End of stream: what is still held back, scrubbed. */
  flush(): Buffer {
    const rest = this.#pending;
    this.#pending = Buffer.alloc(0);
    this.#mask(rest, rest.length);
    return rest;
  }
}
