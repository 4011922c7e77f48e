/**
 * The routes the enclave takes to shareholders when started with --shareholder-socket-dir (as
 * enclave-init.sh starts it; in production a socat bridge to the parent's vsock-proxy, i.e.
 * through the untrusted host): an HTTP relay on `<dir>/shareholder-<id>.sock` per shareholder,
 * which passes requests on and can play the host in the middle — refuse to route, or replace each
 * release with one sealed by the man in the middle's own key over a share of the test's choosing.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeCoseSign1, parseAttestationPayload } from '../../attestation/index.ts';
import { sealShareEnvelope, type X25519KeyPair } from '../../protocol/index.ts';
import type { Stack } from '../../scripts/stack.ts';

export interface ShareholderRelays {
  /** The --shareholder-socket-dir to start the enclave with. */
  dir: string;
  /** Requests relayed, per shareholder id. */
  relayed: Map<string, number>;
  /** Shareholders whose relay answers 503 (a shareholder the host will not route to). */
  drop: Set<string>;
  /** Shareholders whose releases the relay replaces with ones sealed by `mitm`'s key over this share (encoded). */
  forge: Map<string, Uint8Array>;
  /** Relays to `stack`'s shareholders from now on (requests that came earlier waited for it). */
  serve(stack: Stack): void;
  close(): Promise<void>;
}

export async function startShareholderRelays(ids: readonly string[], mitm: X25519KeyPair, dirPrefix = 'sg-sh-sock-'): Promise<ShareholderRelays> {
  const dir = await mkdtemp(join(tmpdir(), dirPrefix));
  let serve!: (s: Stack) => void;
  const ready = new Promise<Stack>((r) => (serve = r));
  const relays: Omit<ShareholderRelays, 'close'> = { dir, relayed: new Map(), drop: new Set(), forge: new Map(), serve };
  const relay = (id: string): Server =>
    createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', async () => {
        try {
          const s = await ready;
          if (relays.drop.has(id)) {
            res.writeHead(503).end();
            return;
          }
          relays.relayed.set(id, (relays.relayed.get(id) ?? 0) + 1);
          const target = s.shareholders.find((sh) => sh.id === id)!;
          const body = Buffer.concat(chunks).toString('utf8');
          const upstream = await fetch(`${target.url}${req.url}`, { method: req.method, headers: { 'content-type': 'application/json' }, ...(req.method === 'POST' ? { body } : {}) });
          let text = await upstream.text();
          const forged = relays.forge.get(id);
          if (forged && req.url === '/v1/releases' && upstream.status === 200) {
            const doc = parseAttestationPayload(decodeCoseSign1(new Uint8Array(Buffer.from((JSON.parse(body) as { document: string }).document, 'base64'))).payload);
            const reply = JSON.parse(text) as { shares: Array<{ connectionId: string; envelope: string }> };
            for (const share of reply.shares) {
              const env = await sealShareEnvelope(doc.publicKey!, forged, { purpose: 'release', connectionId: share.connectionId, shareholderId: id, nonce: doc.nonce! }, mitm.privateKey);
              share.envelope = Buffer.from(env).toString('base64');
            }
            text = JSON.stringify(reply);
          }
          res.writeHead(upstream.status, { 'content-type': 'application/json' }).end(text);
        } catch {
          res.destroy();
        }
      });
    });
  const servers: Server[] = [];
  for (const id of ids) {
    const server = relay(id);
    await new Promise<void>((r) => server.listen(join(dir, `shareholder-${id}.sock`), r));
    servers.push(server);
  }
  return {
    ...relays,
    async close() {
      for (const s of servers) s.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
