/**
 * HTTP rules every part applies the same way: which hosts count as loopback (where plain http is
 * tolerated in dev, and where the CLI expects a dev stack), and which headers are hop-by-hop
 * (never forwarded in either direction). Pure; no I/O.
 */

/**
 * Whether `hostname` (as `URL.hostname` spells it: IPv6 in brackets) is a loopback host. Only
 * these three spellings: the rule is for dev stacks and mock upstreams, not a general address check
 * (host/alerts.ts classifies addresses for SSRF).
 */
export function isLoopbackHost(hostname: string): boolean {
  return hostname === '127.0.0.1' || hostname === 'localhost' || hostname === '[::1]';
}

/**
 * Hop-by-hop headers (RFC 9110 §7.6.1: Connection and the fields it names, plus the ones the RFC
 * lists — Keep-Alive, Proxy-Connection, TE, Transfer-Encoding, Upgrade — and Trailer), lower-case.
 * A proxy drops them in both directions; each side adds its own credential and policy headers.
 */
export const HOP_BY_HOP_HEADERS: ReadonlySet<string> = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade']);
