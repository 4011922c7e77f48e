/**
 * The client's true IP, from the socket peer and — only where the peer is a configured trusted
 * proxy — from the one header that proxy sets. Each trusted proxy is configured with its header:
 * an ALB or nginx appends to `X-Forwarded-For`, Cloudflare sets `CF-Connecting-IP`, an RFC 7239
 * proxy appends to `Forwarded`, a generic one names its own header (`X-Real-IP`). Headers a
 * configured proxy does not set are never read, so a client cannot choose its IP by sending the
 * header some other proxy would have set.
 *
 * The walk starts at the peer: while the current address belongs to a trusted proxy, the next
 * address is taken from that proxy's header (the rightmost entry of a list header, which the
 * proxy itself appended; the whole value of a single-valued header, which ends the walk). The
 * first address that is not a trusted proxy is the client. When a list header runs out on an
 * address a trusted proxy wrote into it, that address connected without forwarding: it is the
 * client, though inside a trusted range (as nginx's `real_ip_recursive` and Express's proxy-addr
 * decide). Whenever the host cannot tell — the peer's header is missing, malformed, `unknown`,
 * obfuscated, or a single-valued header was sent more than once — the answer is `undefined` and
 * the request must be refused, never attributed to the proxy. Pure: no I/O.
 *
 * Configuration (`--trusted-proxy`, repeatable; `HostConfig.trustedProxies`):
 *   loopback | private             X-Forwarded-For from 127.0.0.0/8 + ::1 | RFC 1918 + fc00::/7
 *   alb[@cidr,…]                   X-Forwarded-For; default ranges: RFC 1918 (load balancers in a VPC)
 *   nginx[@cidr,…]                 X-Forwarded-For; default ranges: loopback (nginx on the same machine)
 *   xff@cidr,…                     X-Forwarded-For from the ranges given
 *   forwarded@cidr,…               RFC 7239 Forwarded (`for=`) from the ranges given
 *   cloudflare                     CF-Connecting-IP, only from Cloudflare's published ranges
 *   header=<name>@cidr,…           a single-valued header the proxy overwrites (e.g. x-real-ip)
 *   <cidr> | <address>             shorthand for xff@<cidr>
 * Two entries whose ranges overlap must name the same header (otherwise the construction throws).
 */
import { isIP } from 'node:net';

const RANGES = {
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

const XFF = 'x-forwarded-for';
const FORWARDED = 'forwarded';

/** Presets: the header each kind of proxy sets, and its ranges (`null`: ranges must be given with `@`). */
const PRESETS: Record<string, { header: string; ranges: string[] | null; fixed: boolean }> = {
  loopback: { header: XFF, ranges: RANGES.loopback, fixed: true },
  private: { header: XFF, ranges: RANGES.private, fixed: true },
  cloudflare: { header: 'cf-connecting-ip', ranges: RANGES.cloudflare, fixed: true },
  alb: { header: XFF, ranges: RANGES.private, fixed: false },
  nginx: { header: XFF, ranges: RANGES.loopback, fixed: false },
  xff: { header: XFF, ranges: null, fixed: false },
  forwarded: { header: FORWARDED, ranges: null, fixed: false },
};

export const TRUSTED_PROXY_PRESET_NAMES = Object.keys(PRESETS);

// ---- addresses ----

export interface ParsedIp {
  family: 4 | 6;
  /** The address as an unsigned integer (32 or 128 bits). */
  value: bigint;
  /** Canonical text: dotted IPv4, or RFC 5952 compressed lower-case IPv6. */
  text: string;
}

function ipv4Value(text: string): bigint {
  return text.split('.').reduce((acc, part) => (acc << 8n) | BigInt(Number(part)), 0n);
}

function ipv6Value(canonical: string): bigint {
  const [head, tail] = canonical.includes('::') ? canonical.split('::') : [canonical, undefined];
  const left = head ? head.split(':') : [];
  const right = tail ? tail.split(':') : [];
  const groups = tail === undefined ? left : [...left, ...Array<string>(8 - left.length - right.length).fill('0'), ...right];
  return groups.reduce((acc, g) => (acc << 16n) | BigInt(parseInt(g, 16)), 0n);
}

/**
 * Parses one bare address (no brackets, no port). A zone id (`fe80::1%eth0`) is dropped and an
 * IPv4-mapped IPv6 address (`::ffff:1.2.3.4`, RFC 4291 §2.5.5.2) becomes the IPv4 address, so the
 * same client never has two spellings. IPv4 is strict dotted-quad (no octal, hex or short forms).
 */
export function parseIp(raw: string): ParsedIp | undefined {
  let ip = raw;
  const zone = ip.indexOf('%');
  if (zone > 0 && ip.includes(':')) ip = ip.slice(0, zone);
  const kind = isIP(ip);
  if (kind === 4) return { family: 4, value: ipv4Value(ip), text: ip };
  if (kind !== 6) return undefined;
  const canonical = new URL(`http://[${ip}]/`).hostname.slice(1, -1);
  const value = ipv6Value(canonical);
  if (value >> 32n === 0xffffn) {
    const v4 = Number(value & 0xffffffffn);
    const text = [v4 >>> 24, (v4 >>> 16) & 255, (v4 >>> 8) & 255, v4 & 255].join('.');
    return { family: 4, value: value & 0xffffffffn, text };
  }
  return { family: 6, value, text: canonical };
}

/**
 * Normalises an address as it appears in a socket peer or a forwarding header: optional brackets,
 * optional port (`1.2.3.4:80`, `[2001:db8::1]:443`), optional zone id. Anything else — `unknown`,
 * obfuscated identifiers, host names, empty strings — is `undefined`.
 */
export function normaliseIp(raw: string): string | undefined {
  let ip = raw.trim();
  if (ip.startsWith('[')) {
    const close = ip.indexOf(']');
    if (close < 0 || !/^(:\d{1,5})?$/.test(ip.slice(close + 1))) return undefined;
    ip = ip.slice(1, close);
    if (!ip.includes(':')) return undefined;
  } else if (/^\d+\.\d+\.\d+\.\d+:\d{1,5}$/.test(ip)) {
    ip = ip.slice(0, ip.lastIndexOf(':'));
  }
  return parseIp(ip)?.text;
}

interface Cidr {
  family: 4 | 6;
  network: bigint;
  bits: number;
}

function parseCidr(entry: string): Cidr {
  const [addr, bitsText, extra] = entry.split('/');
  const ip = addr === undefined ? undefined : parseIp(addr);
  const width = ip?.family === 4 ? 32 : 128;
  let bits = bitsText === undefined ? width : /^\d{1,3}$/.test(bitsText) ? Number(bitsText) : NaN;
  if (!ip || extra !== undefined || !(bits >= 0 && bits <= (isIP(addr!) === 6 ? 128 : 32))) throw new Error(`trusted proxy range "${entry}" is not an address or CIDR`);
  // A mapped IPv6 range (::ffff:a.b.c.d/n, n ≥ 96) is the IPv4 range it maps.
  if (ip.family === 4 && isIP(addr!.split('%')[0]!) === 6) bits = bitsText === undefined ? 32 : bits - 96;
  if (bits < 0) throw new Error(`trusted proxy range "${entry}" mixes IPv4-mapped and plain IPv6`);
  const host = BigInt(width - bits);
  return { family: ip.family, network: (ip.value >> host) << host, bits };
}

function cidrContains(c: Cidr, ip: ParsedIp): boolean {
  if (c.family !== ip.family) return false;
  const host = BigInt((c.family === 4 ? 32 : 128) - c.bits);
  return ip.value >> host === c.network >> host;
}

function cidrsOverlap(a: Cidr, b: Cidr): boolean {
  if (a.family !== b.family) return false;
  const host = BigInt((a.family === 4 ? 32 : 128) - Math.min(a.bits, b.bits));
  return a.network >> host === b.network >> host;
}

/** A set of address ranges; the alert dispatcher uses it for the ranges webhooks may not reach. */
export class IpRangeList {
  readonly #cidrs: Cidr[];
  constructor(entries: readonly string[]) {
    this.#cidrs = entries.map(parseCidr);
  }
  contains(ip: ParsedIp): boolean {
    return this.#cidrs.some((c) => cidrContains(c, ip));
  }
  overlaps(other: IpRangeList): boolean {
    return this.#cidrs.some((a) => other.#cidrs.some((b) => cidrsOverlap(a, b)));
  }
}

// ---- trusted proxies ----

export interface TrustedProxy {
  /** The configuration entry, for messages. */
  entry: string;
  /** Lower-case name of the one header this proxy sets. */
  header: string;
  ranges: IpRangeList;
}

const TOKEN = /^[!#$%&'*+.^_`|~0-9a-z-]+$/;

function parseEntry(entry: string): TrustedProxy {
  const text = entry.trim();
  const at = text.indexOf('@');
  const name = (at < 0 ? text : text.slice(0, at)).toLowerCase();
  const given = at < 0 ? null : text.slice(at + 1).split(',').map((s) => s.trim());
  if (given?.some((s) => s === '')) throw new Error(`trusted proxy "${entry}": empty range after @`);
  if (name.startsWith('header=')) {
    const header = name.slice('header='.length);
    if (!TOKEN.test(header)) throw new Error(`trusted proxy "${entry}": "${header}" is not a header name`);
    if (!given) throw new Error(`trusted proxy "${entry}": name the proxy's addresses, e.g. header=${header}@10.0.0.0/8`);
    return { entry, header, ranges: new IpRangeList(given) };
  }
  const preset = PRESETS[name];
  if (!preset) {
    if (at >= 0) throw new Error(`trusted proxy "${entry}": unknown preset "${name}" (known: ${TRUSTED_PROXY_PRESET_NAMES.join(', ')}, header=<name>)`);
    // A bare address or CIDR: a proxy that appends to X-Forwarded-For.
    try {
      return { entry, header: XFF, ranges: new IpRangeList([text]) };
    } catch {
      throw new Error(`trusted proxy "${entry}" is not a preset (${TRUSTED_PROXY_PRESET_NAMES.join(', ')}), header=<name>@<cidr>, an address or a CIDR`);
    }
  }
  if (given && preset.fixed) throw new Error(`trusted proxy "${entry}": the ${name} preset has fixed ranges; use xff@… or header=…@… for others`);
  const ranges = given ?? preset.ranges;
  if (!ranges) throw new Error(`trusted proxy "${entry}": name the proxy's addresses, e.g. ${name}@10.0.0.0/8`);
  return { entry, header: preset.header, ranges: new IpRangeList(ranges) };
}

export class TrustedProxies {
  readonly #proxies: TrustedProxy[];
  readonly size: number;

  /** `entries`: the `--trusted-proxy` values (see the module comment for the syntax). */
  constructor(entries: readonly string[] = []) {
    this.#proxies = entries.map(parseEntry);
    this.size = this.#proxies.length;
    for (const [i, a] of this.#proxies.entries()) {
      for (const b of this.#proxies.slice(i + 1)) {
        if (a.header !== b.header && a.ranges.overlaps(b.ranges)) {
          throw new Error(`trusted proxies "${a.entry}" (${a.header}) and "${b.entry}" (${b.header}) overlap: an address must have one forwarding header`);
        }
      }
    }
  }

  /** The trusted proxy at `ip` (already normalised), if any. */
  proxyAt(ip: string): TrustedProxy | undefined {
    const parsed = parseIp(ip);
    return parsed && this.#proxies.find((p) => p.ranges.contains(parsed));
  }

  has(ip: string): boolean {
    return this.proxyAt(ip) !== undefined;
  }
}

// ---- headers ----

export type HeaderBag = Record<string, string | string[] | undefined>;

/** A list-valued header's instances, combined in order as RFC 9110 §5.3 allows. */
function listValue(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? (v.length ? v.join(',') : undefined) : v;
}

const TCHAR = /[!#$%&'*+.^_`|~0-9A-Za-z-]/;

/**
 * Parses `Forwarded` (RFC 7239 §4) into each element's `for=` node, in order: the normalised
 * address, or `undefined` where the element names none, `unknown` or an obfuscated identifier
 * (§6.2–6.3). Returns `undefined` for a header that does not parse: quoted strings are read as
 * quoted strings (a comma inside quotes does not start an element), and a parameter given twice
 * in one element is refused.
 */
export function parseForwardedFor(header: string): Array<string | undefined> | undefined {
  const elements: Array<string | undefined> = [];
  let i = 0;
  const ows = () => {
    while (header[i] === ' ' || header[i] === '\t') i++;
  };
  let params = new Map<string, string>();
  const endElement = () => {
    const node = params.get('for');
    elements.push(node === undefined ? undefined : normaliseIp(node));
    params = new Map();
  };
  ows();
  for (;;) {
    // One forwarded-pair, or an empty one (";;" and ",," are allowed by the grammar).
    if (i < header.length && header[i] !== ';' && header[i] !== ',') {
      const start = i;
      while (i < header.length && TCHAR.test(header[i]!)) i++;
      const name = header.slice(start, i).toLowerCase();
      if (!name || header[i] !== '=') return undefined;
      i++;
      let value = '';
      if (header[i] === '"') {
        i++;
        for (;;) {
          const c = header[i];
          if (c === undefined) return undefined;
          if (c === '"') break;
          if (c === '\\') {
            const next = header[i + 1];
            if (next === undefined) return undefined;
            value += next;
            i += 2;
            continue;
          }
          value += c;
          i++;
        }
        i++;
      } else {
        const vs = i;
        while (i < header.length && TCHAR.test(header[i]!)) i++;
        value = header.slice(vs, i);
        if (!value) return undefined;
      }
      if (params.has(name)) return undefined;
      params.set(name, value);
    }
    ows();
    if (i >= header.length) {
      endElement();
      return elements;
    }
    if (header[i] === ';') i++;
    else if (header[i] === ',') {
      endElement();
      i++;
    } else return undefined;
    ows();
  }
}

/** A single-valued header: exactly one instance holding exactly one address. */
function singleAddress(v: string | string[] | undefined): string | undefined {
  const value = Array.isArray(v) ? (v.length === 1 ? v[0] : undefined) : v;
  // Node joins repeated instances of such a header with ", ": more than one value is ambiguous.
  if (value === undefined || value.includes(',')) return undefined;
  return normaliseIp(value);
}

/**
 * The client IP, or `undefined` when it cannot be determined (then the request is refused).
 * `peer` is the socket's remote address; `headers` as Node parsed them (lower-case names).
 */
export function clientIp(peer: string, headers: HeaderBag, trusted: TrustedProxies): string | undefined {
  let current = normaliseIp(peer);
  /** The list header `current` was read from (none for the peer). */
  let readFrom: string | undefined;
  let xff: string[] | undefined;
  let forwarded: Array<string | undefined> | undefined | null;
  while (current !== undefined) {
    const proxy = trusted.proxyAt(current);
    if (!proxy) return current;
    if (proxy.header === XFF) {
      xff ??= listValue(headers[XFF])?.split(',') ?? [];
      if (xff.length === 0 && readFrom === XFF) return current;
      const hop = xff.pop();
      current = hop === undefined ? undefined : normaliseIp(hop);
      readFrom = XFF;
    } else if (proxy.header === FORWARDED) {
      if (forwarded === undefined) {
        const value = listValue(headers[FORWARDED]);
        forwarded = value === undefined ? [] : (parseForwardedFor(value) ?? null);
      }
      if (forwarded?.length === 0 && readFrom === FORWARDED) return current;
      current = forwarded === null ? undefined : forwarded.pop();
      readFrom = FORWARDED;
    } else {
      // A single-valued header is the proxy's own statement of who connected to it: the walk ends.
      return singleAddress(headers[proxy.header]);
    }
  }
  return undefined;
}
