/**
 * The client IP as an attacker holding a stolen, IP-locked key would probe it: every header a
 * proxy might set, spoofed from behind each kind of proxy. Addresses are from the documentation
 * ranges (RFC 5737, RFC 3849) and the presets' own ranges; Cloudflare's from cloudflare.com/ips.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { clientIp, IpRangeList, normaliseIp, parseForwardedFor, parseIp, TrustedProxies } from './client-ip.ts';

const ipv4 = fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255)).map((p) => p.join('.'));
const publicIpv4 = ipv4.filter((ip) => !/^(10\.|127\.|192\.168\.|172\.(1[6-9]|2\d|3[01])\.)/.test(ip) && !new IpRangeList(['173.245.48.0/20', '104.16.0.0/13', '162.158.0.0/15']).contains(parseIp(ip)!));

const VICTIM = '81.2.69.142';
const THIEF = '203.0.113.66';
const ALB = '10.0.3.17';
const CLOUDFLARE_EDGE = '172.70.1.2';

describe('client IP behind an ALB (X-Forwarded-For)', () => {
  const alb = new TrustedProxies(['alb']);

  it('ignores every forwarding header from a peer that is not a trusted proxy', () => {
    fc.assert(
      fc.property(publicIpv4, publicIpv4, (peer, claimed) => {
        expect(clientIp(peer, { 'x-forwarded-for': claimed, forwarded: `for=${claimed}`, 'cf-connecting-ip': claimed, 'x-real-ip': claimed }, alb)).toBe(peer);
      }),
    );
  });

  it('takes the rightmost hop the ALB appended, whatever the client put before it', () => {
    fc.assert(
      fc.property(publicIpv4, fc.array(fc.oneof(publicIpv4, fc.constantFrom('unknown', '', 'garbage', '"1.2.3.4"', '10.0.0.1')), { maxLength: 4 }), (client, spoofed) => {
        const xff = [...spoofed, client].join(', ');
        expect(clientIp(ALB, { 'x-forwarded-for': xff }, alb)).toBe(client);
      }),
    );
  });

  it('does not believe a CF-Connecting-IP sent through an ALB', () => {
    expect(clientIp(ALB, { 'cf-connecting-ip': VICTIM, 'x-forwarded-for': THIEF }, alb)).toBe(THIEF);
  });

  it('does not believe a Forwarded header sent through an ALB', () => {
    expect(clientIp(ALB, { forwarded: `for=${VICTIM}`, 'x-forwarded-for': THIEF }, alb)).toBe(THIEF);
  });

  it('cannot tell the client when the ALB\'s header is missing', () => {
    expect(clientIp(ALB, {}, alb)).toBeUndefined();
    expect(clientIp(ALB, { 'cf-connecting-ip': VICTIM }, alb)).toBeUndefined();
  });

  it('cannot tell the client when the hop the ALB appended is unknown, empty or not an address', () => {
    for (const xff of ['unknown', `${VICTIM}, unknown`, `${VICTIM},`, 'not-an-ip', `${VICTIM}, _hidden`, '0x51.2.69.142', '081.2.69.142', 'example.com']) {
      expect(clientIp(ALB, { 'x-forwarded-for': xff }, alb), xff).toBeUndefined();
    }
  });

  it('takes the leftmost hop when every hop is inside the trusted ranges (a client inside the VPC)', () => {
    expect(clientIp(ALB, { 'x-forwarded-for': '10.0.0.9, 10.0.1.1' }, alb)).toBe('10.0.0.9');
    expect(clientIp('127.0.0.2', { 'x-forwarded-for': '127.0.0.2' }, new TrustedProxies(['loopback']))).toBe('127.0.0.2');
  });

  it('does not let a spoofed internal address stand in for the client', () => {
    expect(clientIp(ALB, { 'x-forwarded-for': `10.0.0.9, ${THIEF}` }, alb)).toBe(THIEF);
  });

  it('walks through several X-Forwarded-For proxies (nginx behind an ALB)', () => {
    const chain = new TrustedProxies(['alb', 'nginx']);
    expect(clientIp('127.0.0.1', { 'x-forwarded-for': `${VICTIM}, ${THIEF}, ${ALB}` }, chain)).toBe(THIEF);
  });

  it('combines several X-Forwarded-For header instances in order', () => {
    expect(clientIp(ALB, { 'x-forwarded-for': [VICTIM, THIEF] }, alb)).toBe(THIEF);
  });

  it('reads hops with ports and bracketed IPv6', () => {
    expect(clientIp(ALB, { 'x-forwarded-for': `${THIEF}:51234` }, alb)).toBe(THIEF);
    expect(clientIp(ALB, { 'x-forwarded-for': '[2001:DB8::1]:443' }, alb)).toBe('2001:db8::1');
    expect(clientIp(ALB, { 'x-forwarded-for': '2001:db8:0:0::1' }, alb)).toBe('2001:db8::1');
  });

  it('narrows the ALB to the ranges given', () => {
    const narrow = new TrustedProxies(['alb@10.0.3.0/24']);
    expect(clientIp(ALB, { 'x-forwarded-for': THIEF }, narrow)).toBe(THIEF);
    expect(clientIp('10.9.9.9', { 'x-forwarded-for': VICTIM }, narrow)).toBe('10.9.9.9');
  });
});

describe('client IP behind Cloudflare (CF-Connecting-IP)', () => {
  const cf = new TrustedProxies(['cloudflare']);

  it('believes CF-Connecting-IP only from Cloudflare\'s ranges', () => {
    expect(clientIp(CLOUDFLARE_EDGE, { 'cf-connecting-ip': VICTIM }, cf)).toBe(VICTIM);
    expect(clientIp(THIEF, { 'cf-connecting-ip': VICTIM }, cf)).toBe(THIEF);
  });

  it('ignores X-Forwarded-For from Cloudflare (it is not the header the preset reads)', () => {
    expect(clientIp(CLOUDFLARE_EDGE, { 'cf-connecting-ip': THIEF, 'x-forwarded-for': VICTIM }, cf)).toBe(THIEF);
  });

  it('cannot tell the client when CF-Connecting-IP is missing, unknown or sent twice', () => {
    expect(clientIp(CLOUDFLARE_EDGE, { 'x-forwarded-for': VICTIM }, cf)).toBeUndefined();
    expect(clientIp(CLOUDFLARE_EDGE, { 'cf-connecting-ip': 'unknown' }, cf)).toBeUndefined();
    expect(clientIp(CLOUDFLARE_EDGE, { 'cf-connecting-ip': [VICTIM, THIEF] }, cf)).toBeUndefined();
    // Node joins repeated instances of an unknown header with ", ".
    expect(clientIp(CLOUDFLARE_EDGE, { 'cf-connecting-ip': `${VICTIM}, ${THIEF}` }, cf)).toBeUndefined();
  });

  it('reads CF-Connecting-IP behind an ALB only when the ALB\'s hop is a Cloudflare edge', () => {
    const both = new TrustedProxies(['cloudflare', 'alb']);
    expect(clientIp(ALB, { 'x-forwarded-for': CLOUDFLARE_EDGE, 'cf-connecting-ip': VICTIM }, both)).toBe(VICTIM);
    expect(clientIp(ALB, { 'x-forwarded-for': THIEF, 'cf-connecting-ip': VICTIM }, both)).toBe(THIEF);
  });

  it('refuses a range override for Cloudflare', () => {
    expect(() => new TrustedProxies(['cloudflare@10.0.0.0/8'])).toThrow();
  });
});

describe('client IP behind an RFC 7239 proxy (Forwarded)', () => {
  const fwd = new TrustedProxies(['forwarded@10.0.0.0/8']);

  it('takes the leftmost element when every element is inside the trusted ranges', () => {
    expect(clientIp(ALB, { forwarded: 'for=10.1.2.3, for=10.0.0.1' }, fwd)).toBe('10.1.2.3');
  });

  it('reads the for= node of the element the proxy appended', () => {
    expect(clientIp(ALB, { forwarded: `for=${VICTIM};proto=https, for=${THIEF};by=10.0.0.1` }, fwd)).toBe(THIEF);
    expect(clientIp(ALB, { forwarded: 'for="[2001:db8:cafe::17]:4711"' }, fwd)).toBe('2001:db8:cafe::17');
  });

  it('does not believe X-Forwarded-For from a Forwarded proxy', () => {
    expect(clientIp(ALB, { 'x-forwarded-for': VICTIM, forwarded: `for=${THIEF}` }, fwd)).toBe(THIEF);
  });

  it('does not split an element at a comma inside a quoted value', () => {
    expect(parseForwardedFor(`for="${THIEF}, for=${VICTIM}"`)).toEqual([undefined]);
    expect(clientIp(ALB, { forwarded: `for="${THIEF}, for=${VICTIM}"` }, fwd)).toBeUndefined();
  });

  it('cannot tell the client from obfuscated, unknown or missing nodes', () => {
    for (const forwarded of ['for=_hidden', 'for=unknown', 'proto=https', 'for="_x:80"', `for=${VICTIM}, by=10.0.0.1`]) {
      expect(clientIp(ALB, { forwarded }, fwd), forwarded).toBeUndefined();
    }
  });

  it('refuses a header that does not parse (unterminated quote, repeated parameter, junk)', () => {
    for (const forwarded of [`for="${THIEF}`, `for=${VICTIM};for=${THIEF}`, `for ${THIEF}`, `for=${VICTIM} x`, `=${THIEF}`, `for=`]) {
      expect(parseForwardedFor(forwarded), forwarded).toBeUndefined();
      expect(clientIp(ALB, { forwarded }, fwd), forwarded).toBeUndefined();
    }
  });

  it('reads quoted IPv4 and quoted-pair escapes as RFC 7230 quoted strings', () => {
    expect(parseForwardedFor(`For="${VICTIM}";proto=http;by=203.0.113.43, for="\\[2001:db8::1\\]"`)).toEqual([VICTIM, '2001:db8::1']);
  });
});

describe('client IP behind a proxy with its own header', () => {
  it('reads only the named header from the named ranges', () => {
    const realIp = new TrustedProxies(['header=X-Real-IP@127.0.0.1']);
    expect(clientIp('127.0.0.1', { 'x-real-ip': VICTIM, 'x-forwarded-for': THIEF }, realIp)).toBe(VICTIM);
    expect(clientIp('127.0.0.1', { 'x-forwarded-for': THIEF }, realIp)).toBeUndefined();
    expect(clientIp(THIEF, { 'x-real-ip': VICTIM }, realIp)).toBe(THIEF);
  });

  it('refuses a generic entry without ranges or with a bad header name', () => {
    expect(() => new TrustedProxies(['header=x-real-ip'])).toThrow();
    expect(() => new TrustedProxies(['header=x real@10.0.0.0/8'])).toThrow();
    expect(() => new TrustedProxies(['xff'])).toThrow();
    expect(() => new TrustedProxies(['forwarded@'])).toThrow();
  });

  it('refuses two entries that give overlapping ranges different headers', () => {
    expect(() => new TrustedProxies(['loopback', 'header=x-real-ip@127.0.0.1'])).toThrow(/overlap/);
    expect(() => new TrustedProxies(['cloudflare', 'forwarded@104.16.0.0/12'])).toThrow(/overlap/);
    expect(() => new TrustedProxies(['loopback', 'private', 'alb@10.0.0.0/16'])).not.toThrow();
  });
});

describe('addresses', () => {
  const loopback = new TrustedProxies(['loopback', 'private']);

  it('treats IPv4-mapped IPv6 peers and hops as the IPv4 address, in every spelling', () => {
    expect(normaliseIp('::ffff:81.2.69.142')).toBe(VICTIM);
    expect(normaliseIp('::FFFF:5102:458e')).toBe(VICTIM);
    expect(normaliseIp('0:0:0:0:0:ffff:81.2.69.142')).toBe(VICTIM);
    expect(clientIp('::ffff:7f00:1', { 'x-forwarded-for': `::ffff:${VICTIM}` }, loopback)).toBe(VICTIM);
    expect(clientIp(`::ffff:${VICTIM}`, {}, loopback)).toBe(VICTIM);
  });

  it('drops IPv6 zone ids from peers and hops', () => {
    expect(normaliseIp('fe80::1%eth0')).toBe('fe80::1');
    expect(normaliseIp('[fe80::1%25eth0]:80')).toBe('fe80::1');
    expect(clientIp('fe80::1%eth0', {}, loopback)).toBe('fe80::1');
    expect(clientIp('::1%lo', { 'x-forwarded-for': '2001:db8::7%eth0' }, loopback)).toBe('2001:db8::7');
  });

  it('keeps the loopback and private presets as X-Forwarded-For proxies', () => {
    expect(clientIp('127.0.0.1', { 'x-forwarded-for': VICTIM }, loopback)).toBe(VICTIM);
    expect(clientIp('192.168.1.2', { 'x-forwarded-for': VICTIM }, loopback)).toBe(VICTIM);
    expect(clientIp('127.0.0.1', { 'cf-connecting-ip': VICTIM }, loopback)).toBeUndefined();
  });

  it('accepts bare addresses and CIDRs as X-Forwarded-For proxies', () => {
    const bare = new TrustedProxies(['10.0.3.17', '192.0.2.0/24', '::ffff:198.51.100.0/120']);
    expect(clientIp(ALB, { 'x-forwarded-for': THIEF }, bare)).toBe(THIEF);
    expect(clientIp('192.0.2.9', { 'x-forwarded-for': THIEF }, bare)).toBe(THIEF);
    expect(clientIp('198.51.100.9', { 'x-forwarded-for': THIEF }, bare)).toBe(THIEF);
    expect(clientIp('10.0.3.18', { 'x-forwarded-for': THIEF }, bare)).toBe('10.0.3.18');
  });

  it('refuses configuration that is not a preset, an address or a CIDR', () => {
    for (const entry of ['nonsense', '10.0.0.0/33', '10.0.0.0/x', '1.2.3', 'alb@nope', 'loopback@10.0.0.0/8']) {
      expect(() => new TrustedProxies([entry]), entry).toThrow();
    }
  });

  it('cannot tell the client of a peer that is not an address', () => {
    expect(clientIp('', {}, loopback)).toBeUndefined();
  });
});
