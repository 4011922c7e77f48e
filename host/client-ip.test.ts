import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { clientIp, normaliseIp, parseForwardedFor, TrustedProxies } from './client-ip.ts';

const ipv4 = fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255)).map((p) => p.join('.'));
const publicIpv4 = ipv4.filter((ip) => !/^(10\.|127\.|192\.168\.|172\.(1[6-9]|2\d|3[01])\.)/.test(ip));

describe('client IP behind proxies', () => {
  const trusted = new TrustedProxies(['loopback', 'private']);

  it('ignores forwarding headers from an untrusted peer (no spoofing)', () => {
    fc.assert(
      fc.property(publicIpv4, publicIpv4, (peer, claimed) => {
        expect(clientIp(peer, { 'x-forwarded-for': claimed, forwarded: `for=${claimed}`, 'cf-connecting-ip': claimed }, trusted)).toBe(peer);
      }),
    );
  });

  it('takes the right-most untrusted hop of X-Forwarded-For from a trusted peer', () => {
    fc.assert(
      fc.property(publicIpv4, fc.array(publicIpv4, { maxLength: 3 }), fc.array(fc.constantFrom('10.0.0.1', '192.168.1.2'), { maxLength: 3 }), (client, spoofed, proxies) => {
        const xff = [...spoofed, client, ...proxies].join(', ');
        expect(clientIp('127.0.0.1', { 'x-forwarded-for': xff }, trusted)).toBe(client);
      }),
    );
  });

  it('reads RFC 7239 Forwarded, with quoted IPv6 and ports', () => {
    expect(parseForwardedFor('for=192.0.2.60;proto=http;by=203.0.113.43, for="[2001:db8:cafe::17]:4711"')).toEqual(['192.0.2.60', '2001:db8:cafe::17']);
    expect(clientIp('10.1.1.1', { forwarded: 'for=198.51.100.17, for=10.0.0.9' }, trusted)).toBe('198.51.100.17');
  });

  it('normalises IPv4-mapped IPv6 for peers and headers', () => {
    expect(normaliseIp('::ffff:81.2.69.142')).toBe('81.2.69.142');
    expect(clientIp('::ffff:127.0.0.1', { 'x-forwarded-for': '::ffff:81.2.69.142' }, trusted)).toBe('81.2.69.142');
    expect(clientIp('::ffff:81.2.69.142', {}, trusted)).toBe('81.2.69.142');
  });

  it('falls back to the peer when a header hop is garbage', () => {
    expect(clientIp('127.0.0.1', { 'x-forwarded-for': 'not-an-ip' }, trusted)).toBe('127.0.0.1');
  });

  it('knows the presets', () => {
    const cf = new TrustedProxies(['cloudflare']);
    expect(cf.has('173.245.48.1')).toBe(true);
    expect(cf.has('8.8.8.8')).toBe(false);
    expect(() => new TrustedProxies(['nonsense'])).toThrow();
  });
});
