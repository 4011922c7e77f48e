/**
 * Invariant 9 at the unit level: each encoding of the key an upstream may echo is masked, whole
 * or streamed with the chunk boundary at every offset. The e2e echo test is
 * test/e2e/policy-enforcement.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { cachedKeyPatterns, keyPatterns, KeyScrubber } from './scrub.ts';

const KEY = 'sk-proj-Ab3/x+Y_z~9 key:tail';

/** The ways an upstream echoes a credential: what test upstreams put in headers and bodies. */
export function echoes(key: string): Record<string, string> {
  const b = Buffer.from(key);
  return {
    raw: key,
    base64: b.toString('base64'),
    base64url: b.toString('base64url'),
    basicWithUser: Buffer.from(`user:${key}`).toString('base64'),
    basicAfterTwo: Buffer.from(`ab${key}`).toString('base64'),
    hex: b.toString('hex'),
    hexUpper: b.toString('hex').toUpperCase(),
    urlEncoded: encodeURIComponent(key),
    urlEncodedLower: encodeURIComponent(key).replace(/%[0-9A-F]{2}/g, (m) => m.toLowerCase()),
    formEncoded: new URLSearchParams({ k: key }).toString().slice(2),
    pathSafe: encodeURIComponent(key).replace(/%2F/g, '/'),
    everyByte: [...b].map((x) => `%${x.toString(16).padStart(2, '0')}`).join(''),
    jsonEscaped: JSON.stringify(key).slice(1, -1),
    jsonSlashEscaped: JSON.stringify(key).slice(1, -1).replace(/\//g, '\\/'),
  };
}

function leaks(out: string, key: string): string[] {
  const found: string[] = [];
  for (const [name, form] of Object.entries(echoes(key))) {
    if (out.includes(form)) found.push(name);
  }
  // A base64 form embedded with a prefix is caught by its key-only core.
  for (const p of keyPatterns(key)) if (out.includes(p.toString())) found.push(`pattern ${p.length}`);
  return found;
}

describe('key scrubber', () => {
  it('passes streamed text that cannot begin the key at once, holding back only a possible start of it', () => {
    const s = new KeyScrubber(KEY);
    const event = Buffer.from('data: {"choices":[{"delta":{"content":"Hello"}}]}\n\n');
    expect(s.push(event).equals(event)).toBe(true);
    // "sk-pr" could begin the key: held until the next chunk says whether it does.
    expect(s.push(Buffer.from('tail sk-pr')).toString()).toBe('tail ');
    expect(s.push(Buffer.from('ose and more')).toString()).toBe('sk-prose and more');
    expect(s.flush().length).toBe(0);
  });

  for (const [name, form] of Object.entries(echoes(KEY))) {
    it(`masks the ${name} form split at every offset, keeping the length`, () => {
      const body = `{"next":"https://api.example.com/v1/x?key=${form}&page=2","echo":"${form}"}`;
      for (let cut = 0; cut <= body.length; cut++) {
        const s = new KeyScrubber(KEY);
        const out = Buffer.concat([s.push(Buffer.from(body.slice(0, cut))), s.push(Buffer.from(body.slice(cut))), s.flush()]).toString();
        expect(leaks(out, KEY), `cut at ${cut}`).toEqual([]);
        expect(out.length).toBe(body.length);
        expect(out.startsWith('{"next":"https://api.example.com/v1/x?key=')).toBe(true);
      }
    });
  }

  it('masks forms streamed one byte at a time', () => {
    const body = Object.values(echoes(KEY)).join(' | ');
    const s = new KeyScrubber(KEY);
    const parts: Buffer[] = [];
    for (const byte of Buffer.from(body)) parts.push(s.push(Buffer.of(byte)));
    parts.push(s.flush());
    expect(leaks(Buffer.concat(parts).toString(), KEY)).toEqual([]);
  });

  it('leaves text without the key byte for byte as it was', () => {
    const body = Buffer.from('{"id":"chatcmpl-1","choices":[{"message":{"content":"sk-proj is a prefix, not a key"}}]}');
    const s = new KeyScrubber(KEY);
    expect(Buffer.concat([s.push(body.subarray(0, 10)), s.push(body.subarray(10)), s.flush()])).toEqual(body);
    expect(s.scrubBuffer(body)).toEqual(body);
  });

  it('masks a header value', () => {
    const s = new KeyScrubber(KEY);
    expect(s.scrubString(`https://x.test/next?api_key=${encodeURIComponent(KEY)}`)).not.toContain(encodeURIComponent(KEY));
    expect(s.scrubString(`Basic ${Buffer.from(`${KEY}:`).toString('base64')}`)).toMatch(/^Basic \*+/);
  });

  it('builds each key\'s patterns once, and a rotated key gets its own', () => {
    const first = cachedKeyPatterns(KEY);
    expect(cachedKeyPatterns(KEY)).toBe(first);
    expect(first.map(String)).toEqual(keyPatterns(KEY).map(String));
    const rotated = cachedKeyPatterns(`${KEY}-rotated`);
    expect(rotated).not.toBe(first);
    const scrubber = new KeyScrubber(`${KEY}-rotated`);
    for (const [form, text] of Object.entries(echoes(`${KEY}-rotated`))) {
      expect(scrubber.scrubString(`x ${text} y`), form).not.toContain(text);
    }
  });

  it('keeps patterns for a bounded number of keys', () => {
    const first = cachedKeyPatterns('sk-bounded-first-key-000000');
    for (let i = 0; i < 1100; i++) cachedKeyPatterns(`sk-bounded-${i.toString().padStart(20, '0')}`);
    expect(cachedKeyPatterns('sk-bounded-first-key-000000')).not.toBe(first);
  });
});
