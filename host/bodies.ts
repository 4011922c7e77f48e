/**
 * Streamed request bodies are counted against their endpoint's limit (host/request/classify.ts
 * sets the limits; Content-Length is trusted only without Transfer-Encoding, and only to refuse
 * early). Parsing lives in host/request/ (media types, strict JSON and multipart).
 */
import { Transform, type TransformCallback } from 'node:stream';
import { readBufferRelease } from '../protocol/read-buffers.ts';

/** Counts streamed bytes and fails the stream past `limit`. */
export class ByteLimiter extends Transform {
  readonly limit: number;
  seen = 0;
  exceeded = false;
  /** A large upload's read buffers are freed as it passes, not at V8's external-memory trigger. */
  readonly #release = readBufferRelease();
  constructor(limit: number) {
    super();
    this.limit = limit;
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    this.seen += chunk.length;
    this.#release(chunk.length);
    if (this.seen > this.limit) {
      this.exceeded = true;
      done(new Error(`request body exceeds ${this.limit} bytes`));
      return;
    }
    done(null, chunk);
  }
}
