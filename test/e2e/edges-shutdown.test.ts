/**
 * Graceful SIGTERM of the real host process (`node host/main.ts`, started as scripts/stack.ts
 * starts it): it stops accepting at once, lets an in-flight request finish within the grace
 * period, and exits within a bounded time even when the enclave never answers. The enclave is a
 * stand-in on a unix socket whose /attestation answers only when the test says so (or never).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { eventually } from './helpers.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

let dir: string;
let enclave: Server;
let held: Array<{ req: IncomingMessage; res: ServerResponse }>;
let host: ChildProcess | undefined;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sg-shutdown-'));
  held = [];
  enclave = createServer((req, res) => {
    if (req.url?.startsWith('/attestation')) return void held.push({ req, res });
    if (req.url?.startsWith('/anomalies')) return void res.writeHead(200, { 'content-type': 'application/json' }).end('{"anomalies":[]}');
    res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true,"phase":"serving"}');
  });
  await new Promise<void>((r) => enclave.listen(join(dir, 'enclave.sock'), r));
});
afterEach(async () => {
  if (host && host.exitCode === null && host.signalCode === null) host.kill('SIGKILL');
  enclave.closeAllConnections();
  enclave.close();
  await rm(dir, { recursive: true, force: true });
});

/** Starts the host process and resolves with its port once it printed its ready line. */
async function startHost(graceSeconds: number): Promise<number> {
  host = spawn(process.execPath, [join(ROOT, 'host/main.ts'), '--data-dir', join(dir, 'host'), '--enclave', `unix:${join(dir, 'enclave.sock')}`, '--port', '0', '--dev', '--shutdown-grace', String(graceSeconds)], {
    cwd: ROOT, stdio: ['ignore', 'pipe', 'ignore'],
  });
  const [line] = (await once(createInterface({ input: host.stdout! }), 'line')) as [string];
  return (JSON.parse(line) as { port: number }).port;
}

const refusesConnections = (port: number) =>
  new Promise<boolean>((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => (socket.destroy(), resolve(false)));
    socket.once('error', () => resolve(true));
  });

/** Sends GET /v1/attestation and resolves once the enclave holds it (with the pending answer). */
async function attestationInFlight(port: number): Promise<{ response: Promise<{ status: number }> }> {
  const response = fetch(`http://127.0.0.1:${port}/v1/attestation`).then(
    async (r) => ({ status: r.status, body: await r.text() }),
    () => ({ status: 0 }),
  );
  await eventually(async () => (held.length > 0 ? true : undefined));
  return { response };
}

describe('graceful shutdown', () => {
  it('stops accepting at SIGTERM and lets an in-flight request finish before exiting cleanly', async () => {
    const port = await startHost(10);
    const { response } = await attestationInFlight(port);
    const exited = once(host!, 'exit');
    host!.kill('SIGTERM');
    await eventually(async () => ((await refusesConnections(port)) ? true : undefined), 3_000);
    expect(host!.exitCode).toBeNull();
    held[0]!.res.writeHead(200, { 'content-type': 'application/json' }).end('{"document":"ZG9j","nsm":"dev"}');
    expect(await response).toMatchObject({ status: 200 });
    const [code, signal] = await exited;
    expect({ code, signal }).toEqual({ code: 0, signal: null });
  });

  it('exits within the grace period plus a bounded margin when an in-flight request never finishes', { timeout: 20_000 }, async () => {
    const port = await startHost(1);
    const { response } = await attestationInFlight(port);
    const exited = once(host!, 'exit');
    const started = Date.now();
    host!.kill('SIGTERM');
    await eventually(async () => ((await refusesConnections(port)) ? true : undefined), 3_000);
    const [, signal] = await exited;
    const took = Date.now() - started;
    expect(signal).toBeNull();
    expect(took).toBeGreaterThanOrEqual(900);
    expect(took).toBeLessThan(1_000 + 5_000 + 1_000);
    // The stuck client was cut off, never served.
    expect((await response).status).not.toBe(200);
  });
});
