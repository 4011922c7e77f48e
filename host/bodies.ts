/**
 * Streamed request bodies are counted against their endpoint's limit (host/request/classify.ts
 * sets the limits; Content-Length is trusted only without Transfer-Encoding, and only to refuse
 * early). Parsing lives in host/request/ (media types, strict JSON and multipart).
 */
import { Transform, type TransformCallback } from 'node:stream';

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
