// Vectors: RFC 9110 §8.3.1 (its three equivalent `text/html;charset=utf-8` spellings), RFC 2046
// §5.1.1 (boundary grammar), and the Content-Type values in /work/shared/specs/captures.
import { readFileSync, readdirSync } from 'node:fs';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { hasUtf8Charset, isJsonType, isMultipartFormData, multipartBoundary, parseMediaType, rawHeaderValues } from './media-type.ts';

const charsFrom = (chars: string, minLength: number, maxLength: number): fc.Arbitrary<string> =>
  fc.array(fc.constantFrom(...chars), { minLength, maxLength }).map((cs) => cs.join(''));

describe('parseMediaType', () => {
  it('reads the equivalent spellings RFC 9110 §8.3.1 lists as the same type', () => {
    for (const h of ['text/html;charset=utf-8', 'text/html;charset=UTF-8', 'Text/HTML;Charset="utf-8"', 'text/html; charset="utf-8"']) {
      const mt = parseMediaType(h)!;
      expect(mt.essence).toBe('text/html');
      expect(mt.parameters.get('charset')!.toLowerCase()).toBe('utf-8');
    }
  });

  it('lower-cases type, subtype and parameter names but keeps parameter values', () => {
    const mt = parseMediaType('Multipart/Form-Data; BOUNDARY=AbC')!;
    expect([mt.type, mt.subtype, mt.essence]).toEqual(['multipart', 'form-data', 'multipart/form-data']);
    expect(mt.parameters.get('boundary')).toBe('AbC');
  });

  it('allows whitespace around the value and around semicolons, and empty parameters', () => {
    expect(parseMediaType(' \tapplication/json \t; charset=utf-8 ;; ')?.parameters.get('charset')).toBe('utf-8');
    expect(parseMediaType('application/json;')?.essence).toBe('application/json');
  });

  it('unescapes quoted-pairs and remembers that it did', () => {
    const mt = parseMediaType('text/plain; a="x\\"y"; b="plain"')!;
    expect(mt.parameters.get('a')).toBe('x"y');
    expect(mt.escaped.has('a')).toBe(true);
    expect(mt.escaped.has('b')).toBe(false);
  });

  const malformed = [
    '',
    ' ',
    'application',
    'application/',
    '/json',
    'application /json',
    'application/ json',
    'application/json charset=utf-8',
    'application/json; charset',
    'application/json; charset =utf-8',
    'application/json; charset= utf-8',
    'application/json; charset="utf-8',
    'application/json; charset=utf 8',
    'application/json; a=1; A=2',
    'application/json, text/plain',
    'application/json; a="\u0001"',
    'application/json\u0100',
    'text/plain; a="\\',
  ];
  for (const h of malformed) {
    it(`refuses ${JSON.stringify(h)}`, () => {
      expect(parseMediaType(h)).toBeUndefined();
    });
  }

  it('refuses a header given twice and an absent header', () => {
    expect(parseMediaType(['application/json', 'text/plain'])).toBeUndefined();
    expect(parseMediaType(['application/json'])).toBeUndefined();
    expect(parseMediaType(undefined)).toBeUndefined();
  });

  it('reads every Content-Type in the SDK captures', () => {
    const dir = '/work/shared/specs/captures';
    for (const file of readdirSync(dir).filter((f) => f.endsWith('.jsonl'))) {
      for (const line of readFileSync(`${dir}/${file}`, 'utf8').split('\n')) {
        if (!line) continue;
        const ct = (JSON.parse(line) as { headers: Record<string, string> }).headers['content-type'];
        if (ct === undefined) continue;
        const mt = parseMediaType(ct);
        expect(mt).toBeDefined();
        expect(isJsonType(mt) || multipartBoundary(mt) !== undefined).toBe(true);
      }
    }
  });

  it('never throws, whatever the header', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string(), fc.uint8Array({ maxLength: 40 }).map((b) => Buffer.from(b).toString('latin1')), charsFrom('aZ/;=" \\\t+-', 0, 30)), (h) => {
        parseMediaType(h);
      }),
      { numRuns: 3000 },
    );
  });

  it('reads back any type it renders from tokens and quoted values', () => {
    const token = charsFrom("!#$%&'*+.^_`|~09AZaz-", 1, 12);
    const qvalue = charsFrom('\t !#[]~\u0080\u00ffaz;=', 0, 12);
    fc.assert(
      fc.property(token, token, fc.uniqueArray(fc.tuple(token, qvalue), { selector: ([n]) => n.toLowerCase(), maxLength: 4 }), (t, st, params) => {
        const h = `${t}/${st}${params.map(([n, v]) => `; ${n}="${v}"`).join('')}`;
        const mt = parseMediaType(h)!;
        expect(mt.essence).toBe(`${t}/${st}`.toLowerCase());
        expect([...mt.parameters]).toEqual(params.map(([n, v]) => [n.toLowerCase(), v]));
      }),
      { numRuns: 200 },
    );
  });
});

describe('isJsonType', () => {
  it('treats application/json in any case, +json suffixes and text/json as JSON', () => {
    for (const h of ['application/json', 'Application/JSON', 'application/json; charset=utf-8', 'application/vnd.api+json', 'application/merge-patch+JSON', 'text/json']) {
      expect(isJsonType(parseMediaType(h))).toBe(true);
    }
  });

  it('does not treat other types, or no type, as JSON', () => {
    for (const h of ['text/plain', 'application/jsonl', 'application/x-ndjson', 'multipart/form-data; boundary=a', undefined]) {
      expect(isJsonType(parseMediaType(h))).toBe(false);
    }
  });
});

describe('hasUtf8Charset', () => {
  it('accepts no charset or UTF-8 in any spelling, and nothing else', () => {
    expect(hasUtf8Charset(parseMediaType('application/json')!)).toBe(true);
    expect(hasUtf8Charset(parseMediaType('application/json; charset=UTF-8')!)).toBe(true);
    expect(hasUtf8Charset(parseMediaType('application/json; charset="utf8"')!)).toBe(true);
    expect(hasUtf8Charset(parseMediaType('application/json; charset=utf-16')!)).toBe(false);
  });
});

describe('multipartBoundary', () => {
  it('reads the boundaries the SDKs send', () => {
    for (const b of ['----formdata-undici-093639695837', 'openai-vs3bundpk2i', 'ad97fa7ce77a083a88f73656704922f4']) {
      const mt = parseMediaType(`multipart/form-data; boundary=${b}`);
      expect(isMultipartFormData(mt)).toBe(true);
      expect(multipartBoundary(mt)).toBe(b);
    }
  });

  it('reads quoted boundaries with the characters only quotes allow', () => {
    expect(multipartBoundary(parseMediaType('multipart/form-data; boundary="a b(c):d?"'))).toBe('a b(c):d?');
  });

  it('refuses boundaries RFC 2046 does not allow', () => {
    for (const h of [
      'multipart/form-data',
      'multipart/form-data; boundary=""',
      'multipart/form-data; boundary="ab "',
      `multipart/form-data; boundary=${'a'.repeat(71)}`,
      'multipart/form-data; boundary="a\\"b"',
      'multipart/form-data; boundary=a{b',
      'application/json; boundary=abc',
    ]) {
      expect(multipartBoundary(parseMediaType(h))).toBeUndefined();
    }
    expect(multipartBoundary(parseMediaType(`multipart/form-data; boundary=${'a'.repeat(70)}`))).toBe('a'.repeat(70));
  });

  it('refuses a boundary written with a quoted-pair, which parsers unescape differently', () => {
    expect(multipartBoundary(parseMediaType('multipart/form-data; boundary="a\\bc"'))).toBeUndefined();
  });

  it('is not form-data for other multipart subtypes', () => {
    expect(isMultipartFormData(parseMediaType('multipart/mixed; boundary=a'))).toBe(false);
  });
});

describe('rawHeaderValues', () => {
  it('returns one value, every value of a repeated header, or undefined', () => {
    const raw = ['Host', 'x', 'Content-Type', 'application/json', 'content-type', 'text/plain'];
    expect(rawHeaderValues(raw, 'content-type')).toEqual(['application/json', 'text/plain']);
    expect(parseMediaType(rawHeaderValues(raw, 'content-type'))).toBeUndefined();
    expect(rawHeaderValues(raw, 'HOST')).toBe('x');
    expect(rawHeaderValues(raw, 'accept')).toBeUndefined();
  });
});
