/**
 * The final upstream call: check the path against the provider's allow-list, inject the
 * credential per the sealed auth scheme, call the pinned origin over a keep-alive pool, and
 * stream the response back. Every response header and body byte, of every status, passes the
 * key scrubber (`scrub.ts`, invariant 9); the body is asked for and relayed uncompressed so the
 * scrubber sees the bytes the client will. Usage is read on the way (`usage-meter.ts`).
 */
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { createBrotliDecompress, createGunzip, createInflate } from 'node:zlib';
import { Pool } from 'undici';
import { allowListPermits } from '../protocol/allow-list.ts';
import { HOP_BY_HOP_HEADERS, isLoopbackHost } from '../protocol/http-rules.ts';
import { providerSpec, upstreamPathFor, type ProviderSpec } from '../protocol/providers/index.ts';
import type { AuthScheme } from '../protocol/sealed-record.ts';
import { EnclaveError } from './errors.ts';
import { KeyScrubber } from './scrub.ts';
import { UsageMeter, type RelayedUsage } from './usage-meter.ts';

/** Hop-by-hop (RFC 9110 §7.6.1) and credential headers never forwarded in either direction. */
const DROP_REQUEST = new Set([
  ...HOP_BY_HOP_HEADERS, 'host',
  'authorization', 'x-api-key', 'api-key', 'x-goog-api-key', 'proxy-authorization', 'cookie',
  // The scrubber must see the bytes the client gets: bodies are asked for uncompressed.
  'accept-encoding',
]);
const DROP_RESPONSE = new Set([...HOP_BY_HOP_HEADERS, 'set-cookie']);
const MAX_ERROR_BODY = 64 * 1024;
/** Responses up to this size with a Content-Length are read whole and written back at once. */
const SMALL_BODY = 256 * 1024;

export interface ForwardTarget {
  provider: ProviderSpec;
  origin: string;
  /** Upstream path and query. */
  path: string;
}

/**
 * Maps the client request onto the provider; refuses paths outside the allow-list before any key
 * is fetched. Provider connections: `/v1/<rest>` (or a provider-native path). Any-API
 * connections (`/any/<path>`): the method and path must match the allow-list sealed into the record.
 */
export function resolveTarget(
  providerId: string,
  origin: string,
  method: string,
  clientPathWithQuery: string,
  allow: string | undefined,
  allowLoopbackHttp: boolean,
): ForwardTarget {
  const provider = providerSpec(providerId);
  if (!provider) throw new EnclaveError('provider_unknown', `provider ${providerId} is not supported`);
  const url = new URL(origin);
  const loopback = isLoopbackHost(url.hostname);
  if (url.protocol !== 'https:' && !(allowLoopbackHttp && loopback && url.protocol === 'http:')) {
    throw new EnclaveError('origin_not_allowed', 'upstream origin must be https');
  }
  if (provider.id === 'any') {
    const path = clientPathWithQuery.split('?', 1)[0]!;
    if (!path.startsWith('/any/') || allow === undefined || !allowListPermits(allow, method, path.slice(4))) {
      throw new EnclaveError('path_not_allowed', `${method} ${path} is not in this connection's allow-list`);
    }
    return { provider, origin, path: clientPathWithQuery.slice(4) };
  }
  const upstream = upstreamPathFor(provider, clientPathWithQuery);
  if (upstream === undefined) {
    throw new EnclaveError('path_not_allowed', `${clientPathWithQuery.split('?')[0]} is not an allowed inference endpoint for ${provider.name}`);
  }
  return { provider, origin, path: upstream };
}

function credentialHeaders(scheme: AuthScheme, key: string): Record<string, string> {
  if (scheme === 'bearer') return { authorization: `Bearer ${key}` };
  if (scheme === 'x-api-key') return { 'x-api-key': key };
  if (scheme === 'api-key') return { 'api-key': key };
  if (scheme === 'basic') return { authorization: `Basic ${Buffer.from(key).toString('base64')}` };
  if (scheme.startsWith('header:')) return { [scheme.slice(7).toLowerCase()]: key };
  return {};
}

/** The query parameter for `query:<name>` schemes; replaces any value the client sent. */
function withQueryCredential(path: string, scheme: AuthScheme, key: string): string {
  if (!scheme.startsWith('query:')) return path;
  const name = scheme.slice(6);
  const url = new URL(path, 'http://x');
  url.searchParams.set(name, key);
  return url.pathname + url.search;
}

export function forwardedRequestHeaders(headers: IncomingHttpHeaders): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined || DROP_REQUEST.has(name) || name.startsWith('x-sg-')) continue;
    out[name] = value;
  }
  return out;
}

/** Replaces every occurrence of the key (and of a prefix long enough to identify it) with a marker. */
export function scrubKey(text: string, key: string): string {
  if (key.length === 0) return text;
  let out = text.split(key).join('[redacted]');
  // Providers echo keys partially ("sk-abc…xyz"); drop any 8+ char run that is a substring of the key.
  const tokens = out.match(/[A-Za-z0-9_\-]{8,}/g) ?? [];
  for (const t of tokens) if (key.includes(t)) out = out.split(t).join('[redacted]');
  return out;
}

/**
 * Egress: inside a Nitro Enclave there is no network, only vsock. Each allowed origin is reached
 * through a local stream (a unix socket bridged by socat to vsock, then AWS vsock-proxy on the
 * parent to the one host:port it allows). TLS is terminated here, in the enclave, against the CA
 * bundle in the image and with the real hostname as SNI and for verification — so the host only
 * ever relays ciphertext.
 */
export type EgressRoute = { kind: 'unix'; path: string } | { kind: 'tcp'; host: string; port: number };

export interface ForwarderOptions {
  headersTimeout?: number;
  bodyTimeout?: number;
  connectTimeout?: number;
  /** origin → local stream that reaches it; origins not listed are dialled directly (development). */
  egress?: Map<string, EgressRoute>;
  /** Only these origins may be dialled when `egress` is given (nothing else has a route). */
  egressOnly?: boolean;
  /** PEM CA bundle for upstream TLS (default: Node's bundled Mozilla roots). */
  ca?: string;
}


/**
 * Streams an upstream body to the response until either ends, chunk by chunk through the key
 * scrubber when one is given (which holds back only what could begin the key), the usage meter
 * reading each chunk after it is written: a data handler with pause/resume for backpressure, not a
 * Transform and two pipes, each of which costs every chunk another turn before the first byte goes
 * out. A body that breaks off: what the scrubber still holds goes out (masked where it could begin
 * the key), then the response is destroyed, so the host sees the stream end abnormally, not a
 * clean end. A response that closes early (the client went away) cancels the upstream call
 * through the abort signal `forward` set.
 */
export function relay(body: NodeJS.ReadableStream, res: ServerResponse, scrubber?: KeyScrubber, meter?: UsageMeter): Promise<void> {
  return new Promise((resolve) => {
    res.once('close', () => resolve());
    body.on('data', (chunk: Buffer) => {
      const out = scrubber ? scrubber.push(chunk) : chunk;
      if (out.length > 0 && !res.write(out)) {
        body.pause();
        res.once('drain', () => body.resume());
      }
      meter?.push(chunk);
    });
    body.on('end', () => res.end(scrubber?.flush()));
    body.on('error', () => {
      const rest = scrubber?.flush();
      if (rest?.length) res.write(rest);
      setImmediate(() => res.destroy());
    });
  });
}

/** Per-request extras: a body already read by the policy check, and where the usage read goes. */
export interface ForwardOptions {
  /** The request body, when the enclave had to read it (model check); otherwise `req` streams. */
  body?: Buffer;
  /** Called once the response ended or broke off, with the usage read from it (undefined: none). */
  onUsage?: (usage: RelayedUsage | undefined, status: number) => void;
}

function decoderFor(encoding: string): NodeJS.ReadWriteStream | undefined {
  if (encoding === 'gzip' || encoding === 'x-gzip') return createGunzip();
  if (encoding === 'deflate') return createInflate();
  if (encoding === 'br') return createBrotliDecompress();
  return undefined;
}

/**
 * A connector over a local stream (unix socket or TCP to a socat/vsock bridge), with TLS done
 * here when the URL (an upstream origin or a shareholder) is https: SNI and verification use the URL's real hostname.
 */
export function routedConnect(route: EgressRoute, url: URL, timeoutMs: number, ca: string | undefined, what: 'egress' | 'shareholder') {
  return (_opts: unknown, callback: (err: Error | null, socket: Socket | TLSSocket | null) => void) => {
    const raw = route.kind === 'unix' ? netConnect(route.path) : netConnect(route.port, route.host);
    const fail = (e: Error) => callback(e, null);
    raw.setTimeout(timeoutMs, () => raw.destroy(new Error(`${what} connect timeout`)));
    if (url.protocol !== 'https:') {
      raw.once('connect', () => {
        raw.setTimeout(0);
        callback(null, raw);
      });
      raw.once('error', fail);
      return raw;
    }
    const socket = tlsConnect({ socket: raw, servername: url.hostname, ALPNProtocols: ['http/1.1'], ...(ca ? { ca } : {}) });
    socket.once('secureConnect', () => {
      raw.setTimeout(0);
      callback(null, socket);
    });
    socket.once('error', fail);
    return socket;
  };
}

export class Forwarder {
  readonly #pools = new Map<string, Pool>();
  readonly #timeouts: { headersTimeout: number; bodyTimeout: number };
  readonly #options: ForwarderOptions;

  constructor(options: ForwarderOptions = {}) {
    this.#options = options;
    this.#timeouts = { headersTimeout: options.headersTimeout ?? 120_000, bodyTimeout: options.bodyTimeout ?? 300_000 };
  }

  #pool(origin: string): Pool {
    let pool = this.#pools.get(origin);
    if (!pool) {
      const route = this.#options.egress?.get(origin);
      if (!route && this.#options.egressOnly) throw new EnclaveError('origin_not_allowed', `no egress route to ${origin}`);
      const url = new URL(origin);
      const timeout = this.#options.connectTimeout ?? 10_000;
      const connect = route
        ? routedConnect(route, url, timeout, this.#options.ca, 'egress')
        : { timeout, ...(this.#options.ca ? { ca: this.#options.ca } : {}) };
      pool = new Pool(origin, { connections: 64, keepAliveTimeout: 30_000, pipelining: 1, connect: connect as never });
      this.#pools.set(origin, pool);
    }
    return pool;
  }

  async forward(
    target: ForwardTarget,
    scheme: AuthScheme,
    key: string,
    req: IncomingMessage,
    res: ServerResponse,
    onHeaders: (seconds: number) => void = () => {},
    options: ForwardOptions = {},
  ): Promise<number> {
    const started = performance.now();
    const path = withQueryCredential(target.path, scheme, key);
    const abort = new AbortController();
    const onClose = () => {
      if (!res.writableFinished) abort.abort();
    };
    res.on('close', onClose);
    const hasBody = req.method !== 'GET' && req.method !== 'HEAD';
    let upstream;
    try {
      upstream = await this.#pool(target.origin).request({
        path,
        method: req.method as 'POST',
        headers: {
          ...forwardedRequestHeaders(req.headers),
          ...(options.body ? { 'content-length': String(options.body.length) } : {}),
          'accept-encoding': 'identity',
          ...credentialHeaders(scheme, key),
        },
        body: hasBody ? (options.body ?? req) : null,
        signal: abort.signal,
        ...this.#timeouts,
      });
    } catch (cause) {
      if (cause instanceof EnclaveError) throw cause;
      const message = cause instanceof Error ? scrubKey(cause.message, key) : 'request failed';
      throw new EnclaveError('upstream_unreachable', `upstream request failed: ${message}`);
    }
    onHeaders((performance.now() - started) / 1000);
    const scrubber = new KeyScrubber(key);
    const status = upstream.statusCode;
    const headers: Record<string, string | string[]> = {};
    for (const [name, value] of Object.entries(upstream.headers)) {
      if (value === undefined || DROP_RESPONSE.has(name)) continue;
      headers[name] = Array.isArray(value) ? value.map((v) => scrubber.scrubString(v)) : scrubber.scrubString(value);
    }
    // Usage is read only where the owner's policy counts it (every event of every stream parsed otherwise).
    const onUsage = options.onUsage;
    const meter = onUsage ? new UsageMeter(String(upstream.headers['content-type'] ?? '')) : undefined;
    let reported = false;
    const report = () => {
      if (reported || !onUsage) return;
      reported = true;
      onUsage(status >= 400 ? { inputTokens: 0, outputTokens: 0 } : meter!.end(), status);
    };
    // An upstream that compresses anyway is decoded here, so nothing passes unscrubbed.
    const encoding = String(upstream.headers['content-encoding'] ?? 'identity').trim().toLowerCase();
    let body: NodeJS.ReadableStream = upstream.body;
    if (encoding !== 'identity' && encoding !== '') {
      const decoder = decoderFor(encoding);
      if (!decoder) {
        await upstream.body.dump().catch(() => undefined);
        throw new EnclaveError('upstream_unreachable', `upstream answered with content-encoding ${encoding}, which the enclave cannot inspect`);
      }
      upstream.body.on('error', (e) => (decoder as unknown as { destroy(e: Error): void }).destroy(e));
      body = upstream.body.pipe(decoder);
      delete headers['content-encoding'];
      delete headers['content-length'];
    }
    if (status >= 400) {
      // Error bodies are small; read them whole (bounded) to scrub any echo of the key, partial ones too.
      const chunks: Buffer[] = [];
      let size = 0;
      try {
        for await (const chunk of body) {
          size += (chunk as Buffer).length;
          if (size > MAX_ERROR_BODY) break;
          chunks.push(chunk as Buffer);
        }
      } catch {
        // A broken error body: send what arrived.
      }
      const text = scrubKey(scrubber.scrubBuffer(Buffer.concat(chunks)).toString('utf8'), key);
      delete headers['content-length'];
      delete headers['content-encoding'];
      res.writeHead(status, headers);
      res.end(text);
      report();
      return status;
    }
    // A small response of known length (most JSON answers) goes back in one write.
    const length = Number(headers['content-length']);
    if (body === upstream.body && Number.isInteger(length) && length <= SMALL_BODY && !String(upstream.headers['content-type'] ?? '').includes('text/event-stream')) {
      let data: Buffer;
      try {
        data = Buffer.from(await upstream.body.arrayBuffer());
      } catch {
        res.destroy();
        report();
        return status;
      }
      meter?.push(data);
      // Same-length masking: the Content-Length stays true.
      res.writeHead(status, headers);
      res.end(scrubber.scrubBuffer(data));
      report();
      return status;
    }
    res.writeHead(status, headers);
    try {
      await relay(body, res, scrubber, meter);
    } finally {
      report();
    }
    return status;
  }

  async close(): Promise<void> {
    await Promise.all([...this.#pools.values()].map((p) => p.close()));
  }
}
