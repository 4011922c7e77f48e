// Test vectors: SDK bodies are produced at test time by the real openai-node client (undici
// FormData and its own streaming encoder) against a loopback listener; the httpx (openai-python,
// anthropic-python) layout is written out from httpx/_multipart.py. The part lists in
// /work/shared/specs/captures/*.jsonl (recorded from real SDKs) are re-rendered in their SDK's
// layout and must parse to the same fields.
import { once } from 'node:events';
import { readFileSync, readdirSync } from 'node:fs';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import fc from 'fast-check';
import OpenAI, { toFile, toStreamingFile } from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RequestFormatError } from './json-body.ts';
import { multipartBoundary, parseMediaType } from './media-type.ts';
import { parseMultipart, replaceField } from './multipart.ts';

const B = 'xYzBoundary123';

interface RenderPart {
  name: string;
  filename?: string;
  contentType?: string;
  data: Buffer | string;
}

/** The layout every SDK uses (undici FormData, openai-node streaming, httpx): one CRLF-framed part each. */
function render(parts: RenderPart[], boundary = B): Buffer {
  const chunks: Buffer[] = [];
  for (const p of parts) {
    let head = `--${boundary}\r\nContent-Disposition: form-data; name="${p.name}"`;
    if (p.filename !== undefined) head += `; filename="${p.filename}"`;
    head += '\r\n';
    if (p.contentType !== undefined) head += `Content-Type: ${p.contentType}\r\n`;
    chunks.push(Buffer.from(`${head}\r\n`, 'utf8'), Buffer.from(p.data), Buffer.from('\r\n'));
  }
  chunks.push(Buffer.from(`--${boundary}--\r\n`));
  return Buffer.concat(chunks);
}

const raw = (s: string): Buffer => Buffer.from(s, 'utf8');

function refusal(fn: () => unknown): RequestFormatError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(RequestFormatError);
    return err as RequestFormatError;
  }
  throw new Error('expected a RequestFormatError');
}

function onlyRequestFormatErrors(fn: () => unknown): void {
  try {
    fn();
  } catch (err) {
    if (!(err instanceof RequestFormatError)) throw err;
  }
}

describe('parseMultipart with what real SDKs send', () => {
  let server: Server;
  let client: OpenAI;
  const seen: Array<{ headers: IncomingHttpHeaders; body: Buffer }> = [];

  beforeAll(async () => {
    server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        seen.push({ headers: req.headers, body: Buffer.concat(chunks) });
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify({ text: 'ok', id: 'file-1', object: 'file', data: [], created: 0 }));
      });
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    client = new OpenAI({ apiKey: 'sk-test', baseURL: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`, maxRetries: 0 });
  });
  afterAll(() => {
    server.close();
  });

  async function lastBody(): Promise<{ boundary: string; body: Buffer }> {
    const last = seen.at(-1)!;
    const boundary = multipartBoundary(parseMediaType(last.headers['content-type']));
    expect(boundary).toBeDefined();
    return { boundary: boundary!, body: last.body };
  }

  it('reads an openai-node transcription (undici FormData) with repeated timestamp_granularities[]', async () => {
    const audio = Buffer.alloc(2004, 7);
    await client.audio.transcriptions.create({
      file: await toFile(audio, 'spe"ech.wav', { type: 'audio/wav' }),
      model: 'whisper-1',
      language: 'en',
      timestamp_granularities: ['word', 'segment'],
      response_format: 'verbose_json',
    });
    const { boundary, body } = await lastBody();
    const form = parseMultipart(body, boundary);
    expect(form.fields.get('model')).toBe('whisper-1');
    expect(form.fields.get('language')).toBe('en');
    expect(form.lists.get('timestamp_granularities[]')).toEqual(['word', 'segment']);
    expect(form.files).toHaveLength(1);
    const file = form.files[0]!;
    expect(file).toMatchObject({ name: 'file', filename: 'spe%22ech.wav', contentType: 'audio/wav' });
    expect(body.subarray(file.start, file.end).equals(audio)).toBe(true);
  });

  it('reads an openai-node streaming upload (its own encoder, boundary openai-…)', async () => {
    async function* data(): AsyncGenerator<Buffer> {
      yield Buffer.alloc(1000, 1);
      yield Buffer.alloc(1004, 2);
    }
    await client.audio.transcriptions.create({ file: toStreamingFile(data(), 'sample.mp3'), model: 'whisper-1' });
    const { boundary, body } = await lastBody();
    expect(boundary).toMatch(/^openai-/);
    const form = parseMultipart(body, boundary);
    expect(form.fields.get('model')).toBe('whisper-1');
    expect(form.files[0]).toMatchObject({ name: 'file', filename: 'sample.mp3', contentType: 'application/octet-stream' });
    expect(form.files[0]!.end - form.files[0]!.start).toBe(2004);
  });

  it('reads an openai-node image edit with image[] files and a mask', async () => {
    const png = Buffer.from('89504e470d0a1a0a0000000d49484452', 'hex');
    await client.images.edit({
      model: 'gpt-image-1',
      prompt: 'add hat',
      image: [await toFile(png, 'a.png', { type: 'image/png' }), await toFile(png, 'b.png', { type: 'image/png' })],
      mask: await toFile(png, 'mask.png', { type: 'image/png' }),
    });
    const { boundary, body } = await lastBody();
    const form = parseMultipart(body, boundary);
    expect(form.fields.get('model')).toBe('gpt-image-1');
    expect(form.fields.get('prompt')).toBe('add hat');
    expect(form.files.map((f) => [f.name, f.filename])).toEqual([
      ['image[]', 'a.png'],
      ['image[]', 'b.png'],
      ['mask', 'mask.png'],
    ]);
  });

  it('reads an openai-node file upload', async () => {
    const jsonl = Buffer.from('{"a":1}\n{"b":2}\n');
    await client.files.create({ file: await toFile(jsonl, 'data.jsonl', { type: 'application/jsonl' }), purpose: 'user_data' });
    const { boundary, body } = await lastBody();
    const form = parseMultipart(body, boundary);
    expect(form.fields.get('purpose')).toBe('user_data');
    expect(body.subarray(form.files[0]!.start, form.files[0]!.end).equals(jsonl)).toBe(true);
  });

  it('reads the httpx layout (openai-python, anthropic-python): model first, file last, hex boundary', () => {
    const boundary = 'ad97fa7ce77a083a88f73656704922f4';
    const body = raw(
      `--${boundary}\r\nContent-Disposition: form-data; name="model"\r\n\r\nwhisper-1\r\n` +
        `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="speech.wav"\r\nContent-Type: audio/wav\r\n\r\nRIFF\r\n` +
        `--${boundary}--\r\n`,
    );
    const form = parseMultipart(body, boundary);
    expect(form.fields.get('model')).toBe('whisper-1');
    expect(form.files[0]).toMatchObject({ name: 'file', filename: 'speech.wav', contentType: 'audio/wav' });
  });

  it('reads every multipart request recorded in the SDK captures', () => {
    const dir = '/work/shared/specs/captures';
    let count = 0;
    for (const file of readdirSync(dir).filter((f) => f.endsWith('.jsonl'))) {
      for (const line of readFileSync(`${dir}/${file}`, 'utf8').split('\n')) {
        if (!line) continue;
        const rec = JSON.parse(line) as { headers: Record<string, string>; body: { multipart?: { parts: Array<{ name: string; filename?: string; contentType: string | null; size: number; value?: string }> } } };
        const parts = rec.body?.multipart?.parts;
        if (!parts) continue;
        const boundary = multipartBoundary(parseMediaType(rec.headers['content-type']));
        expect(boundary).toBeDefined();
        const body = render(
          parts.map((p) => ({
            name: p.name,
            ...(p.filename !== undefined ? { filename: p.filename } : {}),
            ...(p.contentType !== null ? { contentType: p.contentType } : {}),
            data: p.value ?? Buffer.alloc(p.size, 0x41),
          })),
          boundary!,
        );
        const form = parseMultipart(body, boundary!);
        expect(form.parts.map((p) => p.name)).toEqual(parts.map((p) => p.name));
        for (const p of parts) {
          if (p.value === undefined) continue;
          if (p.name.endsWith('[]')) expect(form.lists.get(p.name)).toContain(p.value);
          else expect(form.fields.get(p.name)).toBe(p.value);
        }
        count++;
      }
    }
    expect(count).toBeGreaterThanOrEqual(7);
  });
});

describe('parseMultipart refuses what parsers could read differently', () => {
  const model = (v: string): RenderPart => ({ name: 'model', data: v });
  const cases: Array<[string, Buffer]> = [
    ['a second model field', render([model('allowed'), model('forbidden')])],
    ['model and model[] together', render([model('allowed'), { name: 'model[]', data: 'forbidden' }])],
    ['a file field sent twice', render([{ name: 'file', filename: 'a', data: 'x' }, { name: 'file', filename: 'b', data: 'y' }])],
    ['an unquoted name', raw(`--${B}\r\nContent-Disposition: form-data; name=model\r\n\r\nx\r\n--${B}--\r\n`)],
    ['an RFC 2231 name*', raw(`--${B}\r\nContent-Disposition: form-data; name*=UTF-8''model\r\n\r\nx\r\n--${B}--\r\n`)],
    ['a filename*', raw(`--${B}\r\nContent-Disposition: form-data; name="f"; filename*=UTF-8''a.txt\r\n\r\nx\r\n--${B}--\r\n`)],
    ['name given twice', raw(`--${B}\r\nContent-Disposition: form-data; name="a"; name="model"\r\n\r\nx\r\n--${B}--\r\n`)],
    ['an unknown parameter', raw(`--${B}\r\nContent-Disposition: form-data; name="model"; x="1"\r\n\r\nx\r\n--${B}--\r\n`)],
    ['an upper-case parameter name', raw(`--${B}\r\nContent-Disposition: form-data; Name="model"\r\n\r\nx\r\n--${B}--\r\n`)],
    ['an upper-case disposition type', raw(`--${B}\r\nContent-Disposition: Form-Data; name="model"\r\n\r\nx\r\n--${B}--\r\n`)],
    ['a backslash in a quoted name', raw(`--${B}\r\nContent-Disposition: form-data; name="mod\\el"\r\n\r\nx\r\n--${B}--\r\n`)],
    ['a semicolon in a quoted name', raw(`--${B}\r\nContent-Disposition: form-data; name="x;name=model"\r\n\r\nx\r\n--${B}--\r\n`)],
    ['an empty name', raw(`--${B}\r\nContent-Disposition: form-data; name=""\r\n\r\nx\r\n--${B}--\r\n`)],
    ['an empty filename (Go reads it as a field)', raw(`--${B}\r\nContent-Disposition: form-data; name="model"; filename=""\r\n\r\nx\r\n--${B}--\r\n`)],
    ['two Content-Disposition headers', raw(`--${B}\r\nContent-Disposition: form-data; name="a"\r\nContent-Disposition: form-data; name="model"\r\n\r\nx\r\n--${B}--\r\n`)],
    ['Content-Transfer-Encoding', raw(`--${B}\r\nContent-Disposition: form-data; name="model"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n=67pt\r\n--${B}--\r\n`)],
    ['an unknown part header', raw(`--${B}\r\nContent-Disposition: form-data; name="model"\r\nX-Extra: 1\r\n\r\nx\r\n--${B}--\r\n`)],
    ['a Content-Type on a plain field', raw(`--${B}\r\nContent-Disposition: form-data; name="model"\r\nContent-Type: text/plain; charset=utf-16\r\n\r\nx\r\n--${B}--\r\n`)],
    ['a folded header', raw(`--${B}\r\nContent-Disposition: form-data;\r\n name="model"\r\n\r\nx\r\n--${B}--\r\n`)],
    ['whitespace before a header colon', raw(`--${B}\r\nContent-Disposition : form-data; name="model"\r\n\r\nx\r\n--${B}--\r\n`)],
    ['LF-only line endings', raw(`--${B}\nContent-Disposition: form-data; name="model"\n\nx\n--${B}--\n`)],
    ['a bare LF inside the header block', raw(`--${B}\r\nContent-Disposition: form-data; name="a"\nContent-Disposition: form-data; name="model"\r\n\r\nx\r\n--${B}--\r\n`)],
    ['a part without headers', raw(`--${B}\r\n\r\nx\r\n--${B}--\r\n`)],
    ['a part without Content-Disposition', raw(`--${B}\r\nContent-Type: text/plain\r\n\r\nx\r\n--${B}--\r\n`)],
    ['no close delimiter', raw(`--${B}\r\nContent-Disposition: form-data; name="model"\r\n\r\nx\r\n--${B}\r\n`)],
    ['a truncated body', raw(`--${B}\r\nContent-Disposition: form-data; name="model"\r\n\r\nx`)],
    ['an epilogue', raw(`--${B}\r\nContent-Disposition: form-data; name="model"\r\n\r\nx\r\n--${B}--\r\nepilogue`)],
    ['transport padding after a delimiter', raw(`--${B}  \r\nContent-Disposition: form-data; name="model"\r\n\r\nx\r\n--${B}--\r\n`)],
    ['the boundary inside a part (after LF only)', raw(`--${B}\r\nContent-Disposition: form-data; name="model"\r\n\r\nx\n--${B}\r\nContent-Disposition: form-data; name="y"\r\n\r\nforbidden\r\n--${B}--\r\n`)],
    ['the boundary followed by other text', raw(`--${B}\r\nContent-Disposition: form-data; name="model"\r\n\r\nx\r\n--${B}X\r\n--${B}--\r\n`)],
    ['the boundary in the preamble without CRLF', raw(`junk--${B}\r\nContent-Disposition: form-data; name="model"\r\n\r\nx\r\n--${B}--\r\n`)],
    ['no parts at all', raw(`--${B}--\r\n`)],
    ['no boundary at all', raw('hello')],
    ['an empty body', Buffer.alloc(0)],
    ['invalid UTF-8 in a field', Buffer.concat([raw(`--${B}\r\nContent-Disposition: form-data; name="model"\r\n\r\n`), Buffer.from([0xc3, 0x28]), raw(`\r\n--${B}--\r\n`)])],
    ['a BOM in a field', render([model('\ufeffgpt-4o')])],
  ];
  for (const [what, body] of cases) {
    it(`refuses ${what}`, () => {
      expect(refusal(() => parseMultipart(body, B)).code).toBe('invalid_request');
    });
  }

  it('accepts a preamble that ends in CRLF and a close delimiter without trailing CRLF', () => {
    const body = raw(`preamble\r\n--${B}\r\nContent-Disposition: form-data; name="model"\r\n\r\nx\r\n--${B}--`);
    expect(parseMultipart(body, B).fields.get('model')).toBe('x');
  });

  it('accepts header names in any case and UTF-8 filenames', () => {
    const body = raw(`--${B}\r\ncontent-disposition: form-data; name="file"; filename="café.wav"\r\nCONTENT-TYPE: audio/wav\r\n\r\nx\r\n--${B}--\r\n`);
    expect(parseMultipart(body, B).files[0]).toMatchObject({ filename: 'café.wav', contentType: 'audio/wav' });
  });

  it('keeps empty field values and CR or LF inside values', () => {
    const form = parseMultipart(render([{ name: 'a', data: '' }, { name: 'b', data: 'x\r\ny\r' }]), B);
    expect(form.fields.get('a')).toBe('');
    expect(form.fields.get('b')).toBe('x\r\ny\r');
  });

  it('refuses a boundary RFC 2046 does not allow', () => {
    expect(refusal(() => parseMultipart(render([model('x')]), 'a"b')).code).toBe('invalid_request');
    expect(refusal(() => parseMultipart(render([model('x')]), 'x'.repeat(71))).code).toBe('invalid_request');
  });

  it('refuses more parts than the limit', () => {
    const parts = Array.from({ length: 5 }, (_, i) => ({ name: `f${i}`, data: 'x' }));
    expect(refusal(() => parseMultipart(render(parts), B, { maxParts: 4 })).code).toBe('invalid_request');
  });
});

const charsFrom = (chars: string, minLength: number, maxLength: number): fc.Arbitrary<string> =>
  fc.array(fc.constantFrom(...chars), { minLength, maxLength }).map((cs) => cs.join(''));
const nameArb = fc.tuple(charsFrom('abmz_', 1, 1), charsFrom('abmz09_', 0, 8), fc.boolean()).map(([a, b, list]) => `${a}${b}${list ? '[]' : ''}`);
const valueArb = fc
  .array(fc.oneof(fc.string({ maxLength: 4 }), fc.constantFrom('é', '€', '😀', '\r', '\n', '\r\n', '-', '--', `--${B.slice(0, 5)}`, '"', '\u0000')), { maxLength: 10 })
  .map((xs) => xs.join('')).filter((s) => !s.startsWith('\ufeff') && !s.includes(`--${B}`));
const formArb = fc
  .uniqueArray(
    fc.record({
      name: nameArb,
      file: fc.option(fc.record({ filename: charsFrom('aZ09 ._%-é', 1, 12), type: fc.constantFrom('image/png', 'audio/wav', 'application/jsonl', undefined) }), { nil: undefined }),
      data: valueArb,
    }),
    { selector: (p) => p.name.replace(/\[\]$/, ''), minLength: 1, maxLength: 6 },
  )
  .map((ps) =>
    ps.map((p): RenderPart => (p.file ? { name: p.name, filename: p.file.filename, ...(p.file.type ? { contentType: p.file.type } : {}), data: p.data } : { name: p.name, data: p.data })),
  );

describe('parseMultipart properties', () => {
  it('reads back every form it renders', () => {
    fc.assert(
      fc.property(formArb, (parts) => {
        const body = render(parts);
        const form = parseMultipart(body, B);
        expect(form.parts.map((p) => p.name)).toEqual(parts.map((p) => p.name));
        parts.forEach((p, i) => {
          const got = form.parts[i]!;
          expect(body.subarray(got.start, got.end).toString('utf8')).toBe(p.data.toString());
          expect(got.filename).toBe(p.filename);
          expect(got.contentType).toBe(p.contentType);
          if (p.filename === undefined && !p.name.endsWith('[]')) expect(form.fields.get(p.name)).toBe(p.data);
        });
      }),
      { numRuns: 100 },
    );
  });

  it('never throws anything but RequestFormatError on random bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), fc.constantFrom(B, 'a', '-', ' a'), (bytes, boundary) => {
        onlyRequestFormatErrors(() => parseMultipart(Buffer.from(bytes), boundary));
      }),
      { numRuns: 2000 },
    );
  });

  it('never throws anything but RequestFormatError on mutated valid bodies', () => {
    const tokens = ['\r\n', '\n', '\r', `--${B}`, `--${B}--`, '"', ';', '\\', ':', ' ', 'name="model"', 'filename="f"', 'Content-Type: a/b\r\n', '\u00ff', '\ufeff'];
    fc.assert(
      fc.property(
        formArb,
        fc.array(fc.record({ at: fc.nat(), del: fc.nat({ max: 4 }), ins: fc.oneof(fc.constantFrom(...tokens), fc.string({ maxLength: 3 })) }), { minLength: 1, maxLength: 4 }),
        (parts, edits) => {
          let body = render(parts);
          for (const e of edits) {
            const at = e.at % (body.length + 1);
            body = Buffer.concat([body.subarray(0, at), Buffer.from(e.ins, 'utf8'), body.subarray(Math.min(body.length, at + e.del))]);
          }
          onlyRequestFormatErrors(() => parseMultipart(body, B));
        },
      ),
      { numRuns: 1000 },
    );
  });
});

describe('replaceField', () => {
  it('rewrites the model field and leaves every other byte as it was', () => {
    const parts: RenderPart[] = [
      { name: 'file', filename: 'a.wav', contentType: 'audio/wav', data: 'RIFF' },
      { name: 'model', data: 'fast' },
      { name: 'language', data: 'en' },
    ];
    const out = replaceField(render(parts), B, 'model', 'whisper-1');
    expect(out.equals(render([parts[0]!, { name: 'model', data: 'whisper-1' }, parts[2]!]))).toBe(true);
  });

  it('refuses a field that is missing, a file, or repeated as a list', () => {
    const body = render([{ name: 'file', filename: 'a', data: 'x' }, { name: 'x[]', data: '1' }]);
    expect(refusal(() => replaceField(body, B, 'model', 'm')).code).toBe('invalid_request');
    expect(refusal(() => replaceField(body, B, 'file', 'm')).code).toBe('invalid_request');
    expect(refusal(() => replaceField(body, B, 'x[]', 'm')).code).toBe('invalid_request');
  });

  it('refuses a value that would carry the boundary', () => {
    expect(refusal(() => replaceField(render([{ name: 'model', data: 'a' }]), B, 'model', `x\r\n--${B}--`)).code).toBe('invalid_request');
  });

  it('gives bytes that parse to the same form except the replaced field', () => {
    fc.assert(
      fc.property(formArb, valueArb, (parts, value) => {
        const i = parts.findIndex((p) => p.filename === undefined && !p.name.endsWith('[]'));
        fc.pre(i >= 0);
        const name = parts[i]!.name;
        const out = replaceField(render(parts), B, name, value);
        const expected = parts.map((p, j) => (j === i ? { ...p, data: value } : p));
        expect(out.equals(render(expected))).toBe(true);
        expect(parseMultipart(out, B).fields.get(name)).toBe(value);
      }),
      { numRuns: 300 },
    );
  });
});
