/**
 * Listen addresses for the enclave RPC: `unix:/path/to.sock`, `tcp:127.0.0.1:7000`, or
 * `vsock:<cid>:<port>` (production; bridged by socat, see infra/README.md).
 */
export type ListenAddress = { kind: 'unix'; path: string } | { kind: 'tcp'; host: string; port: number } | { kind: 'vsock'; cid: number; port: number };

export function parseListenAddress(text: string): ListenAddress {
  const [kind, ...rest] = text.split(':');
  if (kind === 'unix' && rest.length > 0) return { kind, path: rest.join(':') };
  if (kind === 'tcp' && rest.length === 2 && /^\d+$/.test(rest[1]!)) return { kind, host: rest[0]!, port: Number(rest[1]) };
  if (kind === 'vsock' && rest.length === 2 && rest.every((r) => /^\d+$/.test(r))) return { kind, cid: Number(rest[0]), port: Number(rest[1]) };
  throw new Error(`listen address must be unix:<path>, tcp:<host>:<port> or vsock:<cid>:<port>, got ${text}`);
}
