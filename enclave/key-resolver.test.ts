/**
 * The enclave's key resolver against three real shareholder services on loopback (2-of-3), with
 * the dev NSM: cache, refresh-ahead, and that a refresh never stretches a key's TTL when the
 * shareholders will not release it again.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { connect as netConnect, createServer as createNetServer } from 'node:net';
import { createServer as createTlsServer } from 'node:tls';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDevRoot, DevNsm } from '../attestation/dev.ts';
import {
  encodeShare,
  generateOwnerKeyPair,
  generateX25519KeyPair,
  sealShareEnvelope,
  sealUpstreamKey,
  fromHex,
  signOwnerMessage,
  splitSecret,
  toHex,
  type KeyBinding,
} from '../protocol/index.ts';
import { initIdentity, type ShareholderIdentity } from '../shareholders/identity.ts';
import { buildShareholderServer } from '../shareholders/server.ts';
import { openShareStore, type ShareStore } from '../shareholders/store.ts';
import { KeyResolver, type KeyResolverOptions } from './key-resolver.ts';
import { parseShareholderEndpoints, shareholderBridges, shareholderSocketRoute } from './shareholders.ts';
import { createEnclaveMetrics } from './metrics.ts';
import { devPcrPolicy } from '../attestation/dev-pcrs.ts';

const PCR0 = new Uint8Array(createHash('sha384').update('enclave bundle').digest());
const TTL = 60_000;

interface Shareholder {
  app: FastifyInstance;
  url: string;
  identity: ShareholderIdentity;
  store: ShareStore;
  dir: string;
}

const shareholders: Shareholder[] = [];
let nsm: DevNsm;
let root: Awaited<ReturnType<typeof createDevRoot>>;

async function startShareholder(id: string): Promise<Shareholder> {
  const dir = await mkdtemp(join(tmpdir(), 'sg-kr-'));
  const identity = initIdentity(dir, id);
  const store = await openShareStore(dir);
  const app = await buildShareholderServer({ identity, store, mode: 'dev', extraRoots: [DevNsm.pinnedRoot(root)] });
  const url = await app.listen({ port: 0, host: '127.0.0.1' });
  return { app, url, identity, store, dir };
}

/** Enrolls a fresh connection at every shareholder (2-of-3) and returns what the host would hold. */
async function enroll(opts: { maxLeasesPerDay?: number; policySha256?: string } = {}): Promise<{ binding: KeyBinding; record: Uint8Array; upstreamKey: string }> {
  const binding: KeyBinding = {
    connectionId: `conn_${randomBytes(8).toString('hex')}`, provider: 'openai', origin: 'https://api.openai.com', authScheme: 'bearer',
    ...(opts.policySha256 ? { policySha256: opts.policySha256 } : {}),
  };
  const upstreamKey = `sk-test-${randomBytes(8).toString('hex')}`;
  const dek = new Uint8Array(randomBytes(32));
  const record = sealUpstreamKey(new TextEncoder().encode(upstreamKey), dek, binding, (n) => new Uint8Array(randomBytes(n)));
  const shares = splitSecret(dek, 2, shareholders.length);
  const owner = generateOwnerKeyPair();
  await Promise.all(
    shareholders.map(async (sh, i) => {
      const envelope = await sealShareEnvelope(sh.identity.publicKey, encodeShare(shares[i]!), { purpose: 'enroll', connectionId: binding.connectionId, shareholderId: sh.identity.id });
      const signed = signOwnerMessage(owner.secretKey, {
        type: 'enroll',
        connectionId: binding.connectionId,
        shareholderId: sh.identity.id,
        issuedAt: Date.now(),
        envelopeSha256: createHash('sha256').update(envelope).digest('hex'),
        policy: devPcrPolicy(toHex(PCR0)),
        maxReleasesPerMinute: 600,
        ...(opts.maxLeasesPerDay !== undefined ? { maxLeasesPerDay: opts.maxLeasesPerDay } : {}),
      });
      const res = await fetch(`${sh.url}/v1/shares`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ envelope: Buffer.from(envelope).toString('base64'), signed }) });
      expect(res.status).toBe(201);
    }),
  );
  return { binding, record, upstreamKey };
}

function resolverAt(clock: { t: number }, endpoints = shareholders, ticketLifetimeMs?: number, extra: Partial<KeyResolverOptions> = {}) {
  const metrics = createEnclaveMetrics();
  const resolver = new KeyResolver({
    shareholders: endpoints.map((s) => ({ id: s.identity.id, url: s.url, publicKey: toHex(s.identity.publicKey) })),
    nsm,
    ephemeral: generateX25519KeyPair(),
    metrics,
    log: { warn() {}, info() {} },
    cacheTtlMs: TTL,
    stragglerWindowMs: 100,
    // Exactly t per lease unless a test is about the hedge: a loaded machine must not make it ask more.
    hedgeAfterMs: 10_000,
    now: () => clock.t,
    ...(ticketLifetimeMs !== undefined ? { ticketLifetimeMs } : {}),
    ...extra,
  });
  const count = async (result: string) => ((await metrics.cache.get()).values.find((v) => v.labels.result === result)?.value ?? 0);
  const fetches = async () => (await metrics.reconstructionSeconds.get()).values.find((v) => v.metricName?.endsWith('_count'))?.value ?? 0;
  return { resolver, count, fetches, metrics };
}

const text = (b: Uint8Array) => new TextDecoder().decode(b);
async function until(check: () => Promise<boolean>, ms = 5_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > end) throw new Error('condition not reached');
    await new Promise((r) => setTimeout(r, 20));
  }
}

beforeAll(async () => {
  root = await createDevRoot();
  nsm = await DevNsm.create({ root, pcr0: PCR0 });
  for (const id of ['sh-a', 'sh-b', 'sh-c']) shareholders.push(await startShareholder(id));
});
afterAll(async () => {
  for (const s of shareholders) {
    await s.app.close();
    await s.store.close();
    await rm(s.dir, { recursive: true, force: true });
  }
});

describe('key resolver', () => {
  it('rebuilds a key once, then answers from the cache until the last tenth of its TTL', async () => {
    const clock = { t: Date.now() };
    const { resolver, count, fetches } = resolverAt(clock);
    const c = await enroll();
    expect(text(await resolver.upstreamKey(c.binding, c.record, 2))).toBe(c.upstreamKey);
    expect(await fetches()).toBe(1);
    clock.t += TTL * 0.85;
    expect(text(await resolver.upstreamKey(c.binding, c.record, 2))).toBe(c.upstreamKey);
    expect(await count('refresh')).toBe(0);
    expect(await fetches()).toBe(1);
    await resolver.close();
  });

  it('refreshes a key in use in the background, so no request waits when its TTL ends', async () => {
    const clock = { t: Date.now() };
    const { resolver, count, fetches } = resolverAt(clock);
    const c = await enroll();
    await resolver.upstreamKey(c.binding, c.record, 2);
    clock.t += TTL * 0.95;
    // Answered from the cache; the refresh runs behind it (once, however many requests).
    const answers = await Promise.all(Array.from({ length: 5 }, () => resolver.upstreamKey(c.binding, c.record, 2)));
    expect(answers.map(text)).toEqual(Array(5).fill(c.upstreamKey));
    expect(await count('refresh')).toBe(1);
    await until(async () => (await fetches()) === 2);
    // Past the first fetch's expiry: still a hit, on the refreshed entry.
    clock.t += TTL * 0.5;
    expect(text(await resolver.upstreamKey(c.binding, c.record, 2))).toBe(c.upstreamKey);
    expect(await count('miss')).toBe(1);
    expect(await fetches()).toBe(2);
    await resolver.close();
  });

  it('does not refresh for a record that does not open with the cached key (a lying host)', async () => {
    const clock = { t: Date.now() };
    const { resolver, count } = resolverAt(clock);
    const c = await enroll();
    await resolver.upstreamKey(c.binding, c.record, 2);
    clock.t += TTL * 0.95;
    const bogus = c.record.slice();
    bogus[bogus.length - 1]! ^= 1;
    await expect(resolver.upstreamKey(c.binding, bogus, 2)).rejects.toMatchObject({ code: 'sealed_record_invalid' });
    expect(await count('refresh')).toBe(0);
    await resolver.close();
  });

  it('does not let a fetch that lands after an eviction (revoke, kill, rotation) cache the key again', async () => {
    const clock = { t: Date.now() };
    const { resolver, count, fetches } = resolverAt(clock);
    const c = await enroll();
    // Evicted while the cold fetch runs: the waiting request gets its key, nothing is cached.
    const first = resolver.upstreamKey(c.binding, c.record, 2);
    resolver.evict(c.binding.connectionId);
    expect(text(await first)).toBe(c.upstreamKey);
    await resolver.upstreamKey(c.binding, c.record, 2);
    expect(await count('miss')).toBe(2);
    // Evicted while a refresh runs: the refresh lands, and the next request is still a miss.
    clock.t += TTL * 0.95;
    await resolver.upstreamKey(c.binding, c.record, 2);
    expect(await count('refresh')).toBe(1);
    resolver.evict(c.binding.connectionId);
    await until(async () => (await fetches()) === 3);
    await resolver.upstreamKey(c.binding, c.record, 2);
    expect(await count('miss')).toBe(3);
    await resolver.close();
  });

  it('prepares a challenge and attestation per shareholder ahead, so a cold key takes one round trip each', async () => {
    const nonces = async (sh: Shareholder) => (await sh.store.db.query<{ nonce: string; used_at: number | null }>('SELECT nonce, used_at FROM nonces')).map((r) => ({ nonce: r.nonce, used: r.used_at !== null }));
    const before = await Promise.all(shareholders.map(nonces));
    const { resolver, fetches } = resolverAt({ t: Date.now() });
    const c = await enroll();
    // Ready before any request: one new, unused nonce at every shareholder.
    let ready: Array<{ nonce: string; used: boolean }> = [];
    await until(async () => {
      const now = await Promise.all(shareholders.map(nonces));
      ready = now.map((list, i) => list.filter((n) => !before[i]!.some((b) => b.nonce === n.nonce))).flat();
      return ready.length === shareholders.length;
    });
    expect(ready.every((n) => !n.used)).toBe(true);
    expect(text(await resolver.upstreamKey(c.binding, c.record, 2))).toBe(c.upstreamKey);
    expect(await fetches()).toBe(1);
    // The releases used exactly those nonces (no challenge on the request's path) …
    const after = (await Promise.all(shareholders.map(nonces))).flat();
    const usedNow = after.filter((n) => n.used && ready.some((r) => r.nonce === n.nonce));
    // (exactly t of them: a lease asks t shareholders, SPEC.md §9) …
    expect(usedNow.length).toBe(2);
    // … and the next ones are being prepared: a fresh ticket for each one used, the unused one kept.
    const fresh = async () => (await Promise.all(shareholders.map(nonces))).flat().filter((n) => !n.used && !before.flat().some((b) => b.nonce === n.nonce) && !ready.some((r) => r.nonce === n.nonce));
    await until(async () => (await fresh()).length === usedNow.length);
    expect(after.filter((n) => !n.used && ready.some((r) => r.nonce === n.nonce))).toHaveLength(shareholders.length - 2);
    await resolver.close();
  });

  it('replaces a prepared ticket the shareholder no longer takes, once', async () => {
    const { resolver, fetches } = resolverAt({ t: Date.now() });
    const c = await enroll();
    await until(async () => (await Promise.all(shareholders.map((sh) => sh.store.db.query('SELECT nonce FROM nonces WHERE used_at IS NULL')))).every((r) => r.length > 0));
    // The shareholders forget every outstanding nonce (as after a restore): prepared tickets are refused.
    for (const sh of shareholders) await sh.store.db.query('DELETE FROM nonces WHERE used_at IS NULL');
    expect(text(await resolver.upstreamKey(c.binding, c.record, 2))).toBe(c.upstreamKey);
    expect(await fetches()).toBe(1);
    await resolver.close();
  });

  it('works without prepared tickets (ticketLifetimeMs 0)', async () => {
    const { resolver } = resolverAt({ t: Date.now() }, shareholders, 0);
    const c = await enroll();
    expect(text(await resolver.upstreamKey(c.binding, c.record, 2))).toBe(c.upstreamKey);
    await resolver.close();
  });

  it('keeps the TTL bound when the shareholders cannot release again: the key expires at its time', async () => {
    const clock = { t: Date.now() };
    // Its own shareholders: two of them are stopped mid-test.
    const own = [await startShareholder('sh-x'), await startShareholder('sh-y'), await startShareholder('sh-z')];
    const saved = shareholders.splice(0, shareholders.length, ...own);
    try {
      const { resolver, count, fetches } = resolverAt(clock, own);
      const c = await enroll();
      await resolver.upstreamKey(c.binding, c.record, 2);
      for (const s of own.slice(0, 2)) await s.app.close();
      clock.t += TTL * 0.95;
      expect(text(await resolver.upstreamKey(c.binding, c.record, 2))).toBe(c.upstreamKey);
      expect(await count('refresh')).toBe(1);
      // The refresh fails (one shareholder left of the two needed): no second fetch completes.
      await new Promise((r) => setTimeout(r, 500));
      expect(await fetches()).toBe(1);
      clock.t += TTL * 0.1;
      await expect(resolver.upstreamKey(c.binding, c.record, 2)).rejects.toMatchObject({ code: 'shareholders_unavailable' });
      await resolver.close();
    } finally {
      shareholders.splice(0, shareholders.length, ...saved);
      for (const s of own) {
        await s.app.close();
        await s.store.close();
        await rm(s.dir, { recursive: true, force: true });
      }
    }
  });

  it('refuses a release a man in the middle forged in a shareholder\'s name, and does not blame that shareholder', async () => {
    const target = shareholders[0]!;
    const mitmKey = generateX25519KeyPair();
    let forged = 0;
    // Sits between the enclave and sh-a, passes everything on, and swaps each released share for
    // its own "share from sh-a", sealed to the enclave key and nonce it reads from the request.
    const mitm: Server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', async () => {
        const body = Buffer.concat(chunks).toString('utf8');
        const upstream = await fetch(`${target.url}${req.url}`, { method: req.method, headers: { 'content-type': 'application/json' }, ...(req.method === 'POST' ? { body } : {}) });
        let text = await upstream.text();
        if (req.url === '/v1/releases' && upstream.status === 200) {
          const { verifyAttestation } = await import('../attestation/index.ts');
          const doc = verifyAttestation(new Uint8Array(Buffer.from((JSON.parse(body) as { document: string }).document, 'base64')), { now: new Date(), roots: [DevNsm.pinnedRoot(root)] });
          const reply = JSON.parse(text) as { shares: Array<{ connectionId: string; envelope: string }> };
          for (const s of reply.shares) {
            const share = encodeShare({ index: 1, data: new Uint8Array(randomBytes(32)) });
            const env = await sealShareEnvelope(doc.publicKey!, share, { purpose: 'release', connectionId: s.connectionId, shareholderId: target.identity.id, nonce: doc.nonce! }, mitmKey.privateKey);
            s.envelope = Buffer.from(env).toString('base64');
            forged++;
          }
          text = JSON.stringify(reply);
        }
        res.writeHead(upstream.status, { 'content-type': 'application/json' }).end(text);
      });
    });
    await new Promise<void>((r) => mitm.listen(0, '127.0.0.1', r));
    const port = (mitm.address() as { port: number }).port;
    try {
      const endpoints = [{ ...target, url: `http://127.0.0.1:${port}` }, ...shareholders.slice(1)];
      const { resolver, metrics } = resolverAt({ t: Date.now() }, endpoints, 0, { stragglerWindowMs: 5_000 });
      const c = await enroll();
      expect(text(await resolver.upstreamKey(c.binding, c.record, 2))).toBe(c.upstreamKey);
      const unauthenticated = async () => (await metrics.shareFetchFailures.get()).values.find((v) => v.labels.shareholder === 'sh-a' && v.labels.reason === 'unauthenticated')?.value ?? 0;
      await until(async () => (await unauthenticated()) === 1);
      expect(forged).toBe(1);
      expect((await metrics.badShares.get()).values.filter((v) => v.value > 0)).toEqual([]);
      expect(resolver.anomalies).toEqual([]);
      await resolver.close();
    } finally {
      await new Promise((r) => mitm.close(r));
    }
  });

  it('asks exactly t shareholders per lease, so an honest enclave obtains the whole ⌊n·k/t⌋ leases a day', async () => {
    // n = 3, t = 2, k = 2: ⌊3·2/2⌋ = 3 leases. Asking all three each time would spend the 6
    // releases on 2 leases (t/n of the owner's ceiling).
    const { resolver } = resolverAt({ t: Date.now() }, shareholders, 0);
    const c = await enroll({ maxLeasesPerDay: 2 });
    let leases = 0;
    for (;;) {
      try {
        expect(text(await resolver.upstreamKey(c.binding, c.record, 2))).toBe(c.upstreamKey);
      } catch (error) {
        expect(error).toMatchObject({ code: 'lease_limit_reached' });
        break;
      }
      leases++;
      expect(leases).toBeLessThanOrEqual(3);
      resolver.evict(c.binding.connectionId); // the lease is used up: the next request needs a new one
    }
    expect(leases).toBe(3);
    const day = Math.floor(Date.now() / 86_400_000);
    expect(await Promise.all(shareholders.map((sh) => sh.store.leasesOn(c.binding.connectionId, day)))).toEqual([2, 2, 2]);
    await resolver.close();
  });

  it('still obtains a lease when a shareholder it asked is down, by asking the next one', async () => {
    const dead = { ...shareholders[0]!, url: 'http://127.0.0.1:1' };
    const { resolver, metrics } = resolverAt({ t: Date.now() }, [dead, ...shareholders.slice(1)], 0);
    const c = await enroll();
    expect(text(await resolver.upstreamKey(c.binding, c.record, 2))).toBe(c.upstreamKey);
    const failures = (await metrics.shareFetchFailures.get()).values.filter((v) => v.value > 0).map((v) => v.labels.shareholder);
    expect(failures).toEqual(['sh-a']);
    const day = Math.floor(Date.now() / 86_400_000);
    expect(await Promise.all(shareholders.map((sh) => sh.store.leasesOn(c.binding.connectionId, day)))).toEqual([0, 1, 1]);
    await resolver.close();
  });

  it('asks another shareholder when one it asked does not answer, without waiting for the fetch timeout', async () => {
    const silent = createNetServer(() => undefined); // accepts, never answers
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    try {
      const hung = { ...shareholders[0]!, url: `http://127.0.0.1:${(silent.address() as { port: number }).port}` };
      const { resolver } = resolverAt({ t: Date.now() }, [hung, ...shareholders.slice(1)], 0, { hedgeAfterMs: 200, fetchTimeoutMs: 30_000 });
      const c = await enroll();
      const started = Date.now();
      expect(text(await resolver.upstreamKey(c.binding, c.record, 2))).toBe(c.upstreamKey);
      expect(Date.now() - started).toBeLessThan(5_000);
      await resolver.close();
    } finally {
      silent.close();
    }
  });

  it('does not serve a cached key for the same record presented under another policy hash', async () => {
    const { resolver } = resolverAt({ t: Date.now() }, shareholders, 0);
    const c = await enroll({ policySha256: 'ab'.repeat(32) });
    // Twice: the second answer comes from the cached DEK and remembers the opened record.
    expect(text(await resolver.upstreamKey(c.binding, c.record, 2))).toBe(c.upstreamKey);
    expect(text(await resolver.upstreamKey(c.binding, c.record, 2))).toBe(c.upstreamKey);
    await expect(resolver.upstreamKey({ ...c.binding, policySha256: 'cd'.repeat(32) }, c.record, 2)).rejects.toMatchObject({ code: 'sealed_record_invalid' });
    await resolver.close();
  });

  it('refuses a shareholder configuration without identity keys, with duplicates or a bad key', () => {
    const sh = { id: 'sh-1', url: 'http://127.0.0.1:1', publicKey: 'ab'.repeat(32) };
    expect(parseShareholderEndpoints([sh])).toEqual([sh]);
    for (const bad of [[{ id: 'sh-1', url: sh.url }], [sh, sh], [{ ...sh, publicKey: 'xyz' }], [], [{ ...sh, url: 'ftp://x' }]]) {
      expect(() => parseShareholderEndpoints(bad)).toThrow(/shareholder configuration/);
    }
    expect(fromHex(sh.publicKey)).toHaveLength(32);
  });

  it('reaches shareholders only through their routes (unix sockets to the vsock bridge), with TLS done in the enclave', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'sg-kr-routes-'));
    const { caPem, certPem, keyPem } = await testPki('sh-a.shareholders.test');
    // sh-a is behind TLS (terminated by a front server here, as a shareholder's load balancer
    // would); every bridge is a plain byte relay, like socat to vsock-proxy on the parent.
    const tlsFront = createTlsServer({ cert: certPem, key: keyPem }, (tlsSocket) => {
      const upstream = netConnect(Number(new URL(shareholders[0]!.url).port), '127.0.0.1');
      tlsSocket.pipe(upstream).pipe(tlsSocket);
      upstream.on('error', () => tlsSocket.destroy());
    });
    await new Promise<void>((r) => tlsFront.listen(0, '127.0.0.1', r));
    const dialled = new Map<string, number>();
    const bridges = shareholders.map((sh, i) => {
      const target = i === 0 ? { port: (tlsFront.address() as { port: number }).port } : { port: Number(new URL(sh.url).port) };
      const server = createNetServer((socket) => {
        dialled.set(sh.identity.id, (dialled.get(sh.identity.id) ?? 0) + 1);
        const upstream = netConnect(target.port, '127.0.0.1');
        socket.pipe(upstream).pipe(socket);
        upstream.on('error', () => socket.destroy());
      });
      server.listen(join(dir, `shareholder-${sh.identity.id}.sock`));
      return server;
    });
    try {
      // URLs nobody can resolve: the only way to a shareholder is its route.
      const endpoints = shareholders.map((sh, i) => ({ ...sh, url: i === 0 ? 'https://sh-a.shareholders.test' : `http://${sh.identity.id}.shareholders.test` }));
      const routes = new Map(shareholders.map((sh) => [sh.identity.id, shareholderSocketRoute(dir, sh.identity.id)]));
      const { resolver, metrics } = resolverAt({ t: Date.now() }, endpoints, 0, { routes, routesOnly: true, ca: caPem, stragglerWindowMs: 5_000 });
      const c = await enroll();
      expect(text(await resolver.upstreamKey(c.binding, c.record, 2))).toBe(c.upstreamKey);
      await until(async () => (await metrics.shareFetchSeconds.get()).values.some((v) => v.labels.shareholder === 'sh-a' && v.metricName?.endsWith('_count') && v.value > 0));
      // A lease asks t = 2 shareholders; the next lease asks the next two (sh-c, sh-a).
      resolver.evict(c.binding.connectionId);
      expect(text(await resolver.upstreamKey(c.binding, c.record, 2))).toBe(c.upstreamKey);
      expect([...dialled.keys()].sort()).toEqual(['sh-a', 'sh-b', 'sh-c']);
      await resolver.close();
    } finally {
      for (const b of bridges) b.close();
      tlsFront.close();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('refuses to start without a route to every shareholder when only routes may be used', () => {
    const routes = new Map([[shareholders[0]!.identity.id, shareholderSocketRoute('/run/securegate', shareholders[0]!.identity.id)]]);
    expect(() => resolverAt({ t: Date.now() }, shareholders, 0, { routes, routesOnly: true })).toThrow(/no route to shareholder sh-b, sh-c/);
  });

  it('lists one vsock bridge per shareholder for enclave-init.sh, and refuses a shareholder without a port', () => {
    const sh = { id: 'sh-1', url: 'https://sh1.example', publicKey: 'ab'.repeat(32), vsockPort: 8101 };
    expect(shareholderBridges(parseShareholderEndpoints([sh, { ...sh, id: 'sh-2', vsockPort: 8102 }]))).toBe('sh-1 8101\nsh-2 8102\n');
    expect(() => shareholderBridges(parseShareholderEndpoints([{ ...sh, vsockPort: undefined }]))).toThrow(/no vsockPort/);
  });
});

async function testPki(name: string) {
  const x509 = await import('@peculiar/x509');
  const { webcrypto } = await import('node:crypto');
  x509.cryptoProvider.set(webcrypto as unknown as Crypto);
  const ALG = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
  const caKeys = (await webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify'])) as CryptoKeyPair;
  const ca = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: '01', name: 'CN=test shareholder CA', notBefore: new Date(Date.now() - 3600_000), notAfter: new Date(Date.now() + 86_400_000),
    signingAlgorithm: ALG, keys: caKeys, extensions: [new x509.BasicConstraintsExtension(true, undefined, true)],
  });
  const leafKeys = (await webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify'])) as CryptoKeyPair;
  const leaf = await x509.X509CertificateGenerator.create({
    serialNumber: '02', subject: `CN=${name}`, issuer: ca.subject, notBefore: new Date(Date.now() - 3600_000), notAfter: new Date(Date.now() + 86_400_000),
    signingAlgorithm: ALG, publicKey: leafKeys.publicKey, signingKey: caKeys.privateKey,
    extensions: [new x509.SubjectAlternativeNameExtension([{ type: 'dns', value: name }])],
  });
  const keyPem = x509.PemConverter.encode(await webcrypto.subtle.exportKey('pkcs8', leafKeys.privateKey), 'PRIVATE KEY');
  return { caPem: ca.toString('pem'), certPem: leaf.toString('pem'), keyPem };
}
