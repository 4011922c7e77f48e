/**
 * The host's side of the enclave RPC: an undici keep-alive Pool whose `connect` reaches the
 * enclave over a unix socket or TCP loopback here (vsock in production, via the socat bridge).
 * Bodies are streamed both ways; nothing is buffered.
 */
import { Pool } from 'undici';

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
