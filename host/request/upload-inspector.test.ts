// Test vectors: bodies in the layout openai-node (undici FormData) sends for POST /v1/files — the
// first is produced by undici itself — and batch input lines in the shape of OpenAI's Batch API
// docs ({custom_id, method, url, body}). Every body is also fed split at every byte offset and in
// random chunkings, since a streaming parser's bugs live at chunk edges.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { RequestFormatError } from './json-body.ts';
import { multipartBoundary, parseMediaType } from './media-type.ts';
import { parseMultipart } from './multipart.ts';
import { UploadInspector, type UploadInspectorOptions } from './upload-inspector.ts';

const B = '----formdata-undici-070951826934';
const CLOSE = Buffer.from(`--${B}--`);

interface Outcome {
  out: Buffer;
  error: unknown;
  inspector: UploadInspector;
}

/** Feeds `body` cut at `cuts` (sorted offsets) and collects what passes and how it ended. */
async function drive(body: Buffer, options: Omit<UploadInspectorOptions, 'boundary'> & { boundary?: string }, cuts: number[] = []): Promise<Outcome> {
  const inspector = new UploadInspector({ boundary: B, ...options });
  const out: Buffer[] = [];
  let error: unknown;
  const done = new Promise<void>((resolve) => {
    inspector.on('data', (c: Buffer) => out.push(c));
    inspector.on('end', () => resolve());
    inspector.on('error', (err) => {
      error = err;
      resolve();
    });
  });
  let at = 0;
  for (const cut of [...cuts, body.length]) {
    if (cut > at) inspector.write(body.subarray(at, cut));
    at = Math.max(at, cut);
  }
  inspector.end();
  await done;
  return { out: Buffer.concat(out), error, inspector };
}

/**
 * The same, synchronously: calls the Transform's own _transform/_flush and collects push()es,
 * stopping at the first error as the stream would. Fast enough to try every split.
 */
function driveSync(body: Buffer, options: Omit<UploadInspectorOptions, 'boundary'>, cuts: number[] = []): Outcome {
  const inspector = new UploadInspector({ boundary: B, ...options });
  const out: Buffer[] = [];
  inspector.push = (c: Buffer | null): boolean => {
    if (c) out.push(c);
    return true;
  };
  let error: unknown;
  const cb = (err?: Error | null): void => {
    if (err) error ??= err;
  };
  let at = 0;
  for (const cut of [...cuts, body.length]) {
    if (error === undefined && cut > at) inspector._transform(body.subarray(at, cut), 'latin1', cb);
    at = Math.max(at, cut);
  }
  if (error === undefined) inspector._flush(cb);
  return { out: Buffer.concat(out), error, inspector };
}

const part = (name: string, value: string): string => `--${B}\r\nContent-Disposition: form-data; name="${name}"\r\n\r\n${value}\r\n`;
const filePart = (content: string, name = 'file'): string =>
  `--${B}\r\nContent-Disposition: form-data; name="${name}"; filename="batch.jsonl"\r\nContent-Type: application/jsonl\r\n\r\n${content}\r\n`;
const upload = (...parts: string[]): Buffer => Buffer.from(`${parts.join('')}--${B}--\r\n`, 'utf8');

const line = (model: string, id = 'r1'): string => JSON.stringify({ custom_id: id, method: 'POST', url: '/v1/chat/completions', body: { model } });
const JSONL = `${line('gpt-4o-mini', 'a')}\n${line('gpt-4o-mini', 'b')}\r\n\n${line('gpt-4o-mini', 'c')}`;

/** The caller's check: model allow-list of one model. */
function allowOnly(model: string, seen: Array<[unknown, number]> = []): UploadInspectorOptions['checkLine'] {
  return (l, lineNo) => {
    seen.push([l, lineNo]);
    const body = l.body as { model?: unknown } | undefined;
    return body?.model === model ? undefined : new RequestFormatError('model_not_allowed', `line ${lineNo} names a model this key may not use`);
  };
}

/** Two chunks split at every offset (or every `step`th), and one byte per chunk. */
const everySplit = (n: number, step = 1): number[][] => [
  ...Array.from({ length: Math.floor(n / step) + 1 }, (_, i) => [i * step]),
  Array.from({ length: n }, (_, i) => i),
];
const chunkings = (n: number): fc.Arbitrary<number[]> => fc.uniqueArray(fc.integer({ min: 1, max: Math.max(1, n - 1) }), { maxLength: 12 }).map((xs) => xs.sort((a, b) => a - b));

describe('UploadInspector on uploads it accepts', () => {
  it('passes an undici FormData file upload through byte for byte', async () => {
    const fd = new FormData();
    fd.append('purpose', 'user_data');
    fd.append('file', new Blob(['{"a":1}\n'], { type: 'application/jsonl' }), 'data.jsonl');
    const res = new Response(fd);
    const body = Buffer.from(await res.arrayBuffer());
    const boundary = multipartBoundary(parseMediaType(res.headers.get('content-type') ?? undefined))!;
    const { out, error, inspector } = await drive(body, { boundary });
    expect(error).toBeUndefined();
    expect(out.equals(body)).toBe(true);
    expect(inspector.purpose).toBe('user_data');
    expect(inspector.lines).toBe(0);
  });

  it('checks every line of a batch upload and passes it unchanged, split at every byte offset', async () => {
    const body = upload(part('purpose', 'batch'), filePart(JSONL));
    for (const cuts of everySplit(body.length)) {
      const seen: Array<[unknown, number]> = [];
      const { out, error, inspector } = driveSync(body, { checkLine: allowOnly('gpt-4o-mini', seen), requireBatchCheck: true }, cuts);
      expect(error).toBeUndefined();
      expect(out.equals(body)).toBe(true);
      expect(inspector.purpose).toBe('batch');
      expect(inspector.lines).toBe(3);
      expect(seen.map(([l, n]) => [(l as { custom_id: string }).custom_id, n])).toEqual([
        ['a', 1],
        ['b', 2],
        ['c', 4],
      ]);
    }
  });

  it('passes the same upload fed one byte at a time', async () => {
    const body = upload(part('purpose', 'batch'), filePart(`${JSONL}\n`));
    const { out, error, inspector } = await drive(body, { checkLine: allowOnly('gpt-4o-mini') }, Array.from({ length: body.length }, (_, i) => i));
    expect(error).toBeUndefined();
    expect(out.equals(body)).toBe(true);
    expect(inspector.lines).toBe(3);
  });

  it('lets a non-batch file go by before purpose when the key needs no line checks', async () => {
    const body = upload(filePart('not json at all'), part('purpose', 'fine-tune'));
    const { out, error, inspector } = await drive(body, {});
    expect(error).toBeUndefined();
    expect(out.equals(body)).toBe(true);
    expect(inspector.purpose).toBe('fine-tune');
  });

  it('streams a large file with bounded holding: bytes pass before the upload ends', async () => {
    const inspector = new UploadInspector({ boundary: B, checkLine: allowOnly('gpt-4o-mini') });
    let passed = 0;
    inspector.on('data', (c: Buffer) => (passed += c.length));
    inspector.write(Buffer.from(part('purpose', 'batch') + filePart('').slice(0, -2)));
    const chunk = Buffer.from(`${line('gpt-4o-mini')}\n`.repeat(1000));
    for (let i = 0; i < 20; i++) inspector.write(chunk);
    await new Promise((r) => setImmediate(r));
    expect(passed).toBeGreaterThan(20 * chunk.length);
    inspector.end(Buffer.from(`\r\n--${B}--\r\n`));
    await new Promise((r) => inspector.on('end', r));
    expect(inspector.lines).toBe(20_000);
  });
});

describe('UploadInspector on uploads it refuses', () => {
  const refusedLine = line('gpt-4o', 'bad');

  /** A refused upload: the error is a RequestFormatError, the output a prefix of the input without the close delimiter. */
  function expectTruncated(body: Buffer, { out, error }: Outcome, code: string): void {
    expect(error).toBeInstanceOf(RequestFormatError);
    expect((error as RequestFormatError).code).toBe(code);
    expect(body.subarray(0, out.length).equals(out)).toBe(true);
    expect(out.includes(CLOSE)).toBe(false);
  }

  it('refuses a batch line naming a forbidden model, and never passes that line or the close delimiter', async () => {
    const contents = [`${line('gpt-4o-mini')}\n${refusedLine}\n${line('gpt-4o-mini')}`, `${line('gpt-4o-mini')}\n${refusedLine}`, refusedLine];
    for (const [i, content] of contents.entries()) {
      const body = upload(part('purpose', 'batch'), filePart(content));
      for (const cuts of everySplit(body.length, i === 0 ? 1 : 3)) {
        const outcome = driveSync(body, { checkLine: allowOnly('gpt-4o-mini'), requireBatchCheck: true }, cuts);
        expectTruncated(body, outcome, 'model_not_allowed');
        expect(outcome.out.includes(Buffer.from(refusedLine))).toBe(false);
      }
    }
  });

  it('passes checkLine\'s own error through unchanged', async () => {
    const mine = new RequestFormatError('scope_not_granted', 'no');
    const { error } = await drive(upload(part('purpose', 'batch'), filePart(line('x'))), { checkLine: () => mine });
    expect(error).toBe(mine);
  });

  it('refuses a file that arrives before purpose when the key needs line checks', async () => {
    const body = upload(filePart(refusedLine), part('purpose', 'batch'));
    const outcome = await drive(body, { checkLine: allowOnly('gpt-4o-mini'), requireBatchCheck: true });
    expectTruncated(body, outcome, 'invalid_request');
    expect((outcome.error as RequestFormatError).param).toBe('purpose');
  });

  it('refuses a batch upload whose purpose came after its file when lines are checked', async () => {
    const body = upload(filePart(refusedLine), part('purpose', 'batch'));
    for (const cuts of everySplit(body.length, 3)) {
      expectTruncated(body, driveSync(body, { checkLine: allowOnly('gpt-4o-mini') }, cuts), 'invalid_request');
    }
  });

  it('checks lines whatever the case or padding of purpose=batch', async () => {
    const body = upload(part('purpose', ' Batch'), filePart(refusedLine));
    expectTruncated(body, await drive(body, { checkLine: allowOnly('gpt-4o-mini') }), 'model_not_allowed');
  });

  const refusals: Array<[string, string, Buffer]> = [
    ['a second purpose field', 'invalid_request', upload(part('purpose', 'user_data'), part('purpose', 'batch'), filePart(refusedLine))],
    ['a line that is not JSON', 'invalid_request', upload(part('purpose', 'batch'), filePart('{"a":'))],
    ['a line that is not an object', 'invalid_request', upload(part('purpose', 'batch'), filePart('[1]'))],
    ['a line with a duplicated key', 'invalid_request', upload(part('purpose', 'batch'), filePart('{"body":{"model":"gpt-4o-mini","model":"gpt-4o"}}'))],
    ['a line with a bare CR', 'invalid_request', upload(part('purpose', 'batch'), filePart('{"a":1}\r{"b":2}'))],
    ['a line with a raw U+2028', 'invalid_request', upload(part('purpose', 'batch'), filePart('{"a":"x\u2028y"}'))],
    ['a line nested too deep', 'invalid_request', upload(part('purpose', 'batch'), filePart(`{"a":${'['.repeat(70)}${']'.repeat(70)}}`))],
    ['a line longer than the limit', 'request_too_large', upload(part('purpose', 'batch'), filePart(`{"a":"${'x'.repeat(300)}"}`))],
    ['a field longer than the limit', 'request_too_large', upload(part('purpose', 'x'.repeat(300)), filePart(''))],
    ['a close delimiter followed by more', 'invalid_request', Buffer.concat([upload(part('purpose', 'user_data')), Buffer.from('more')])],
    ['a body without close delimiter', 'invalid_request', Buffer.from(part('purpose', 'user_data'))],
    ['a duplicated model-like header trick', 'invalid_request', Buffer.from(`--${B}\r\nContent-Disposition: form-data; name="purpose"; name="x"\r\n\r\nbatch\r\n--${B}--\r\n`)],
  ];
  for (const [what, code, body] of refusals) {
    it(`refuses ${what}, at every split`, async () => {
      for (const cuts of everySplit(body.length, 5)) {
        expectTruncated(body, driveSync(body, { checkLine: allowOnly('gpt-4o-mini'), maxLineBytes: 256, maxFieldBytes: 256 }, cuts), code);
      }
    });
  }
});

describe('UploadInspector properties', () => {
  const tokens = ['\r\n', '\n', '\r', `--${B}`, `--${B}--`, '"', ';', '\\', ':', 'name="purpose"', 'filename="f"', '{', '}', '\ufeff'];
  const bodyArb = fc
    .tuple(
      fc.constantFrom(
        upload(part('purpose', 'batch'), filePart(JSONL)),
        upload(part('purpose', 'batch'), filePart(`${line('gpt-4o-mini')}\n${line('gpt-4o')}\n`)),
        upload(filePart('abc'), part('purpose', 'assistants')),
        upload(part('purpose', 'user_data'), filePart('--x\r\n'), part('a[]', '1'), part('a[]', '2')),
      ),
      fc.array(fc.record({ at: fc.nat(), del: fc.nat({ max: 4 }), ins: fc.oneof(fc.constantFrom(...tokens), fc.string({ maxLength: 3 })) }), { maxLength: 3 }),
    )
    .map(([base, edits]) => {
      let body = base;
      for (const e of edits) {
        const at = e.at % (body.length + 1);
        body = Buffer.concat([body.subarray(0, at), Buffer.from(e.ins, 'utf8'), body.subarray(Math.min(body.length, at + e.del))]);
      }
      return body;
    });

  it('holds a delimiter back until the header block it opens has parsed, so a body cut off after one never passes whole', () => {
    // Found by the property below (seed -1049635563): the last delimiter line had already passed.
    const body = Buffer.from(
      `--${B}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nuser_data\r\n--${B}\r\nContent-Disposition: form-data; name="file"; filename="b.jsonl"\r\n` +
        `Content-Type: application/jsonl\r\n\r\n--x\r\n\r\n--${B}\r\nContent-Disposition: form-data; name="a[]"\r\n\r\n1\r\n--${B}\r\n`,
    );
    for (const cuts of [[], [body.length - 3], [body.length - B.length - 4]]) {
      const outcome = driveSync(body, {}, cuts);
      expect(outcome.error).toBeInstanceOf(RequestFormatError);
      expect(outcome.out.length).toBeLessThan(body.length - B.length - 2);
    }
  });

  it('accepts exactly what parseMultipart accepts, passing it unchanged, whatever the chunking', () => {
    fc.assert(
      fc.property(bodyArb, chunkings(600), (body, cuts) => {
        let whole: unknown;
        try {
          parseMultipart(body, B);
        } catch (err) {
          whole = err;
        }
        const outcome = driveSync(body, {}, cuts.filter((c) => c < body.length));
        if (whole === undefined) {
          expect(outcome.error).toBeUndefined();
          expect(outcome.out.equals(body)).toBe(true);
        } else {
          expect(outcome.error).toBeInstanceOf(RequestFormatError);
          expect(body.subarray(0, outcome.out.length).equals(outcome.out)).toBe(true);
          expect(outcome.out.length).toBeLessThan(body.length);
        }
      }),
      { numRuns: 400 },
    );
  });

  it('never passes a refused line or the close delimiter after a refusal, whatever the chunking', () => {
    fc.assert(
      fc.property(bodyArb, chunkings(600), (body, cuts) => {
        const outcome = driveSync(body, { checkLine: allowOnly('gpt-4o-mini'), requireBatchCheck: true }, cuts.filter((c) => c < body.length));
        if (outcome.error === undefined) {
          expect(outcome.out.equals(body)).toBe(true);
          return;
        }
        expect(outcome.error).toBeInstanceOf(RequestFormatError);
        expect(body.subarray(0, outcome.out.length).equals(outcome.out)).toBe(true);
        expect(outcome.out.includes(CLOSE)).toBe(false);
        // Only batch input is read line by line (other purposes never name a model to run).
        if (outcome.inspector.purpose?.trim().toLowerCase() !== 'batch') return;
        expect(outcome.out.includes(Buffer.from('"model":"gpt-4o"'))).toBe(false);
      }),
      { numRuns: 400 },
    );
  });

  it('passes large file content with boundary-like bytes unchanged, and refuses the boundary itself, in chunks of any size', () => {
    const piece = fc.oneof(
      fc.uint8Array({ minLength: 1, maxLength: 300 }).map((b) => Buffer.from(b)),
      fc.integer({ min: 0, max: B.length + 2 }).map((k) => Buffer.from(`\r\n--${B}`.slice(0, k))),
      fc.constant(Buffer.from(`--${B}`)),
    );
    fc.assert(
      fc.property(fc.array(piece, { minLength: 1, maxLength: 30 }), fc.array(fc.integer({ min: 1, max: 700 }), { minLength: 1, maxLength: 40 }), (pieces, sizes) => {
        const content = Buffer.concat(pieces);
        const body = Buffer.concat([Buffer.from(part('purpose', 'user_data') + filePart('').slice(0, -2)), content, Buffer.from(`\r\n--${B}--\r\n`)]);
        const cuts: number[] = [];
        for (let at = 0, i = 0; at < body.length; i++) cuts.push((at += sizes[i % sizes.length]!));
        const outcome = driveSync(body, {}, cuts.filter((c) => c < body.length));
        if (content.includes(Buffer.from(`--${B}`))) {
          expect(outcome.error).toBeInstanceOf(RequestFormatError);
          expect(outcome.out.includes(CLOSE)).toBe(false);
        } else {
          expect(outcome.error).toBeUndefined();
          expect(outcome.out.equals(body)).toBe(true);
        }
      }),
      { numRuns: 300 },
    );
  });

  it('only ever fails with RequestFormatError on random bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), chunkings(200), (bytes, cuts) => {
        const body = Buffer.from(bytes);
        const outcome = driveSync(body, { checkLine: allowOnly('m') }, cuts.filter((c) => c < body.length));
        if (outcome.error !== undefined) expect(outcome.error).toBeInstanceOf(RequestFormatError);
      }),
      { numRuns: 300 },
    );
  });
});
