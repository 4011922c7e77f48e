/**
 * Request bodies: per-endpoint size limits counted in streamed bytes (Content-Length is trusted
 * only without Transfer-Encoding, and only to refuse early), and the `model` field of multipart
 * bodies for the endpoints that carry one (audio, images) — read whole within their small limit,
 * rewritten only when an alias applies. Large uploads (`/files`, upload parts) have no model
 * and stream through untouched.
 */
import { Transform, type TransformCallback } from 'node:stream';

const MiB = 1024 * 1024;

/** Limits follow the providers' own (OpenAI: audio 25 MB, files 512 MB, upload parts 64 MB). */
export function bodyLimitFor(path: string, jsonLimit: number): number {
  if (/\/audio\/(transcriptions|translations)$/.test(path)) return 25 * MiB;
  if (/\/images\/(edits|variations)$/.test(path)) return 50 * MiB;
  if (/\/uploads\/[\w-]+\/parts$/.test(path)) return 64 * MiB;
  if (/\/v1\/files$/.test(path)) return 512 * MiB;
  // Any-API connections may front upload APIs (storage, media): streamed, never buffered.
  if (path.startsWith('/any/')) return 1024 * MiB;
  return jsonLimit;
}

/** Endpoints whose multipart body names a model (checked and alias-rewritten). */
export function multipartCarriesModel(path: string): boolean {
  return /\/(audio\/(transcriptions|translations)|images\/(edits|variations))$/.test(path);
}

/** Counts streamed bytes and fails the stream past `limit`. */
export class ByteLimiter extends Transform {
  readonly limit: number;
  seen = 0;
  exceeded = false;
  constructor(limit: number) {
    super();
    this.limit = limit;
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    this.seen += chunk.length;
    if (this.seen > this.limit) {
      this.exceeded = true;
      done(new Error(`request body exceeds ${this.limit} bytes`));
      return;
    }
    done(null, chunk);
  }
}

export function multipartBoundary(contentType: string | undefined): string | undefined {
  const m = /^multipart\/form-data;.*\bboundary=(?:"([^"]+)"|([^;\s]+))/i.exec(contentType ?? '');
  return m ? (m[1] ?? m[2]) : undefined;
}

export interface FieldLocation {
  value: string;
  /** Byte offsets of the value inside the body. */
  start: number;
  end: number;
}

/** Finds a simple (non-file) field by name in a whole multipart body. */
export function findMultipartField(body: Buffer, boundary: string, name: string): FieldLocation | undefined {
  const delimiter = Buffer.from(`--${boundary}`);
  let at = body.indexOf(delimiter);
  while (at >= 0) {
    const headersStart = at + delimiter.length + 2;
    const headersEnd = body.indexOf('\r\n\r\n', headersStart);
    if (headersEnd < 0) return undefined;
    const next = body.indexOf(delimiter, headersEnd);
    if (next < 0) return undefined;
    const headers = body.subarray(headersStart, headersEnd).toString('latin1');
    const disposition = /content-disposition:\s*form-data;([^\r\n]*)/i.exec(headers)?.[1] ?? '';
    const partName = /\bname="([^"]*)"/i.exec(disposition)?.[1];
    if (partName === name && !/\bfilename=/i.test(disposition)) {
      const start = headersEnd + 4;
      const end = next - 2; // the CRLF before the next delimiter
      return { value: body.subarray(start, end).toString('utf8'), start, end };
    }
    at = next;
  }
  return undefined;
}

export function replaceField(body: Buffer, field: FieldLocation, value: string): Buffer {
  return Buffer.concat([body.subarray(0, field.start), Buffer.from(value, 'utf8'), body.subarray(field.end)]);
}
