/**
 * Checks a streamed multipart/form-data upload (POST /v1/files, up to 512 MB) as it passes, with
 * bounded memory, and passes the bytes through unchanged. It applies the same strict rules as
 * multipart.ts (see there), learns the `purpose` field, and when `purpose` is `batch` and the key
 * needs it (`checkLine` or `requireBatchCheck` given) reads every file part as JSONL: each line one
 * JSON object under json-body.ts's rules, handed to `checkLine` (the caller's scope and model
 * allow-list check).
 *
 * What reaches the output is only ever a prefix of the input, and never more than what has been
 * checked: file content in batch mode up to the end of the last checked line, and the final
 * part's end (CRLF, close delimiter, epilogue) only once the whole body has been read and every
 * line checked. A refusal errors the stream with a RequestFormatError (or checkLine's error as it
 * is), so an upstream only ever sees a truncated, invalid upload — the caller must then abort the
 * upstream request (destroy it, never end it cleanly).
 *
 * Memory: the held tail is at most one line (maxLineBytes), one header block or one field, plus
 * a boundary's length.
 */
import { Transform, type TransformCallback } from 'node:stream';
import { DEFAULT_MAX_DEPTH, RequestFormatError, decodeUtf8, invalid, parseJsonObjectText } from './json-body.ts';
import { DEFAULT_MAX_HEADER_BYTES, FormNames, dashBoundary, decodeFieldValue, parsePartHeaders, type PartHeaders } from './multipart.ts';

export interface UploadInspectorOptions {
  boundary: string;
  /** Called for every JSON line of a batch file; a returned error refuses the upload. */
  checkLine?: (line: Record<string, unknown>, lineNo: number) => RequestFormatError | undefined;
  /**
   * The key has a model allow-list: a batch upload's lines must be checked, so a file part that
   * arrives before `purpose` is known is refused (it could not be checked as it passed).
   */
  requireBatchCheck?: boolean;
  /** Longest JSONL line, in bytes. Default 8 MiB. */
  maxLineBytes?: number;
  /** Longest non-file field. Default 64 KiB. */
  maxFieldBytes?: number;
  /** Longest part header block and preamble. Default 16 KiB. */
  maxHeaderBytes?: number;
  /** Most parts. Default 100. */
  maxParts?: number;
  /** Nesting depth of each JSON line. Default 64. */
  maxDepth?: number;
}

export const DEFAULT_MAX_LINE_BYTES = 8 * 1024 * 1024;
export const DEFAULT_UPLOAD_MAX_FIELD_BYTES = 64 * 1024;
export const DEFAULT_UPLOAD_MAX_PARTS = 100;

type PartMode = 'field' | 'file' | 'lines';

type State =
  | { kind: 'preamble'; searchFrom: number }
  | { kind: 'headers'; start: number; searchFrom: number }
  | { kind: 'content'; headers: PartHeaders; mode: PartMode; start: number; searchFrom: number }
  | { kind: 'close'; at: number }
  | { kind: 'failed' };

const isBatchPurpose = (purpose: string): boolean => purpose.trim().toLowerCase() === 'batch';

export class UploadInspector extends Transform {
  /** The `purpose` field, once read. */
  purpose: string | undefined;
  /** JSON lines checked (batch uploads). */
  lines = 0;
  /** Non-file fields read, by name. */
  readonly fields = new Map<string, string>();

  private readonly dash: Buffer;
  private readonly opts: Required<Omit<UploadInspectorOptions, 'checkLine' | 'boundary'>> & Pick<UploadInspectorOptions, 'checkLine'>;
  private readonly names = new FormNames();
  private parts = 0;
  /** A file part streamed before `purpose` was known (its lines were not checked). */
  private uncheckedFile = false;

  // Received bytes live in buf[0, len); buf[0] is absolute offset `base`; `data` is buf[0, len).
  // Bytes are written only past `len` and a full buffer is replaced, never reused, so pushed
  // bytes are subarrays of buf that nothing overwrites afterwards (no copy on the way out).
  private buf = Buffer.alloc(0);
  private data = this.buf;
  private base = 0;
  private len = 0;
  /** Absolute offset up to which output was pushed. */
  private emitted = 0;
  /** Absolute offset up to which output may be pushed. */
  private safe = 0;
  private state: State = { kind: 'preamble', searchFrom: 0 };
  // Batch line scanning within the current part (absolute offsets).
  private lineStart = 0;
  private lineScan = 0;
  private lineNo = 0;

  constructor(options: UploadInspectorOptions) {
    super();
    this.dash = dashBoundary(options.boundary);
    this.opts = {
      checkLine: options.checkLine,
      requireBatchCheck: options.requireBatchCheck ?? false,
      maxLineBytes: options.maxLineBytes ?? DEFAULT_MAX_LINE_BYTES,
      maxFieldBytes: options.maxFieldBytes ?? DEFAULT_UPLOAD_MAX_FIELD_BYTES,
      maxHeaderBytes: options.maxHeaderBytes ?? DEFAULT_MAX_HEADER_BYTES,
      maxParts: options.maxParts ?? DEFAULT_UPLOAD_MAX_PARTS,
      maxDepth: options.maxDepth ?? DEFAULT_MAX_DEPTH,
    };
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    if (this.state.kind === 'failed') return done();
    try {
      if (this.passFileChunk(chunk)) return done();
      this.append(chunk);
      this.advance();
      this.pushSafe();
      done();
    } catch (err) {
      this.state = { kind: 'failed' };
      done(err as Error);
    }
  }

  override _flush(done: TransformCallback): void {
    if (this.state.kind === 'failed') return done();
    try {
      if (this.state.kind !== 'close') {
        throw invalid('the upload ended before its close delimiter (--boundary--); send the complete body');
      }
      const epilogue = this.received - this.state.at;
      if (epilogue !== 0 && !(epilogue === 2 && this.byte(this.state.at) === 0x0d && this.byte(this.state.at + 1) === 0x0a)) {
        throw afterClose();
      }
      this.failClosedOnUncheckedBatch();
      this.safe = this.received;
      this.pushSafe();
      done();
    } catch (err) {
      this.state = { kind: 'failed' };
      done(err as Error);
    }
  }

  private get received(): number {
    return this.base + this.len;
  }

  private byte(abs: number): number | undefined {
    return this.buf[abs - this.base];
  }

  /** First `needle` at or after `from` that ends by `upTo`, or -1. */
  private indexOf(needle: Buffer | number, from: number, upTo = this.received): number {
    const i = this.data.indexOf(needle, Math.max(0, from - this.base));
    if (i < 0) return -1;
    const at = i + this.base;
    return at + (typeof needle === 'number' ? 1 : needle.length) > upTo ? -1 : at;
  }

  private isCrlfAt(abs: number): boolean {
    return abs >= this.base && this.byte(abs) === 0x0d && this.byte(abs + 1) === 0x0a;
  }

  /**
   * The fast path for the bulk of a large file that needs no line checks: when neither the
   * chunk nor its junction with the held tail contains the boundary, the chunk passes as it is
   * (no copy) except its last bytes, which could start a delimiter and stay held. Otherwise the
   * chunk takes the general path. The writer must not reuse a chunk's memory after writing it
   * (an http request stream never does).
   */
  private passFileChunk(chunk: Buffer): boolean {
    const st = this.state;
    const tail = this.dash.length + 1;
    if (st.kind !== 'content' || st.mode !== 'file' || chunk.length < 4 * tail) return false;
    const held = this.buf.subarray(this.emitted - this.base, this.len);
    if (held.length > 2 * tail) return false;
    if (chunk.indexOf(this.dash) >= 0 || Buffer.concat([held, chunk.subarray(0, tail)]).indexOf(this.dash) >= 0) return false;
    const keepFrom = chunk.length - tail;
    const base = this.received + keepFrom;
    if (held.length > 0) this.push(held);
    this.push(chunk.subarray(0, keepFrom));
    this.buf = Buffer.from(chunk.subarray(keepFrom));
    this.data = this.buf;
    this.base = base;
    this.len = tail;
    this.emitted = base;
    this.safe = base;
    st.searchFrom = base;
    return true;
  }

  /**
   * Appends a chunk. When it does not fit, the bytes not yet pushed move to a new buffer at
   * least twice what they and the chunk need, so copying stays amortised linear.
   */
  private append(chunk: Buffer): void {
    if (this.len + chunk.length > this.buf.length) {
      const keepFrom = this.emitted - this.base;
      const keep = this.len - keepFrom;
      const next = Buffer.allocUnsafe(Math.max(MIN_BUFFER_BYTES, (keep + chunk.length) * 2));
      this.buf.copy(next, 0, keepFrom, this.len);
      this.buf = next;
      this.base = this.emitted;
      this.len = keep;
    }
    chunk.copy(this.buf, this.len);
    this.len += chunk.length;
    this.data = this.buf.subarray(0, this.len);
  }

  private pushSafe(): void {
    if (this.safe <= this.emitted) return;
    const out = this.buf.subarray(this.emitted - this.base, this.safe - this.base);
    this.emitted = this.safe;
    this.push(out);
  }

  /** Runs the parser as far as the bytes received allow. */
  private advance(): void {
    const L = this.dash.length;
    for (;;) {
      const st = this.state;
      switch (st.kind) {
        case 'preamble': {
          const at = this.indexOf(this.dash, st.searchFrom);
          if (at < 0) {
            if (this.received > this.opts.maxHeaderBytes + L) throw preambleTooLong(this.opts.maxHeaderBytes);
            st.searchFrom = Math.max(0, this.received - L + 1);
            return;
          }
          if (at > 0 && !this.isCrlfAt(at - 2)) throw boundaryInContent();
          if (at > this.opts.maxHeaderBytes) throw preambleTooLong(this.opts.maxHeaderBytes);
          st.searchFrom = at;
          if (this.received < at + L + 2) return;
          if (this.byte(at + L) === 0x2d && this.byte(at + L + 1) === 0x2d) throw invalid('the multipart body has no parts; send at least one field');
          if (!this.isCrlfAt(at + L)) throw boundaryInContent();
          this.state = { kind: 'headers', start: at + L + 2, searchFrom: at + L + 2 };
          // The delimiter line passes with the header block it opens, once that block parsed:
          // a body cut off after a delimiter never reaches the upstream whole.
          this.safe = at;
          continue;
        }
        case 'headers': {
          if (this.received < st.start + 2) return;
          if (this.isCrlfAt(st.start)) throw invalid('a multipart part has no headers; each part needs Content-Disposition: form-data; name="…"');
          const headerEnd = this.indexOf(CRLFCRLF, st.searchFrom);
          if (headerEnd < 0) {
            if (this.received - st.start > this.opts.maxHeaderBytes + 4) throw headersTooLong(this.opts.maxHeaderBytes);
            st.searchFrom = Math.max(st.start, this.received - 3);
            return;
          }
          if (headerEnd - st.start > this.opts.maxHeaderBytes) throw headersTooLong(this.opts.maxHeaderBytes);
          if (this.parts >= this.opts.maxParts) throw invalid(`the multipart body has more than ${this.opts.maxParts} parts`);
          const headers = parsePartHeaders(this.buf.subarray(st.start - this.base, headerEnd - this.base));
          this.names.add(headers.name);
          this.parts++;
          const contentStart = headerEnd + 4;
          let mode: PartMode = 'field';
          if (headers.filename !== undefined) {
            if (this.purpose === undefined) {
              if (this.opts.requireBatchCheck) {
                throw invalid('the file part comes before the purpose field; send the purpose field first so the upload can be checked as it streams', 'purpose');
              }
              this.uncheckedFile = true;
              mode = 'file';
            } else {
              mode = isBatchPurpose(this.purpose) && this.checksLines ? 'lines' : 'file';
            }
          }
          if (mode === 'lines') {
            this.lineStart = contentStart;
            this.lineScan = contentStart;
            this.lineNo = 0;
          }
          // The content search starts at the part's first header byte, so a boundary inside the
          // header block is found (and refused) too.
          this.state = { kind: 'content', headers, mode, start: contentStart, searchFrom: st.start };
          // A field's bytes may pass at once: nothing the part's content says is held back for it.
          this.safe = contentStart;
          continue;
        }
        case 'content': {
          const at = this.indexOf(this.dash, st.searchFrom);
          if (at < 0) {
            // Bytes before this point cannot belong to a delimiter line (CRLF + --boundary).
            const settled = Math.max(st.start, this.received - (L + 1));
            st.searchFrom = Math.max(st.searchFrom, this.received - L + 1);
            if (st.mode === 'field') {
              if (this.received - st.start > this.opts.maxFieldBytes + L + 2) throw fieldTooLong(st.headers.name, this.opts.maxFieldBytes);
            } else if (st.mode === 'file') {
              this.safe = settled;
            } else {
              this.checkLines(settled, false);
              this.safe = this.lineStart;
            }
            return;
          }
          if (at - 2 < st.start || !this.isCrlfAt(at - 2)) throw boundaryInContent();
          const contentEnd = at - 2;
          st.searchFrom = at;
          if (this.received < at + L + 2) {
            if (st.mode === 'lines') {
              this.checkLines(contentEnd, false);
              this.safe = this.lineStart;
            } else if (st.mode === 'file') {
              this.safe = contentEnd;
            }
            return;
          }
          const closing = this.byte(at + L) === 0x2d && this.byte(at + L + 1) === 0x2d;
          if (!closing && !this.isCrlfAt(at + L)) throw boundaryInContent();

          if (st.mode === 'field') {
            if (contentEnd - st.start > this.opts.maxFieldBytes) throw fieldTooLong(st.headers.name, this.opts.maxFieldBytes);
            const value = decodeFieldValue(this.buf.subarray(st.start - this.base, contentEnd - this.base), st.headers.name);
            if (!st.headers.name.endsWith('[]')) this.fields.set(st.headers.name, value);
            if (st.headers.name === 'purpose') {
              this.purpose = value;
              this.failClosedOnUncheckedBatch();
            }
          } else if (st.mode === 'lines') {
            this.checkLines(contentEnd, true);
          }
          if (closing) {
            // The final part's end and the close delimiter pass only at the end (_flush).
            this.safe = contentEnd;
            this.state = { kind: 'close', at: at + L + 2 };
            continue;
          }
          this.state = { kind: 'headers', start: at + L + 2, searchFrom: at + L + 2 };
          // As above: the delimiter waits for the next part's header block.
          this.safe = contentEnd;
          continue;
        }
        case 'close': {
          const rest = this.received - st.at;
          if (rest > 2 || (rest >= 1 && this.byte(st.at) !== 0x0d) || (rest === 2 && this.byte(st.at + 1) !== 0x0a)) throw afterClose();
          return;
        }
        case 'failed':
          return;
      }
    }
  }

  /**
   * Checks the complete JSONL lines of the current file part that end before `upTo`; with
   * `final`, also the last line running up to `upTo` (the part's end).
   */
  private checkLines(upTo: number, final: boolean): void {
    for (;;) {
      const nl = this.lineScan < upTo ? this.indexOf(0x0a, this.lineScan, upTo) : -1;
      if (nl < 0) {
        if (upTo - this.lineStart > this.opts.maxLineBytes) throw lineTooLong(this.lineNo + 1, this.opts.maxLineBytes);
        this.lineScan = Math.max(this.lineScan, upTo);
        if (final && upTo > this.lineStart) {
          this.checkLine(this.lineStart, upTo);
          this.lineStart = upTo;
        }
        return;
      }
      if (nl - this.lineStart > this.opts.maxLineBytes) throw lineTooLong(this.lineNo + 1, this.opts.maxLineBytes);
      this.checkLine(this.lineStart, nl);
      this.lineStart = nl + 1;
      this.lineScan = nl + 1;
    }
  }

  private checkLine(start: number, end: number): void {
    this.lineNo++;
    const what = `line ${this.lineNo} of the batch file`;
    let text = decodeUtf8(this.buf.subarray(start - this.base, end - this.base), what);
    if (text.endsWith('\r')) text = text.slice(0, -1);
    if (BLANK.test(text)) return;
    // CR, U+0085, U+2028, U+2029 end a line for some readers (Python's splitlines): one line
    // must be one line for every reader, so inside strings they must be escaped.
    if (OTHER_LINE_BREAK.test(text)) {
      throw invalid(`${what} contains a bare carriage return or a raw U+0085, U+2028 or U+2029; end lines with LF or CRLF only and escape these inside strings (\\u2028)`);
    }
    const value = parseJsonObjectText(text, this.opts.maxDepth, what);
    this.lines++;
    const refusal = this.opts.checkLine?.(value, this.lineNo);
    if (refusal !== undefined) throw refusal;
  }

  /** Batch files are read line by line only for a key that needs it: otherwise they pass like any file. */
  private get checksLines(): boolean {
    return this.opts.requireBatchCheck || this.opts.checkLine !== undefined;
  }

  /** A batch upload whose file went by before `purpose` said so was never checked: refuse it. */
  private failClosedOnUncheckedBatch(): void {
    if (this.uncheckedFile && this.purpose !== undefined && isBatchPurpose(this.purpose) && this.checksLines) {
      throw invalid('the file part of a batch upload came before the purpose field, so its lines could not be checked; send the purpose field first', 'purpose');
    }
  }
}

const CRLFCRLF = Buffer.from('\r\n\r\n', 'latin1');
const MIN_BUFFER_BYTES = 256 * 1024;
const BLANK = /^[ \t]*$/;
const OTHER_LINE_BREAK = /[\r\u0085\u2028\u2029]/;

const boundaryInContent = (): RequestFormatError =>
  invalid('the multipart boundary appears where it is not a delimiter line (inside a part, or followed by something other than CRLF or "--"); choose a boundary that does not occur in the content and end delimiter lines with CRLF');
const afterClose = (): RequestFormatError =>
  invalid('the multipart body continues after its close delimiter (--boundary--); end the body there (one CRLF at most)');
const preambleTooLong = (max: number): RequestFormatError =>
  invalid(`the multipart preamble is longer than ${max} bytes, or the body does not contain the boundary named in Content-Type; start the body with the first boundary`);
const headersTooLong = (max: number): RequestFormatError =>
  invalid(`a multipart part's headers are longer than ${max} bytes or do not end with an empty line (CRLF CRLF)`);
const fieldTooLong = (name: string, max: number): RequestFormatError =>
  new RequestFormatError('request_too_large', `the multipart field "${name}" is longer than ${max} bytes`, { param: name });
const lineTooLong = (lineNo: number, max: number): RequestFormatError =>
  new RequestFormatError('request_too_large', `line ${lineNo} of the batch file is longer than ${max} bytes; split the batch into smaller requests`);
