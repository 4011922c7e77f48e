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
import { Pool, type Dispatcher } from 'undici';
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
  for (const name in headers) {
    const value = headers[name];
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
 * Writes a body to the response chunk by chunk through the key scrubber when one is given (which
 * holds back only what could begin the key), the usage meter reading each chunk after it is
 * written; `source` is paused while the response's socket is full. A body that breaks off
 * (`error`): what the scrubber still holds goes out (masked where it could begin the key), then
 * the response is destroyed, so the host sees the stream end abnormally, not a clean end. The
 * benchmark's bare relay (bench/relay-process.ts) uses it too, so a bare hop costs what this part
 * of an enclave hop costs.
 */
export function relayTo(res: ServerResponse, source: { pause(): unknown; resume(): unknown }, scrubber?: KeyScrubber, meter?: UsageMeter) {
  return {
    data(chunk: Buffer): void {
      const out = scrubber ? scrubber.push(chunk) : chunk;
      if (out.length > 0 && !res.write(out)) {
        source.pause();
        res.once('drain', () => source.resume());
      }
      meter?.push(chunk);
    },
    end: () => void res.end(scrubber?.flush()),
    error(): void {
      const rest = scrubber?.flush();
      if (rest?.length) res.write(rest);
      setImmediate(() => res.destroy());
    },
  };
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

  /**
   * One upstream call, its answer taken as undici's dispatcher hands it over (the handler
   * interface, undici `types/dispatcher.d.ts`) — no body stream, promise chain or async iterator
   * per answer, which cost more CPU than the relaying itself. Headers are scrubbed on arrival;
   * then an error status is read whole (bounded; a broken one as far as it came) and scrubbed
   * for echoes of parts of the key too; a small answer of known length (most JSON) is read whole
   * and written back in one write; anything else streams through `relayTo`, the upstream paused
   * while the host's socket is full. An upstream that compresses anyway is decoded here first,
   * so nothing passes unscrubbed. A response that closes early (the host went away) aborts the
   * upstream call. Settles once the answer is relayed (a stream: once the response closed).
   */
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
    const pool = this.#pool(target.origin);
    const headers = forwardedRequestHeaders(req.headers);
    if (options.body) headers['content-length'] = String(options.body.length);
    headers['accept-encoding'] = 'identity';
    Object.assign(headers, credentialHeaders(scheme, key));
    const { promise, resolve, reject } = Promise.withResolvers<number>();
    const onUsage = options.onUsage;
    const scrubber = new KeyScrubber(key);
    const answer: Record<string, string | string[]> = {};
    const chunks: Buffer[] = [];
    let state: 'waiting' | 'error' | 'whole' | 'stream' | 'done' = 'waiting';
    let status = 0;
    let size = 0;
    let controller: Dispatcher.DispatchController | undefined;
    let aborted: Error | undefined;
    let meter: UsageMeter | undefined;
    let decoder: (NodeJS.ReadWriteStream & { destroy(e?: Error): void }) | undefined;
    let stream: ReturnType<typeof relayTo> | undefined;
    const settle = () => {
      if (state === 'done') return;
      state = 'done';
      onUsage?.(status >= 400 ? { inputTokens: 0, outputTokens: 0 } : meter!.end(), status);
      resolve(status);
    };
    const respondWhole = () => {
      const data = Buffer.concat(chunks);
      if (state === 'error') {
        delete answer['content-length'];
        delete answer['content-encoding'];
      } else meter?.push(data);
      res.writeHead(status, answer);
      // Same-length masking keeps the Content-Length true; an error body is scrubbed of partial echoes too.
      res.end(state === 'error' ? scrubKey(scrubber.scrubBuffer(data).toString('utf8'), key) : scrubber.scrubBuffer(data));
      settle();
    };
    const take = (chunk: Buffer) => {
      if (state === 'stream') return stream!.data(chunk);
      if (state !== 'error' && state !== 'whole') return;
      size += chunk.length;
      if (state === 'whole' || size <= MAX_ERROR_BODY) return void chunks.push(chunk);
      respondWhole();
      controller?.abort(new Error('error body longer than the enclave reads'));
    };
    const end = () => (state === 'stream' ? stream!.end() : state === 'error' || state === 'whole' ? respondWhole() : undefined);
    const broken = () => {
      if (state === 'stream') stream!.error();
      else if (state === 'error') respondWhole();
      else if (state === 'whole') {
        res.destroy();
        settle();
      }
    };
    res.on('close', () => {
      if (!res.writableFinished) controller?.abort((aborted ??= new DOMException('This operation was aborted', 'AbortError')));
      if (state === 'stream') settle();
    });
    const hasBody = req.method !== 'GET' && req.method !== 'HEAD';
    pool.dispatch({ path: withQueryCredential(target.path, scheme, key), method: req.method as 'POST', headers, body: hasBody ? (options.body ?? req) : null, ...this.#timeouts }, {
      onRequestStart(c) {
        controller = c;
        if (aborted) c.abort(aborted);
      },
      onResponseStart(c, code, upstream) {
        if (code < 200 || state !== 'waiting') return;
        onHeaders((performance.now() - started) / 1000);
        status = code;
        for (const name in upstream) {
          const value = upstream[name];
          if (value === undefined || DROP_RESPONSE.has(name)) continue;
          answer[name] = Array.isArray(value) ? value.map((v) => scrubber.scrubString(v)) : scrubber.scrubString(value);
        }
        const type = String(upstream['content-type'] ?? '');
        // Usage is read only where the owner's policy counts it (every event of every stream parsed otherwise).
        if (onUsage) meter = new UsageMeter(type);
        const encoding = String(upstream['content-encoding'] ?? 'identity').trim().toLowerCase();
        if (encoding !== 'identity' && encoding !== '') {
          decoder = decoderFor(encoding) as typeof decoder;
          if (!decoder) {
            state = 'done';
            reject(new EnclaveError('upstream_unreachable', `upstream answered with content-encoding ${encoding}, which the enclave cannot inspect`));
            return c.abort(new Error('content-encoding the enclave cannot inspect'));
          }
          decoder.on('data', take).on('end', end).on('error', broken);
          delete answer['content-encoding'];
          delete answer['content-length'];
        }
        const length = Number(answer['content-length']);
        if (status >= 400) state = 'error';
        else if (!decoder && Number.isInteger(length) && length <= SMALL_BODY && !type.includes('text/event-stream')) state = 'whole';
        else {
          state = 'stream';
          stream = relayTo(res, decoder ?? c, scrubber, meter);
          res.writeHead(status, answer);
        }
      },
      onResponseData(c, chunk) {
        if (!decoder) return take(chunk);
        if (!decoder.write(chunk)) {
          c.pause();
          decoder.once('drain', () => c.resume());
        }
      },
      onResponseEnd: () => (decoder ? decoder.end() : end()),
      onResponseError(_c, error) {
        if (state !== 'waiting') return decoder ? decoder.destroy(error) : broken();
        state = 'done';
        reject(new EnclaveError('upstream_unreachable', `upstream request failed: ${scrubKey(error.message, key)}`));
      },
    });
    return promise;
  }

  async close(): Promise<void> {
    await Promise.all([...this.#pools.values()].map((p) => p.close()));
  }
}
