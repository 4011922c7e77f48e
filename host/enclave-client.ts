/**
 * The host's side of the enclave RPC (protocol/rpc.ts, SPEC.md §5): an undici keep-alive Pool
 * whose `connect` reaches the enclave over a unix socket or TCP loopback here (vsock in
 * production, via the socat bridge), and one typed call per enclave route, so no other host
 * module spells an RPC path. Bodies are streamed both ways; on the forward path an answer is held
 * whole only when its caller asks for that. The enclave's answers are not trusted: callers check
 * status and shape.
 */
import { Pool, type Dispatcher } from 'undici';
import { RPC_EVICT_PATH, RPC_FORWARD_PREFIX } from '../protocol/index.ts';

export type EnclaveAddress = { kind: 'unix'; path: string } | { kind: 'tcp'; host: string; port: number };

export function enclavePool(address: EnclaveAddress, connections = 128): Pool {
  if (address.kind === 'unix') {
    return new Pool('http://enclave.local', { connections, keepAliveTimeout: 60_000, connect: { socketPath: address.path } });
  }
  return new Pool(`http://${address.host}:${address.port}`, { connections, keepAliveTimeout: 60_000 });
}

export function parseEnclaveAddress(text: string): EnclaveAddress {
  if (text.startsWith('unix:')) return { kind: 'unix', path: text.slice(5) };
  const m = /^tcp:([^:]+):(\d+)$/.exec(text);
  if (m) return { kind: 'tcp', host: m[1]!, port: Number(m[2]) };
  throw new Error(`enclave address must be unix:<path> or tcp:<host>:<port>, got ${text}`);
}

/**
 * The enclave's routes (enclave/server.ts answers them). The forward prefix is protocol/rpc.ts's;
 * the others are spelt here until protocol/rpc.ts names them for both sides.
 */
export const ENCLAVE_ROUTES = {
  /** The enclave's phase; 200 only while serving. */
  health: '/healthz',
  /** Prometheus text of the enclave's own metrics. */
  metrics: '/metrics',
  /** Bad shares detected since a sequence number. */
  anomalies: '/anomalies',
  /** A fresh attestation document over an optional hex nonce. */
  attestation: '/attestation',
  /** Forwarded client requests: prefix + upstream path and query. */
  forward: RPC_FORWARD_PREFIX,
  /** Drop a connection's cached data key (rotation). */
  evict: RPC_EVICT_PATH,
} as const;

/** The enclave could not be reached (transport failure); `message` is the transport's detail, for the log only. */
export class EnclaveUnreachableError extends Error {
  constructor(cause: unknown) {
    super((cause as Error)?.message ?? String(cause), { cause });
    this.name = 'EnclaveUnreachableError';
  }
}

/** GET /healthz within `timeoutMs`: the enclave's status code and phase. */
export async function enclaveHealth(enclave: Dispatcher, timeoutMs: number): Promise<{ statusCode: number; phase: string | undefined }> {
  const res = await enclave.request({ path: ENCLAVE_ROUTES.health, method: 'GET', headersTimeout: timeoutMs, bodyTimeout: timeoutMs });
  const body = (await res.body.json()) as { phase?: string };
  return { statusCode: res.statusCode, phase: body.phase };
}

/** GET /metrics within `timeoutMs`: the enclave's Prometheus text, or '' when it answers other than 200. */
export async function enclaveMetricsText(enclave: Dispatcher, timeoutMs: number): Promise<string> {
  const res = await enclave.request({ path: ENCLAVE_ROUTES.metrics, method: 'GET', headersTimeout: timeoutMs, bodyTimeout: timeoutMs });
  return res.statusCode === 200 ? await res.body.text() : (await res.body.dump(), '');
}

/** A bad share the enclave detected while reconstructing a connection's key. */
export interface EnclaveAnomaly {
  seq: number;
  at: number;
  shareholder: string;
  connectionId: string;
}

/** GET /anomalies?after=: the bad shares detected after sequence number `after`. */
export async function enclaveAnomalies(enclave: Dispatcher, after: number, headersTimeoutMs: number): Promise<EnclaveAnomaly[]> {
  const res = await enclave.request({ path: `${ENCLAVE_ROUTES.anomalies}?after=${after}`, method: 'GET', headersTimeout: headersTimeoutMs });
  const body = (await res.body.json()) as { anomalies?: EnclaveAnomaly[] };
  return body.anomalies ?? [];
}

/** What GET /attestation answered (unchecked: the caller verifies the document). */
export interface EnclaveAttestation {
  statusCode: number;
  document: string | undefined;
  nsm: string | undefined;
}

/**
 * GET /attestation over `nonceHex` (none when empty). A transport failure rejects with
 * EnclaveUnreachableError; an answer that is not JSON rejects with the parse error.
 */
export async function enclaveAttestation(enclave: Dispatcher, nonceHex: string): Promise<EnclaveAttestation> {
  let res: Dispatcher.ResponseData;
  try {
    res = await enclave.request({ path: `${ENCLAVE_ROUTES.attestation}${nonceHex ? `?nonce=${nonceHex}` : ''}`, method: 'GET' });
  } catch (e) {
    throw new EnclaveUnreachableError(e);
  }
  const body = (await res.body.json()) as { document?: string; nsm?: string };
  return { statusCode: res.statusCode, document: body.document, nsm: body.nsm };
}

/**
 * POST /evict: the enclave drops `connectionId`'s data key now (it would otherwise keep it until
 * its TTL or lease ends). True when the enclave confirmed; false when it answered otherwise or
 * could not be reached in `timeoutMs` — the key then leaves at its TTL, as before.
 */
export async function enclaveEvict(enclave: Dispatcher, connectionId: string, timeoutMs: number): Promise<boolean> {
  try {
    const res = await enclave.request({
      path: ENCLAVE_ROUTES.evict,
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ connectionId }),
      headersTimeout: timeoutMs,
      bodyTimeout: timeoutMs,
    });
    const body = (await res.body.json().catch(() => ({}))) as { evicted?: unknown };
    return res.statusCode === 200 && body.evicted === connectionId;
  } catch {
    return false;
  }
}

/** How a client request is forwarded: everything but the path, which `forwardToEnclave` builds. */
export type ForwardOptions = Omit<Dispatcher.DispatchOptions, 'path' | 'origin'>;

/** Where a streamed answer's body goes, chunk by chunk, as undici hands it over. */
export interface AnswerSink {
  data(chunk: Buffer): void;
  end(): void;
  /** The answer broke off (the enclave died, a timeout, or `abort`). */
  error(cause: Error): void;
}

/** What `discard` reads of a body before it aborts the call instead (undici's `dump()` limit). */
const DISCARD_LIMIT = 128 * 1024;

/**
 * One forwarded request, its answer taken as undici's dispatcher hands it over (the handler
 * interface, undici `types/dispatcher.d.ts`): no body stream, abort signal or promise chain per
 * answer, which cost the host more CPU than relaying the bytes. `answer` settles with the status
 * and headers; the body is then taken once, in one of three ways: `whole()`, `stream(sink)`
 * (paused through the dispatch controller while the sink's reader is full), or `discard()`.
 * Chunks that arrive before the caller chose are held for it.
 */
export class EnclaveCall implements Dispatcher.DispatchHandler {
  readonly answer: Promise<EnclaveCall>;
  statusCode = 0;
  headers: Record<string, string | string[] | undefined> = {};
  /** True once `abort` was called (the caller's client went away). */
  aborted = false;
  readonly #requestBody: unknown;
  #answered!: (call: EnclaveCall) => void;
  #failed!: (cause: Error) => void;
  #controller: Dispatcher.DispatchController | undefined;
  #reason: Error | undefined;
  #take: 'held' | 'whole' | 'stream' | 'discard' = 'held';
  #state: 'waiting' | 'body' | 'ended' | 'broken' = 'waiting';
  #chunks: Buffer[] = [];
  #size = 0;
  #error: Error | undefined;
  #sink: AnswerSink | undefined;
  #whole: { resolve(data: Buffer): void; reject(cause: Error): void } | undefined;
  #discarded: (() => void) | undefined;

  constructor(requestBody: unknown) {
    this.#requestBody = requestBody;
    this.answer = new Promise((resolve, reject) => {
      this.#answered = resolve;
      this.#failed = reject;
    });
  }

  /** Cancels the call (and so the upstream call), now or as soon as it starts; the same reason an aborted AbortSignal gives. */
  abort(): void {
    if (this.aborted || this.#state === 'ended' || this.#state === 'broken') return;
    this.aborted = true;
    this.#reason = new DOMException('This operation was aborted', 'AbortError');
    this.#controller?.abort(this.#reason);
  }

  /** The whole body; rejects when it breaks off. */
  whole(): Promise<Buffer> {
    this.#take = 'whole';
    if (this.#state === 'ended') return Promise.resolve(this.#concat());
    if (this.#state === 'broken') return Promise.reject(this.#error!);
    return new Promise((resolve, reject) => (this.#whole = { resolve, reject }));
  }

  /** The body chunk by chunk into `sink`, from what already arrived on. */
  stream(sink: AnswerSink): void {
    this.#take = 'stream';
    this.#sink = sink;
    for (const chunk of this.#chunks) sink.data(chunk);
    this.#chunks = [];
    if (this.#state === 'ended') sink.end();
    else if (this.#state === 'broken') sink.error(this.#error!);
  }

  /** Stops reading from the enclave until `resume` (a streamed body's reader is full). */
  pause(): void {
    this.#controller?.pause();
  }

  resume(): void {
    this.#controller?.resume();
  }

  /** Reads the rest of the body and drops it — up to 128 KiB, then the call is aborted. Never rejects. */
  discard(): Promise<void> {
    this.#take = 'discard';
    this.#chunks = [];
    if (this.#state !== 'body') return Promise.resolve();
    if (this.#size > DISCARD_LIMIT) return (this.abort(), Promise.resolve());
    return new Promise((resolve) => (this.#discarded = resolve));
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.#controller = controller;
    if (this.#reason) controller.abort(this.#reason);
  }

  onResponseStart(_controller: Dispatcher.DispatchController, statusCode: number, headers: Record<string, string | string[] | undefined>): void {
    if (statusCode < 200 || this.#state !== 'waiting') return;
    this.statusCode = statusCode;
    this.headers = headers;
    this.#state = 'body';
    this.#answered(this);
  }

  onResponseData(_controller: Dispatcher.DispatchController, chunk: Buffer): void {
    this.#size += chunk.length;
    if (this.#take === 'stream') this.#sink!.data(chunk);
    else if (this.#take === 'discard') {
      if (this.#size > DISCARD_LIMIT) this.abort();
    } else this.#chunks.push(chunk);
  }

  onResponseEnd(): void {
    this.#state = 'ended';
    if (this.#take === 'stream') this.#sink!.end();
    else if (this.#take === 'whole') this.#whole?.resolve(this.#concat());
    else if (this.#take === 'discard') this.#discarded?.();
  }

  onResponseError(_controller: Dispatcher.DispatchController | undefined, error: Error): void {
    const answered = this.#state !== 'waiting';
    this.#state = 'broken';
    this.#error = error;
    // As undici's request() does: a streamed request body stops with the call.
    const body = this.#requestBody as { on?: (e: string, f: () => void) => void; destroy?: (e: Error) => void } | null;
    if (typeof body?.on === 'function' && typeof body.destroy === 'function') {
      body.on('error', () => undefined);
      body.destroy(error);
    }
    if (!answered) return this.#failed(error);
    if (this.#take === 'stream') this.#sink!.error(error);
    else if (this.#take === 'whole') this.#whole?.reject(error);
    else if (this.#take === 'discard') this.#discarded?.();
  }

  #concat(): Buffer {
    const data = this.#chunks.length === 1 ? this.#chunks[0]! : Buffer.concat(this.#chunks);
    this.#chunks = [];
    return data;
  }
}

/** Forwards a client request for `target` (upstream path and query) to the enclave, streaming both ways. */
export function forwardToEnclave(enclave: Dispatcher, target: string, options: ForwardOptions): EnclaveCall {
  const call = new EnclaveCall(options.body);
  enclave.dispatch({ ...options, path: ENCLAVE_ROUTES.forward + target }, call);
  return call;
}
