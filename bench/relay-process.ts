/**
 * A do-nothing HTTP relay in its own process: reads the request, forwards it with undici to
 * `RELAY_TARGET`, streams the answer back with the enclave's own `relay`. The benchmark chains one
 * or two of them in front of the mock upstream to measure what a process hop alone costs on this
 * machine (SecureGate has two hops, host and enclave; Portkey one). Prints one JSON line
 * `{ "origin": … }` when listening.
 */
import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Pool } from 'undici';
import { relayTo } from '../enclave/forward.ts';

const target = process.env.RELAY_TARGET;
if (!target) throw new Error('RELAY_TARGET must be set');
const pool = new Pool(target, { connections: 256 });
const HOP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'host']);

/** The enclave's own streaming relay (`relayTo`) from a stream, until the response closes. */
function relay(body: NodeJS.ReadableStream, res: ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    res.once('close', () => resolve());
    const to = relayTo(res, body);
    body.on('data', to.data);
    body.on('end', to.end);
    body.on('error', to.error);
  });
}

const server = createServer(async (req, res) => {
  try {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const headers: Record<string, string | string[]> = {};
    for (const [k, v] of Object.entries(req.headers)) if (v !== undefined && !HOP.has(k)) headers[k] = v;
    const up = await pool.request({ path: req.url ?? '/', method: req.method as 'POST', headers, body: chunks.length ? Buffer.concat(chunks) : null });
    const out: Record<string, string | string[]> = {};
    for (const [k, v] of Object.entries(up.headers)) if (v !== undefined && !HOP.has(k)) out[k] = v;
    res.writeHead(up.statusCode, out);
    // The enclave's own streaming relay, so a bare hop costs what that part of a SecureGate hop costs.
    await relay(up.body, res);
  } catch {
    res.destroy();
  }
});
server.listen(0, '127.0.0.1', () => process.stdout.write(`${JSON.stringify({ origin: `http://127.0.0.1:${(server.address() as AddressInfo).port}` })}\n`));
process.on('SIGTERM', () => server.close(() => process.exit(0)));
