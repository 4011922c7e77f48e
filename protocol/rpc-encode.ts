/**
 * Encoding the connection descriptor header (SPEC.md §5) — the host's side of protocol/rpc.ts. The
 * enclave only decodes it (`decodeConnectionDescriptor`), so its image does not contain this.
 */
import type { ConnectionDescriptor } from './rpc.ts';

export function encodeConnectionDescriptor(d: ConnectionDescriptor): string {
  return Buffer.from(JSON.stringify(d)).toString('base64url');
}
