/**
 * The host process's edge options as an operator sets them (`node host/main.ts …`, started as
 * scripts/stack.ts starts it): the metrics token from the environment, the separate metrics
 * listener, and refusal to start with a token too short to be a secret. The enclave is a stand-in
 * on a unix socket.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const TOKEN = 'sgmet_0123456789abcdef0123456789abcdef';

let dir: string;
let enclave: Server;
const children: ChildProcess[] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sg-main-'));
  enclave = createServer((req, res) => {
    if (req.url === '/metrics') return void res.writeHead(200).end('securegate_enclave_stand_in 1\n');
    if (req.url?.startsWith('/anomalies')) return void res.writeHead(200, { 'content-type': 'application/json' }).end('{"anomalies":[]}');
    res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true,"phase":"serving"}');
  });
  await new Promise<void>((r) => enclave.listen(join(dir, 'enclave.sock'), r));
});
afterAll(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  enclave?.closeAllConnections();
  enclave?.close();
  await rm(dir, { recursive: true, force: true });
});

function host(args: string[], env: Record<string, string> = {}): ChildProcess {
  const child = spawn(process.execPath, [join(ROOT, 'host/main.ts'), '--data-dir', join(dir, 'host'), '--enclave', `unix:${join(dir, 'enclave.sock')}`, '--port', '0', ...args], {
    cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, SECUREGATE_METRICS_TOKEN: '', ...env },
  });
  children.push(child);
  return child;
}

describe('host process options', () => {
  it('serves /metrics with the token from SECUREGATE_METRICS_TOKEN, and on --metrics-port', async () => {
    const child = host(['--metrics-port', '0'], { SECUREGATE_METRICS_TOKEN: TOKEN });
    const [line] = (await once(createInterface({ input: child.stdout! }), 'line')) as [string];
    const ready = JSON.parse(line) as { port: number; metricsPort: number };
    expect(ready.metricsPort).toBeGreaterThan(0);
    const bearer = { authorization: `Bearer ${TOKEN}` };
    expect((await fetch(`http://127.0.0.1:${ready.port}/metrics`)).status).toBe(401);
    const pub = await fetch(`http://127.0.0.1:${ready.port}/metrics`, { headers: bearer });
    expect(pub.status).toBe(200);
    expect(await pub.text()).toContain('securegate_enclave_stand_in 1');
    expect((await fetch(`http://127.0.0.1:${ready.metricsPort}/metrics`)).status).toBe(401);
    expect((await fetch(`http://127.0.0.1:${ready.metricsPort}/metrics`, { headers: bearer })).status).toBe(200);
    const exited = once(child, 'exit');
    child.kill('SIGTERM');
    expect((await exited)[0]).toBe(0);
  });

  it('refuses to start with a metrics token shorter than 16 characters', async () => {
    const child = host(['--metrics-token', 'short']);
    let stderr = '';
    child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
    const [code] = (await once(child, 'exit')) as [number];
    expect(code).toBe(1);
    expect(stderr).toContain('--metrics-token');
  });
});
