/**
 * Starts the whole SecureGate stack on loopback: 5 shareholders (3-of-5) as independent instances
 * in one development process (shareholders/dev-cluster.ts), the dev enclave (dev NSM whose PCR0
 * is the enclave bundle digest) and the host as processes of their own — embedded storage under
 * one data directory. Used by `npm start` and by the end-to-end tests.
 * Optionally starts the mock upstream in this process with a demo connection and SG_ key.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { DEV_PCR1, DEV_PCR2, devPcrPolicy } from '../attestation/dev-pcrs.ts';
import { generateOwnerKeyPair, signReleaseManifest, fromHex } from '../protocol/index.ts';
import type { DevStackFile, PinnedShareholder } from '../cli/config.ts';
import { loadRoot } from '../attestation/index.ts';
import { initIdentity, loadIdentity } from '../shareholders/identity.ts';
import type { DevClusterCommand, DevShareholderCluster } from '../shareholders/dev-cluster.ts';
import type { MockUpstream } from '../test/mock-upstream/index.ts';
import { toHex } from '../protocol/index.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

/**
 * The Node flags of every SecureGate process `npm start` runs — its launcher (package.json
 * "start", which holds the dev shareholders and the demo's mock upstream), the host and the
 * enclave — and of the benchmark's stack, so that the benchmark's memory rows describe the dev
 * stack (issue 22, docs/benchmarks.md "Dev stack memory"). Production processes keep V8's defaults.
 *
 * - Semi-spaces of at most 16 MB: under load V8 otherwise grows each process's young generation
 *   to ~128 MB and keeps it after the load (launcher at the peak of 32 clients ~200 -> ~160 MB,
 *   host and enclave far more). 8 MB scavenged twice as often: against it, 16 MB cost ~16 MB more
 *   per process and saved ~10 % CPU per request in host and enclave (ten alternated rounds at 32
 *   clients: host 450 -> 403 µs, lower in 9 of 10, enclave 227 -> 200 µs, the stack still under
 *   500 MB at the benchmark's peak).
 * - Old generation grown by 20% of what survives a full GC instead of V8's dynamic factor (up to
 *   4x): host and enclave keep ~25-35 MB alive under load, but V8 let the garbage promoted out of
 *   the small young generation pile up to ~90-100 MB of old space before marking, and kept the
 *   pages (host ~220-240 -> ~165 MB, enclave ~197 -> ~142 MB at the peak of 32 clients). It
 *   costs CPU: the more frequent full GCs put ~10% on each request of host and enclave at 32
 *   clients (all of these flags against V8's defaults for the launcher: ok/s median ratio 0.92,
 *   CPU per request host 1.13, enclave 1.10; four interleaved rounds). `--memory-saver-mode`
 *   saved a little more but cost ~30% more CPU per request.
 */
export const DEV_STACK_NODE_ARGS: readonly string[] = ['--max-semi-space-size=16', '--heap-growing-percent=20'];

export interface StackOptions {
  dataDir: string;
  hostPort?: number;
  shareholders?: number;
  threshold?: number;
  /** Start the mock upstream and create a demo connection + key. */
  mock?: boolean;
  /**
   * Serve the dev shareholders in this process rather than in one of their own: `npm start`
   * does (its launcher idles once the stack runs); tests and the benchmark keep them apart from
   * their own event loop.
   */
  shareholdersInProcess?: boolean;
  /** Extra Node flags for the host process (tests use --heapsnapshot-signal). */
  hostNodeArgs?: string[];
  /** Extra Node flags for the enclave process. */
  enclaveNodeArgs?: string[];
  /** Extra Node flags for the dev shareholders' process, when they have one of their own. */
  shareholderNodeArgs?: readonly string[];
  /** Extra host arguments (--database, --trusted-proxy, --velocity-floor, …). */
  hostArgs?: string[];
  /** Extra enclave arguments (--egress, --ca-file, …). */
  enclaveArgs?: string[];
  onProgress?: (message: string) => void;
}

export interface ManagedProcess {
  name: string;
  child: ChildProcess;
  ready: Record<string, unknown>;
  stop(): Promise<void>;
}

/**
 * One dev shareholder, an instance in the stack's shareholder process. `stop()` closes its
 * listener and connections (callers see connection refused, as with a dead process); `start()`
 * serves it again on the same port from the same store and identity.
 */
export interface RunningShareholder extends PinnedShareholder {
  dataDir: string;
  running: boolean;
  start(): Promise<void>;
  stop(): Promise<void>;
}

export interface Stack {
  dataDir: string;
  /** The signed dev release manifest and the hex public release key that signed it. */
  manifestPath: string;
  releasePublicKey: string;
  hostUrl: string;
  adminToken: string;
  enclaveSocket: string;
  pcr0: string;
  threshold: number;
  shareholders: RunningShareholder[];
  /** The process serving every dev shareholder (respawned by a `start()` if it died); none when they run in this process. */
  shareholderProcess(): ManagedProcess | undefined;
  host: ManagedProcess;
  enclave: ManagedProcess;
  mock?: MockUpstream;
  demo?: { connectionId: string; key: string; keyId: string; upstreamKey: string };
  /** Starts the enclave again after it died (same socket, new ephemeral key, empty cache). */
  restartEnclave(): Promise<void>;
  /**
   * Starts one more enclave on a socket of its own (same bundle, shareholders and dev NSM), for
   * another set of hosts: a second layout beside the stack's, with Node flags of its own. The
   * caller stops it (`stop()` stops the stack's own processes only); it exits with its parent.
   */
  startEnclaveInstance(name: string, nodeArgs?: string[]): Promise<ManagedProcess & { socket: string }>;
  /** Starts the host again after it died (same data directory and port). */
  restartHost(): Promise<void>;
  stop(): Promise<void>;
}

/**
 * Spawns `node <script> …args`, logs stderr to a file, and waits for its `{"ready":true}` line.
 * With `ipc`, the child also gets a message channel, and exits when its parent goes (the host, the
 * enclave and the shareholders' process all watch it), so a launcher that dies leaves no orphans.
 */
export async function spawnReady(name: string, script: string, args: string[], logFile: string, nodeArgs: string[] = [], cwd = ROOT, ipc = false): Promise<ManagedProcess> {
  const log = openSync(logFile, 'a');
  const stdio = ipc ? (['ignore', 'pipe', log, 'ipc'] as const) : (['ignore', 'pipe', log] as const);
  const child = spawn(process.execPath, [...nodeArgs, join(ROOT, script), ...args], { cwd, stdio: [...stdio], env: { ...process.env } });
  const ready = await new Promise<Record<string, unknown>>((resolveReady, reject) => {
    // A process that never becomes ready is stopped, not left running behind a failed start.
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${name} did not become ready within 45 s; see ${logFile}`));
    }, 45_000);
    const lines = createInterface({ input: child.stdout! });
    lines.once('line', (line) => {
      clearTimeout(timer);
      try {
        resolveReady(JSON.parse(line) as Record<string, unknown>);
      } catch {
        reject(new Error(`${name} printed ${line}`));
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${name} exited with ${code} before it was ready; see ${logFile}`));
    });
  });
  child.removeAllListeners('exit');
  return {
    name,
    child,
    ready,
    stop: () =>
      new Promise<void>((done) => {
        if (child.exitCode !== null || child.signalCode !== null) return done();
        child.once('exit', () => done());
        child.kill('SIGTERM');
        setTimeout(() => child.kill('SIGKILL'), 5_000).unref();
      }),
  };
}

/**
 * The enclave bundle's SHA-384 (its PCR0 here), measured in a short-lived process: the archive is
 * built in memory, and a launcher that built it would keep ~36 MB for as long as the stack runs.
 */
function measureEnclaveBundle(): string {
  const bundleModule = pathToFileURL(join(ROOT, 'infra/enclave/bundle.ts')).href;
  const script = `import { buildEnclaveBundle } from ${JSON.stringify(bundleModule)}; process.stdout.write(buildEnclaveBundle().sha384);`;
  const sha384 = execFileSync(process.execPath, ['--input-type=module', '--eval', script], { cwd: ROOT, encoding: 'utf8' }).trim();
  if (!/^[0-9a-f]{96}$/.test(sha384)) throw new Error(`measuring the enclave bundle printed ${sha384}`);
  return sha384;
}

function gitCommit(): string {
  try {
    return execFileSync('git', ['rev-parse', 'HEAD'], { cwd: ROOT, encoding: 'utf8' }).trim();
  } catch {
    return 'unknown';
  }
}

/** Starts one more host instance sharing the stack's data directory and database, and its enclave unless `enclaveSocket` names another. */
export async function startHostInstance(stack: Stack, args: string[], name = 'host-2', nodeArgs: string[] = [], enclaveSocket = stack.enclaveSocket): Promise<ManagedProcess & { url: string }> {
  const hostDir = join(stack.dataDir, 'host');
  const host = await spawnReady(name, 'host/main.ts', ['--data-dir', hostDir, '--enclave', `unix:${enclaveSocket}`, '--port', '0', '--dev', ...args], join(stack.dataDir, 'logs', `${name}.log`), nodeArgs, hostDir, true);
  return Object.assign(host, { url: `http://127.0.0.1:${host.ready.port as number}` });
}

/** Where the dev shareholders run: a process of their own, or the launcher's. */
interface DevShareholderHost {
  /** The process serving them, when they have one of their own and it is running. */
  process(): ManagedProcess | undefined;
  /** Starts one shareholder (spawning the process first if none is running); answers its URL. */
  start(id: string, dataDir: string, port: number, logFile: string): Promise<string>;
  /** Stops one shareholder; nothing to do when none is running. */
  stop(id: string): Promise<void>;
  stopAll(): Promise<void>;
}

/** The dev shareholders in this process: `npm start`'s launcher is idle once the stack runs. */
function inProcessShareholders(rootPem: string): DevShareholderHost {
  let cluster: Promise<DevShareholderCluster> | undefined;
  const load = () =>
    (cluster ??= import('../shareholders/dev-cluster.ts').then(({ DevShareholderCluster }) => new DevShareholderCluster([loadRoot('securegate-dev-root', readFileSync(rootPem))])));
  return {
    process: () => undefined,
    start: async (id, dataDir, port, logFile) => (await load()).start(id, dataDir, port, logFile),
    stop: async (id) => (await cluster)?.stop(id),
    stopAll: async () => (await cluster)?.stopAll(),
  };
}

/** The dev shareholders in a process of their own (shareholders/dev-cluster.ts), driven over IPC. */
function shareholderProcess(rootPem: string, logFile: string, nodeArgs: readonly string[]): DevShareholderHost {
  let current: ManagedProcess | undefined;
  let spawning: Promise<ManagedProcess> | undefined;
  let seq = 0;
  const pending = new Map<number, { resolve(answer: Record<string, unknown>): void; reject(error: Error): void }>();
  const alive = (p: ManagedProcess | undefined) => p !== undefined && p.child.exitCode === null && p.child.signalCode === null;
  const ensure = (): Promise<ManagedProcess> => {
    if (alive(current)) return Promise.resolve(current!);
    spawning ??= spawnReady('shareholders', 'shareholders/dev-cluster.ts', ['--dev-root', rootPem], logFile, [...nodeArgs], ROOT, true)
      .then((p) => {
        p.child.on('message', (answer: Record<string, unknown>) => {
          const waiter = pending.get(answer.seq as number);
          pending.delete(answer.seq as number);
          if (typeof answer.error === 'string') waiter?.reject(new Error(answer.error));
          else waiter?.resolve(answer);
        });
        p.child.once('exit', (code, signal) => {
          for (const waiter of pending.values()) waiter.reject(new Error(`the shareholder process exited (${signal ?? code}); see ${logFile}`));
          pending.clear();
        });
        current = p;
        return p;
      })
      .finally(() => {
        spawning = undefined;
      });
    return spawning;
  };
  const request = async (message: DevClusterCommand): Promise<Record<string, unknown>> => {
    const p = await ensure();
    const id = ++seq;
    return new Promise((resolve, reject) => {
      pending.set(id, { resolve, reject });
      p.child.send({ ...message, seq: id });
    });
  };
  return {
    process: () => (alive(current) ? current : undefined),
    start: async (id, dataDir, port, logFile) => (await request({ op: 'start', id, dataDir, port, logFile })).url as string,
    async stop(id) {
      if (alive(current)) await request({ op: 'stop', id });
    },
    async stopAll() {
      await spawning?.catch(() => undefined);
      await current?.stop();
    },
  };
}

export async function startStack(options: StackOptions): Promise<Stack> {
  const progress = options.onProgress ?? (() => {});
  const dataDir = resolve(options.dataDir);
  const n = options.shareholders ?? 5;
  const threshold = options.threshold ?? 3;
  const logs = join(dataDir, 'logs');
  mkdirSync(logs, { recursive: true, mode: 0o700 });

  const rootDir = join(dataDir, 'dev-root');
  if (!existsSync(join(rootDir, 'root.pem'))) {
    progress('creating the development attestation root (P-384, never accepted by production policies)');
    mkdirSync(rootDir, { recursive: true, mode: 0o700 });
    // Only on the first start: the dev root's X.509 code (@peculiar/x509, tsyringe, eleven
    // asn1 packages) would otherwise stay loaded in `npm start`'s launcher for as long as the stack runs.
    const { createDevRoot } = await import('../attestation/dev.ts');
    const root = await createDevRoot();
    writeFileSync(join(rootDir, 'root.pem'), root.certificatePem);
    writeFileSync(join(rootDir, 'root.key'), root.privateKeyPem, { mode: 0o600 });
  }

  const started: ManagedProcess[] = [];
  const rootPem = join(rootDir, 'root.pem');
  const shareholderHost = options.shareholdersInProcess ? inProcessShareholders(rootPem) : shareholderProcess(rootPem, join(logs, 'shareholders.log'), options.shareholderNodeArgs ?? []);
  const shareholders: RunningShareholder[] = [];
  try {
    progress(`starting ${n} shareholders (${threshold}-of-${n})`);
    for (let i = 1; i <= n; i++) {
      const id = `sh-${i}`;
      const dir = join(dataDir, 'shareholders', id);
      const identity = existsSync(join(dir, 'identity.json')) ? loadIdentity(dir) : initIdentity(dir, id);
      const sh: RunningShareholder = {
        id,
        url: '',
        publicKey: toHex(identity.publicKey),
        dataDir: dir,
        running: false,
        async start() {
          const port = sh.url ? Number(new URL(sh.url).port) : 0;
          sh.url = await shareholderHost.start(id, dir, port, join(logs, `${id}.log`));
          sh.running = true;
        },
        async stop() {
          if (sh.running) await shareholderHost.stop(id);
          sh.running = false;
        },
      };
      shareholders.push(sh);
    }
    const starts = await Promise.allSettled(shareholders.map((s) => s.start()));
    const failed = starts.find((r) => r.status === 'rejected');
    if (failed) throw (failed as PromiseRejectedResult).reason;

    // The launcher plays the Nitro hypervisor: it measures the enclave bundle (PCR0) and, as the
    // release engineer would, publishes a signed release manifest for it (dev release key).
    progress('measuring the enclave bundle (PCR0) and signing a dev release manifest');
    const pcr0 = measureEnclaveBundle();
    const releaseKeyPath = join(rootDir, 'release.key');
    if (!existsSync(releaseKeyPath)) writeFileSync(releaseKeyPath, toHex(generateOwnerKeyPair().secretKey), { mode: 0o600 });
    const releaseKey = fromHex(readFileSync(releaseKeyPath, 'utf8').trim());
    const manifest = signReleaseManifest(releaseKey, {
      version: 1,
      name: 'securegate-enclave',
      release: 'dev',
      gitCommit: gitCommit(),
      bundleSha384: pcr0,
      pcrs: { '0': pcr0, '1': toHex(DEV_PCR1), '2': toHex(DEV_PCR2) },
      nsm: 'dev',
    });
    const manifestPath = join(dataDir, 'release-manifest.json');
    writeFileSync(manifestPath, `${JSON.stringify(manifest, null, 2)}\n`);

    const shareholdersFile = join(dataDir, 'enclave-shareholders.json');
    // Each shareholder's identity key: the enclave authenticates the shares they release (HPKE auth mode).
    writeFileSync(shareholdersFile, JSON.stringify(shareholders.map((s) => ({ id: s.id, url: s.url, publicKey: s.publicKey })), null, 2));
    const enclaveSocket = join(dataDir, 'enclave.sock');
    progress('starting the enclave (dev NSM)');
    const enclaveArgsOn = (socket: string) => ['--listen', `unix:${socket}`, '--shareholders', shareholdersFile, '--dev-nsm', rootDir, '--dev-pcr0', pcr0, '--allow-loopback-http', ...(options.enclaveArgs ?? [])];
    const enclaveArgs = enclaveArgsOn(enclaveSocket);
    const enclave = await spawnReady('enclave', 'enclave/dev-main.ts', enclaveArgs, join(logs, 'enclave.log'), options.enclaveNodeArgs ?? [], ROOT, true);
    started.push(enclave);

    progress('starting the host gateway');
    const hostDir = join(dataDir, 'host');
    mkdirSync(hostDir, { recursive: true, mode: 0o700 });
    // The operator publishes its shareholders for the dashboard's in-browser enrollment.
    const enrollmentPath = join(dataDir, 'enrollment.json');
    writeFileSync(enrollmentPath, JSON.stringify({ threshold, shareholders: shareholders.map(({ id, url, publicKey }) => ({ id, url, publicKey })), pcrPolicy: devPcrPolicy(pcr0) }, null, 2));
    const hostArgs = (port: number) => [
      '--data-dir', hostDir, '--enclave', `unix:${enclaveSocket}`, '--port', String(port), '--dev', '--release-manifest', manifestPath,
      '--enrollment', enrollmentPath, '--attestation-root', join(rootDir, 'root.pem'), ...(options.hostArgs ?? []),
    ];
    const host = await spawnReady('host', 'host/main.ts', hostArgs(options.hostPort ?? 8080), join(logs, 'host.log'), options.hostNodeArgs ?? [], hostDir, true);
    started.push(host);
    const hostUrl = `http://127.0.0.1:${host.ready.port as number}`;
    const adminToken = readFileSync(join(hostDir, 'admin-token'), 'utf8').trim();
    const devFile: DevStackFile = {
      hostUrl,
      adminToken,
      shareholders: shareholders.map(({ id, url, publicKey }) => ({ id, url, publicKey })),
      threshold,
      pcr0,
    };
    writeFileSync(join(dataDir, 'dev-stack.json'), JSON.stringify(devFile, null, 2), { mode: 0o600 });

    const stack: Stack = {
      dataDir,
      manifestPath,
      releasePublicKey: manifest.publicKey,
      hostUrl,
      adminToken,
      enclaveSocket,
      pcr0,
      threshold,
      shareholders,
      shareholderProcess: () => shareholderHost.process(),
      host,
      enclave,
      async restartEnclave() {
        await stack.enclave.stop();
        stack.enclave = await spawnReady('enclave', 'enclave/dev-main.ts', enclaveArgs, join(logs, 'enclave.log'), options.enclaveNodeArgs ?? [], ROOT, true);
      },
      async startEnclaveInstance(name, nodeArgs = []) {
        const socket = join(dataDir, `${name}.sock`);
        const instance = await spawnReady(name, 'enclave/dev-main.ts', enclaveArgsOn(socket), join(logs, `${name}.log`), nodeArgs, ROOT, true);
        return Object.assign(instance, { socket });
      },
      async restartHost() {
        await stack.host.stop();
        stack.host = await spawnReady('host', 'host/main.ts', hostArgs(Number(new URL(hostUrl).port)), join(logs, 'host.log'), options.hostNodeArgs ?? [], hostDir, true);
      },
      async stop() {
        await Promise.all([stack.host.stop(), stack.enclave.stop(), shareholderHost.stopAll()]);
        for (const s of shareholders) s.running = false;
        await stack.mock?.close();
      },
    };

    if (options.mock) {
      const upstreamKey = `sk-mock-${randomBytes(16).toString('hex')}`;
      // Loaded only for a demo: the owner's CLI code and the mock have no part in a plain stack.
      const [{ startMockUpstream }, { connectProvider, createKey }] = await Promise.all([import('../test/mock-upstream/index.ts'), import('../cli/owner.ts')]);
      stack.mock = await startMockUpstream({ apiKey: upstreamKey });
      progress(`mock upstream on ${stack.mock.origin}; creating a demo connection`);
      const connection = await connectProvider({
        serverUrl: hostUrl,
        adminToken,
        ownerSecretKey: generateOwnerKeyPair().secretKey,
        shareholders: devFile.shareholders,
        threshold,
        provider: 'openai',
        baseUrl: stack.mock.origin,
        name: 'demo (mock upstream)',
        apiKey: new TextEncoder().encode(upstreamKey),
        pcrPolicy: devPcrPolicy(pcr0),
        dev: true,
      });
      const key = await createKey(hostUrl, adminToken, connection.id);
      stack.demo = { connectionId: connection.id, key: key.key, keyId: key.id, upstreamKey };
    }
    return stack;
  } catch (error) {
    await Promise.all([...started.map((p) => p.stop()), shareholderHost.stopAll()]);
    throw error;
  }
}
