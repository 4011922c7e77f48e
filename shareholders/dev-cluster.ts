/**
 * Development only: the dev stack's shareholders as independent instances inside one process —
 * each with its own port, store, identity key and log file, started and stopped one at a time.
 * Five Node processes cost ~130 MB resident each, nearly all of it the same runtime and code;
 * one process serving five costs about as much as one (docs/benchmarks.md, "Dev stack memory").
 *
 * Never for production: a real shareholder is a separate operator's service
 * (`shareholders/main.ts serve`), and sharing a process would share its memory between
 * shareholders, the very thing a threshold split must not do.
 *
 * `node shareholders/dev-cluster.ts --dev-root <pem>` is driven by its parent over the IPC
 * channel (scripts/stack.ts): `{ seq, op: 'start', id, dataDir, port, logFile }` answers
 * `{ seq, url }` once listening; `{ seq, op: 'stop', id }` answers `{ seq }` once closed. It
 * prints `{"ready":true}` on stdout when it can take requests, and exits when its parent goes.
 */
import { createWriteStream, readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { loadRoot, type PinnedRoot } from '../attestation/index.ts';
import { loadIdentity } from './identity.ts';
import { buildShareholderServer } from './server.ts';
import { openShareStore } from './store.ts';

export interface DevShareholderInstance {
  id: string;
  url: string;
  /**
   * Closes the listener and every open connection, as a dead process's would be: callers get
   * connection refused or reset, never a slow answer. The store is closed after the server.
   */
  stop(): Promise<void>;
}

export interface DevShareholderOptions {
  dataDir: string;
  port: number;
  logFile: string;
  extraRoots: PinnedRoot[];
  host?: string;
}

/** Starts one dev shareholder (identity and store from `dataDir`) listening on loopback. */
export async function startDevShareholder(options: DevShareholderOptions): Promise<DevShareholderInstance> {
  const host = options.host ?? '127.0.0.1';
  const identity = loadIdentity(options.dataDir);
  const store = await openShareStore(options.dataDir);
  const log = createWriteStream(options.logFile, { flags: 'a' });
  try {
    const app = await buildShareholderServer({
      identity,
      store,
      mode: 'dev',
      extraRoots: options.extraRoots,
      logger: { level: process.env.LOG_LEVEL ?? 'info', stream: log },
    });
    const address = await app.listen({ port: options.port, host });
    return {
      id: identity.id,
      url: `http://${host}:${new URL(address).port}`,
      async stop() {
        const closing = app.close();
        app.server.closeAllConnections();
        await closing;
        await store.close();
        await new Promise<void>((done) => log.end(done));
      },
    };
  } catch (error) {
    await store.close();
    log.end();
    throw error;
  }
}

/** Every dev shareholder of one stack, by id, in this process. */
export class DevShareholderCluster {
  readonly #extraRoots: PinnedRoot[];
  readonly #running = new Map<string, DevShareholderInstance>();

  constructor(extraRoots: PinnedRoot[]) {
    this.#extraRoots = extraRoots;
  }

  /** Starts shareholder `id` from `dataDir` (its identity must be `id`'s); answers its URL. */
  async start(id: string, dataDir: string, port: number, logFile: string): Promise<string> {
    const running = this.#running.get(id);
    if (running) return running.url;
    const instance = await startDevShareholder({ dataDir, port, logFile, extraRoots: this.#extraRoots });
    if (instance.id !== id) {
      await instance.stop();
      throw new Error(`${dataDir} holds the identity of ${instance.id}, not ${id}`);
    }
    this.#running.set(id, instance);
    return instance.url;
  }

  async stop(id: string): Promise<void> {
    const instance = this.#running.get(id);
    this.#running.delete(id);
    await instance?.stop();
  }

  async stopAll(): Promise<void> {
    await Promise.allSettled([...this.#running.keys()].map((id) => this.stop(id)));
  }
}

/** What the parent asks over IPC; each request carries a `seq` its answer repeats. */
export type DevClusterCommand = { op: 'start'; id: string; dataDir: string; port: number; logFile: string } | { op: 'stop'; id: string };
type DevClusterRequest = DevClusterCommand & { seq: number };

async function serveCluster(devRootPem: string): Promise<void> {
  const cluster = new DevShareholderCluster([loadRoot('securegate-dev-root', readFileSync(devRootPem))]);
  const handle = async (request: DevClusterRequest): Promise<object> =>
    request.op === 'start' ? { url: await cluster.start(request.id, request.dataDir, request.port, request.logFile) } : (await cluster.stop(request.id), {});
  process.on('message', (request: DevClusterRequest) => {
    handle(request).then(
      (answer) => process.send!({ seq: request.seq, ...answer }),
      (error: Error) => process.send!({ seq: request.seq, error: error.message }),
    );
  });
  const shutdown = async () => {
    await cluster.stopAll();
    process.exit(0);
  };
  process.on('SIGTERM', shutdown);
  process.on('SIGINT', shutdown);
  // A cluster never outlives the stack that started it.
  process.on('disconnect', shutdown);
  process.stdout.write(`${JSON.stringify({ ready: true, pid: process.pid })}\n`);
}

if (import.meta.main) {
  const { values } = parseArgs({ options: { 'dev-root': { type: 'string' } } });
  if (!values['dev-root'] || !process.send) {
    process.stderr.write('usage: node shareholders/dev-cluster.ts --dev-root <pem>  (started by scripts/stack.ts, over IPC)\n');
    process.exit(2);
  }
  await serveCluster(values['dev-root']);
}
