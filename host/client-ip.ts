/**
 * The client's true IP. Forwarding headers (`X-Forwarded-For`, RFC 7239 `Forwarded`,
 * `CF-Connecting-IP`) are honoured only when the direct peer is a configured trusted proxy;
 * the chain is walked right to left and the first address that is not a trusted proxy is the
 * client. IPv4-mapped IPv6 (`::ffff:1.2.3.4`) is normalised to IPv4. Pure.
 */
import { BlockList, isIP } from 'node:net';

/** Documented presets; operators combine them with their own CIDRs. */
export const TRUSTED_PROXY_PRESETS: Record<string, string[]> = {
  loopback: ['127.0.0.0/8', '::1/128'],
  /** Load balancers inside a VPC (AWS ALB/NLB, GCP, Azure) sit on private ranges. */
  private: ['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', 'fc00::/7'],
  /** Cloudflare's published edge ranges (https://www.cloudflare.com/ips/). */
  cloudflare: [
    '173.245.48.0/20', '103.21.244.0/22', '103.22.200.0/22', '103.31.4.0/22', '141.101.64.0/18', '108.162.192.0/18',
    '190.93.240.0/20', '188.114.96.0/20', '197.234.240.0/22', '198.41.128.0/17', '162.158.0.0/15', '104.16.0.0/13',
    '104.24.0.0/14', '172.64.0.0/13', '131.0.72.0/22', '2400:cb00::/32', '2606:4700::/32', '2803:f800::/32',
    '2405:b500::/32', '2405:8100::/32', '2a06:98c0::/29', '2c0f:f248::/32',
  ],
};

export function normaliseIp(raw: string): string | undefined {
  let ip = raw.trim();
  if (ip.startsWith('[')) ip = ip.slice(1, ip.indexOf(']') > 0 ? ip.indexOf(']') : undefined);
  else if (/^\d+\.\d+\.\d+\.\d+:\d+$/.test(ip)) ip = ip.slice(0, ip.lastIndexOf(':'));
  const zone = ip.indexOf('%');
  if (zone > 0) ip = ip.slice(0, zone);
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
  if (mapped) ip = mapped[1]!;
  const kind = isIP(ip);
  if (kind === 0) return undefined;
  return kind === 6 ? ip.toLowerCase() : ip;
}

export class TrustedProxies {
  readonly #list = new BlockList();
  readonly size: number;

  /** `entries`: CIDRs, single addresses, or preset names (`loopback`, `private`, `cloudflare`). */
  constructor(entries: string[] = []) {
    let n = 0;
    for (const entry of entries.flatMap((e) => TRUSTED_PROXY_PRESETS[e] ?? [e])) {
      const [addr, bits] = entry.split('/');
      const ip = normaliseIp(addr!);
      if (!ip) throw new Error(`trusted proxy ${entry} is not an address or CIDR`);
      const family = isIP(ip) === 6 ? 'ipv6' : 'ipv4';
      if (bits === undefined) this.#list.addAddress(ip, family);
      else this.#list.addSubnet(ip, Number(bits), family);
      n++;
    }
    this.size = n;
  }

  has(ip: string): boolean {
    return this.#list.check(ip, isIP(ip) === 6 ? 'ipv6' : 'ipv4');
  }
}

/** Parses `Forwarded` (RFC 7239 §4) into the `for=` addresses, in order. */
export function parseForwardedFor(header: string): string[] {
  const out: string[] = [];
  for (const element of header.split(',')) {
    for (const pair of element.split(';')) {
      const [k, v] = pair.split('=');
      if (k?.trim().toLowerCase() !== 'for' || v === undefined) continue;
      const value = v.trim().replace(/^"|"$/g, '');
      const ip = normaliseIp(value);
      if (ip) out.push(ip);
      else out.push('unknown');
    }
  }
  return out;
}

export type HeaderBag = Record<string, string | string[] | undefined>;

const first = (v: string | string[] | undefined) => (Array.isArray(v) ? v.join(',') : v);

/** Determines the client IP from the socket peer and, via trusted proxies only, the headers. */
export function clientIp(peer: string, headers: HeaderBag, trusted: TrustedProxies): string {
  const direct = normaliseIp(peer) ?? peer;
  if (trusted.size === 0 || !trusted.has(direct)) return direct;
  const cf = first(headers['cf-connecting-ip']);
  if (cf) {
    const ip = normaliseIp(cf);
    if (ip) return ip;
  }
  const forwarded = first(headers.forwarded);
  const xff = first(headers['x-forwarded-for']);
  const chain = forwarded ? parseForwardedFor(forwarded) : xff ? xff.split(',').map((s) => normaliseIp(s) ?? 'unknown') : [];
  for (let i = chain.length - 1; i >= 0; i--) {
    const hop = chain[i]!;
    if (hop === 'unknown') return direct;
    if (!trusted.has(hop)) return hop;
  }
  return chain[0] && chain[0] !== 'unknown' ? chain[0] : direct;
}
