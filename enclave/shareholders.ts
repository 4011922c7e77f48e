/**
 * The shareholders this enclave asks for shares, as configured in its image: who they are
 * (id, URL, X25519 identity key) and how the enclave reaches them (production: a unix socket per
 * shareholder, bridged by enclave-init.sh to the parent's vsock-proxy). Checked at start.
 */
import type { EgressRoute } from './forward.ts';

export interface ShareholderEndpoint {
  id: string;
  url: string;
  /**
   * The shareholder's X25519 identity key, hex — from the enclave's own measured configuration
   * (the image carries it), never from the reply. Releases must authenticate as this key (HPKE
   * auth mode, SPEC.md §3) — except for a version 0x04 record, whose own shareholder set (bound in
   * its AAD) names the key; the resolver substitutes it and keeps only the route from here.
   */
  publicKey: string;
  /**
   * Production: the parent's vsock port whose vsock-proxy reaches this shareholder; enclave-init.sh
   * bridges `<socket dir>/shareholder-<id>.sock` to it (see shareholderBridges).
   */
  vsockPort?: number;
}

const SHAREHOLDER_ID = /^[a-z0-9][a-z0-9._-]{0,63}$/;

/** Checks the enclave's shareholder configuration: `[{ id, url, publicKey }]`, ids unique. */
export function parseShareholderEndpoints(value: unknown): ShareholderEndpoint[] {
  const bad = (m: string) => new Error(`shareholder configuration: ${m}`);
  if (!Array.isArray(value) || value.length === 0) throw bad('must be a non-empty array of { id, url, publicKey }');
  const seen = new Set<string>();
  return value.map((v, i) => {
    const { id, url, publicKey } = (v ?? {}) as Record<string, unknown>;
    if (typeof id !== 'string' || !SHAREHOLDER_ID.test(id)) throw bad(`[${i}].id is not a shareholder id`);
    if (seen.has(id)) throw bad(`shareholder ${id} is listed twice`);
    seen.add(id);
    if (typeof url !== 'string' || !/^https?:\/\//.test(url)) throw bad(`[${i}].url must be an http(s) URL`);
    if (typeof publicKey !== 'string' || !/^[0-9a-f]{64}$/.test(publicKey)) throw bad(`[${i}].publicKey must be the shareholder's X25519 identity key (64 hex digits)`);
    const { vsockPort } = v as Record<string, unknown>;
    if (vsockPort !== undefined && (typeof vsockPort !== 'number' || !Number.isInteger(vsockPort) || vsockPort < 1 || vsockPort > 0xffffffff)) {
      throw bad(`[${i}].vsockPort must be a vsock port number`);
    }
    return { id, url, publicKey, ...(typeof vsockPort === 'number' ? { vsockPort } : {}) };
  });
}

/** `<id> <vsockPort>` per shareholder, for enclave-init.sh's socat bridges; every shareholder needs a port. */
export function shareholderBridges(endpoints: readonly ShareholderEndpoint[]): string {
  return endpoints
    .map((sh) => {
      if (sh.vsockPort === undefined) throw new Error(`shareholder configuration: ${sh.id} has no vsockPort, so the enclave has no route to it`);
      return `${sh.id} ${sh.vsockPort}\n`;
    })
    .join('');
}

/** The local stream that reaches a shareholder from inside the enclave (a socat bridge to vsock). */
export function shareholderSocketRoute(dir: string, id: string): EgressRoute {
  return { kind: 'unix', path: `${dir}/shareholder-${id}.sock` };
}
