import { describe, expect, it } from 'vitest';
import { HOP_BY_HOP_HEADERS, isLoopbackHost } from './http-rules.ts';
import { isLoopbackUrl } from './loopback-url.ts';

describe('loopback rule', () => {
  it('counts 127.0.0.1, localhost and [::1] as loopback', () => {
    for (const url of ['http://127.0.0.1:8080', 'http://localhost', 'http://[::1]:3000/x']) expect(isLoopbackUrl(url)).toBe(true);
  });

  it('counts nothing else as loopback, including other 127/8 addresses and look-alike names', () => {
    for (const url of ['https://api.openai.com', 'http://127.0.0.2', 'http://localhost.example.com', 'http://10.0.0.1', 'http://[::2]']) expect(isLoopbackUrl(url)).toBe(false);
  });

  it('is false for text that is not a URL', () => {
    expect(isLoopbackUrl('127.0.0.1:8080 ')).toBe(false);
    expect(isLoopbackUrl('')).toBe(false);
  });

  it('reads the hostname as URL spells it (IPv6 in brackets)', () => {
    expect(isLoopbackHost(new URL('http://[0:0:0:0:0:0:0:1]/').hostname)).toBe(true);
    expect(isLoopbackHost('::1')).toBe(false);
  });
});

describe('hop-by-hop headers', () => {
  it('holds the RFC 9110 §7.6.1 fields in lower case and no end-to-end field', () => {
    expect([...HOP_BY_HOP_HEADERS].sort()).toEqual(['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade']);
    for (const name of ['content-type', 'content-length', 'authorization', 'host']) expect(HOP_BY_HOP_HEADERS.has(name)).toBe(false);
  });
});
