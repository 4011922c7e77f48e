/**
 * The host's side of the enclave RPC (protocol/rpc.ts, SPEC.md §5): an undici keep-alive Pool
 * whose `connect` reaches the enclave over a unix socket or TCP loopback here (vsock in
 * production, via the socat bridge), and one typed call per enclave route, so no other host
 * module spells an RPC path. Bodies are streamed both ways; nothing is buffered on the forward
 * path. The enclave's answers are not trusted: callers check status and shape.
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
export type ForwardOptions = Omit<Dispatcher.RequestOptions, 'path' | 'origin'>;

/** Forwards a client request for `target` (upstream path and query) to the enclave, streaming both ways. */
export function forwardToEnclave(enclave: Dispatcher, target: string, options: ForwardOptions): Promise<Dispatcher.ResponseData> {
  return enclave.request({ ...options, path: ENCLAVE_ROUTES.forward + target });
}
