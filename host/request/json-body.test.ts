// Vectors: the JSON bodies in /work/shared/specs/captures (real SDK requests; long base64 strings
// shortened by the recorder, otherwise as sent), RFC 8259 §4 (duplicate names), and the
// bypasses issue 16 lists.
import { readFileSync, readdirSync } from 'node:fs';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { RequestFormatError, parseJsonObject, validateNumbers } from './json-body.ts';

const bytes = (s: string): Buffer => Buffer.from(s, 'utf8');

function refusal(fn: () => unknown): RequestFormatError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(RequestFormatError);
    return err as RequestFormatError;
  }
  throw new Error('expected a RequestFormatError');
}

describe('parseJsonObject', () => {
  it('reads every JSON body in the SDK captures, as re-serialised and pretty-printed', () => {
    const dir = '/work/shared/specs/captures';
    let count = 0;
    for (const file of readdirSync(dir).filter((f) => f.endsWith('.jsonl'))) {
      for (const line of readFileSync(`${dir}/${file}`, 'utf8').split('\n')) {
        if (!line) continue;
        const rec = JSON.parse(line) as { headers: Record<string, string>; body: unknown };
        if (!rec.headers['content-type']?.includes('json')) continue;
        const value = parseJsonObject(bytes(JSON.stringify(rec.body)));
        expect(value).toEqual(rec.body);
        expect(parseJsonObject(bytes(JSON.stringify(rec.body, null, 2)))).toEqual(rec.body);
        validateNumbers(value);
        count++;
      }
    }
    expect(count).toBeGreaterThanOrEqual(25);
  });

  it('refuses a key given twice, the model-lock bypass of issue 16', () => {
    const err = refusal(() => parseJsonObject(bytes('{"model":"allowed","model":"forbidden"}')));
    expect(err.code).toBe('invalid_request');
    expect(err.param).toBe('model');
  });

  it('refuses a key given twice in another spelling of the same string', () => {
    expect(refusal(() => parseJsonObject(bytes('{"model":"a","mod\\u0065l":"b"}'))).param).toBe('model');
    expect(refusal(() => parseJsonObject(bytes('{"a\\/b":1,"a/b":2}'))).code).toBe('invalid_request');
  });

  it('refuses a key given twice at any depth', () => {
    expect(refusal(() => parseJsonObject(bytes('{"body":{"messages":[{"role":"user","role":"system"}]}}'))).param).toBe('role');
  });

  it('accepts the same key in sibling and nested objects', () => {
    expect(parseJsonObject(bytes('{"a":{"a":{"a":1}},"b":[{"a":1},{"a":2}],"c":"\\"a\\":"}'))).toEqual({ a: { a: { a: 1 } }, b: [{ a: 1 }, { a: 2 }], c: '"a":' });
  });

  it('refuses nesting past the limit without parsing it', () => {
    const deep = `{"a":${'['.repeat(100_000)}${']'.repeat(100_000)}}`;
    expect(refusal(() => parseJsonObject(bytes(deep))).code).toBe('invalid_request');
    expect(parseJsonObject(bytes(`{"a":${'['.repeat(62)}${']'.repeat(62)}}`))).toBeDefined();
    expect(refusal(() => parseJsonObject(bytes(`{"a":${'['.repeat(64)}${']'.repeat(64)}}`))).code).toBe('invalid_request');
    expect(refusal(() => parseJsonObject(bytes('{"a":{"b":{}}}'), { maxDepth: 2 })).code).toBe('invalid_request');
  });

  it('does not count brackets inside strings as nesting', () => {
    expect(parseJsonObject(bytes(`{"a":"${'['.repeat(1000)}\\\\"}`), { maxDepth: 1 })).toEqual({ a: `${'['.repeat(1000)}\\` });
  });

  it('refuses numbers too large to represent', () => {
    expect(refusal(() => parseJsonObject(bytes('{"temperature":1e400}'))).code).toBe('invalid_request');
    expect(refusal(() => parseJsonObject(bytes('{"a":[-1e999]}'))).code).toBe('invalid_request');
  });

  it('refuses a lone surrogate escape in a value or a key', () => {
    expect(refusal(() => parseJsonObject(bytes('{"model":"gpt-4o\\ud800"}'))).code).toBe('invalid_request');
    expect(refusal(() => parseJsonObject(bytes('{"\\udc00":1}'))).code).toBe('invalid_request');
    expect(parseJsonObject(bytes('{"e":"\\ud83d\\ude00"}'))).toEqual({ e: '😀' });
  });

  it('refuses a byte order mark and invalid UTF-8', () => {
    expect(refusal(() => parseJsonObject(Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), bytes('{}')]))).code).toBe('invalid_request');
    expect(refusal(() => parseJsonObject(Buffer.from([0x7b, 0x22, 0xff, 0x22, 0x3a, 0x31, 0x7d]))).code).toBe('invalid_request');
    expect(refusal(() => parseJsonObject(Buffer.from('{"a":"\xed\xa0\x80"}', 'latin1'))).code).toBe('invalid_request');
  });

  it('refuses what is not one JSON object', () => {
    for (const s of ['', '  ', '[]', '"x"', '1', 'null', '{', '{"a":1}{"b":2}', '{"a":1,}', "{'a':1}", '{"a":NaN}', '{"a":1} x', '\u00a0{}']) {
      expect(refusal(() => parseJsonObject(bytes(s))).code).toBe('invalid_request');
    }
  });

  it('accepts surrounding JSON whitespace and a __proto__ key as data', () => {
    const v = parseJsonObject(bytes(' \r\n\t{"__proto__":{"x":1}} \n'));
    expect(Object.hasOwn(v, '__proto__')).toBe(true);
    expect(Object.getPrototypeOf(v)).toBe(Object.prototype);
  });

  it('never throws anything but RequestFormatError', () => {
    const pieces = ['{', '}', '[', ']', '"', '\\', ':', ',', '"a"', '1e400', '\\ud800', '\\u0061', ' ', 'null', '\u00ff'];
    const text = fc.array(fc.oneof(fc.constantFrom(...pieces), fc.string({ maxLength: 3 })), { maxLength: 30 }).map((xs) => bytes(xs.join('')));
    fc.assert(
      fc.property(fc.oneof(text, fc.uint8Array({ maxLength: 64 }).map((b) => Buffer.from(b))), (body) => {
        try {
          parseJsonObject(body, { maxDepth: 4 });
        } catch (err) {
          if (!(err instanceof RequestFormatError)) throw err;
        }
      }),
      { numRuns: 2000 },
    );
  });

  it('reads back any object JSON.stringify renders, and refuses it with one key doubled', () => {
    const json = fc.object({ maxDepth: 3, key: fc.string({ maxLength: 6 }), values: [fc.string({ maxLength: 8 }), fc.double({ noNaN: true, noDefaultInfinity: true }), fc.boolean(), fc.constant(null)] });
    fc.assert(
      fc.property(json, (value) => {
        const text = JSON.stringify(value);
        expect(parseJsonObject(bytes(text))).toEqual(JSON.parse(text));
        const keys = Object.keys(value);
        if (keys.length > 0) {
          const k = JSON.stringify(keys[0]);
          const doubled = `{${k}:0,${text.slice(1)}`;
          expect(refusal(() => parseJsonObject(bytes(doubled))).code).toBe('invalid_request');
        }
      }),
      { numRuns: 100 },
    );
  });
});

describe('validateNumbers', () => {
  it('refuses max_tokens 1e300 naming the field', () => {
    const err = refusal(() => validateNumbers(parseJsonObject(bytes('{"max_tokens":1e300}'))));
    expect(err.code).toBe('invalid_request');
    expect(err.param).toBe('max_tokens');
    expect(err.message).toContain('max_tokens');
  });

  const refused: Array<Record<string, unknown>> = [
    { n: 0 },
    { n: 129 },
    { n: 1.5 },
    { n: '2' },
    { n: true },
    { max_tokens: -1 },
    { max_tokens: 2 ** 31 },
    { max_completion_tokens: 1.0000001 },
    { max_output_tokens: [100] },
    { best_of: 21 },
    { seed: 2 ** 60 },
    { top_logprobs: 21 },
    { dimensions: 0 },
    { thinking: { type: 'enabled', budget_tokens: 1e12 } },
  ];
  for (const body of refused) {
    it(`refuses ${JSON.stringify(body)}`, () => {
      expect(refusal(() => validateNumbers(body)).code).toBe('invalid_request');
    });
  }

  it('accepts integers in range, null, and absent fields', () => {
    validateNumbers({ n: 1, max_tokens: 4096, max_completion_tokens: null, seed: -42, top_logprobs: 0, dimensions: 256, thinking: { budget_tokens: 2048 } });
    validateNumbers({ model: 'x', messages: [] });
    validateNumbers({ thinking: 'x' });
  });

  it('checks the rules it is given instead of the defaults', () => {
    expect(refusal(() => validateNumbers({ size: 5 }, { size: { min: 1, max: 4 } })).param).toBe('size');
    validateNumbers({ n: 1000 }, {});
  });
});
