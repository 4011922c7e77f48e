import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { ByteLimiter, findMultipartField, multipartBoundary, replaceField } from './bodies.ts';

async function multipart(parts: Array<{ name: string; value: string | Blob; filename?: string }>): Promise<{ body: Buffer; contentType: string }> {
  const form = new FormData();
  for (const p of parts) {
    if (typeof p.value === 'string') form.append(p.name, p.value);
    else form.append(p.name, p.value, p.filename);
  }
  const res = new Response(form);
  return { body: Buffer.from(await res.arrayBuffer()), contentType: res.headers.get('content-type')! };
}

describe('multipart model field', () => {
  it('finds the model after a file part and rewrites only its value', async () => {
    const file = new Blob([new Uint8Array(5000).map((_, i) => i % 256)]);
    const { body, contentType } = await multipart([{ name: 'file', value: file, filename: 'speech.wav' }, { name: 'model', value: 'fast' }, { name: 'language', value: 'en' }]);
    const boundary = multipartBoundary(contentType)!;
    const field = findMultipartField(body, boundary, 'model')!;
    expect(field.value).toBe('fast');
    const rewritten = replaceField(body, field, 'whisper-1');
    const parsed = await new Response(new Uint8Array(rewritten), { headers: { 'content-type': contentType } }).formData();
    expect(parsed.get('model')).toBe('whisper-1');
    expect(parsed.get('language')).toBe('en');
    expect(Buffer.from(await (parsed.get('file') as Blob).arrayBuffer()).equals(Buffer.from(await file.arrayBuffer()))).toBe(true);
  });

  it('ignores a file part named model and handles repeated fields', async () => {
    const { body, contentType } = await multipart([
      { name: 'model', value: new Blob(['not a model']), filename: 'model.txt' },
      { name: 'image[]', value: new Blob(['a']), filename: 'a.png' },
      { name: 'image[]', value: new Blob(['b']), filename: 'b.png' },
    ]);
    expect(findMultipartField(body, multipartBoundary(contentType)!, 'model')).toBeUndefined();
  });

  it('never throws on arbitrary bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), fc.string({ minLength: 1, maxLength: 20 }), (bytes, boundary) => {
        findMultipartField(Buffer.from(bytes), boundary, 'model');
      }),
    );
  });
});

describe('streamed byte limits', () => {
  it('passes bodies up to the limit and fails beyond it', async () => {
    const ok = new ByteLimiter(10);
    expect((await buffer(Readable.from([Buffer.alloc(6), Buffer.alloc(4)]).pipe(ok))).length).toBe(10);
    const over = new ByteLimiter(10);
    await expect(buffer(Readable.from([Buffer.alloc(6), Buffer.alloc(5)]).pipe(over))).rejects.toThrow(/exceeds 10 bytes/);
    expect(over.exceeded).toBe(true);
  });
});
