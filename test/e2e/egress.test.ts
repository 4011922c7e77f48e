/**
 * Production egress, emulated on loopback: the enclave reaches its pinned HTTPS origin only
 * through a local stream (vsock + vsock-proxy in production; here a unix socket relay) and does
 * TLS itself, verifying the upstream certificate against its own CA bundle. The relay — the
 * host's side — sees only ciphertext: never the key, the model or the prompt.
 */
import 'reflect-metadata';
import { webcrypto } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as createHttpsServer } from 'node:https';
import { createServer as createNetServer, connect, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as x509 from '@peculiar/x509';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateOwnerKeyPair } from '../../protocol/index.ts';
import { connectProvider, createKey } from '../../cli/owner.ts';
import { startTestStack } from './helpers.ts';
import { devPcrPolicy } from '../../attestation/dev-pcrs.ts';

x509.cryptoProvider.set(webcrypto as unknown as Crypto);
const HOSTNAME = 'api.upstream.test';
const UPSTREAM_KEY = 'sk-live-egress-0123456789abcdef';
const ALG = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;

async function pki(names: string[]) {
  const caKeys = (await webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify'])) as CryptoKeyPair;
  const ca = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: '01', name: 'CN=test upstream CA', notBefore: new Date(Date.now() - 3600_000), notAfter: new Date(Date.now() + 86_400_000),
    signingAlgorithm: ALG, keys: caKeys, extensions: [new x509.BasicConstraintsExtension(true, undefined, true)],
  });
  const leafKeys = (await webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify'])) as CryptoKeyPair;
  const leaf = await x509.X509CertificateGenerator.create({
    serialNumber: '02', subject: `CN=${names[0]}`, issuer: ca.subject, notBefore: new Date(Date.now() - 3600_000), notAfter: new Date(Date.now() + 86_400_000),
    signingAlgorithm: ALG, publicKey: leafKeys.publicKey, signingKey: caKeys.privateKey,
    extensions: [new x509.SubjectAlternativeNameExtension(names.map((n) => ({ type: 'dns' as const, value: n })))],
  });
  const key = x509.PemConverter.encode(await webcrypto.subtle.exportKey('pkcs8', leafKeys.privateKey), 'PRIVATE KEY');
  return { caPem: ca.toString('pem'), certPem: leaf.toString('pem'), keyPem: key };
}

let dir: string;
let stack: Awaited<ReturnType<typeof startTestStack>>;
const relayed: Buffer[] = [];
const seenAuth: string[] = [];
let closers: Array<() => void> = [];

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'sg-egress-'));
  const good = await pki([HOSTNAME]);
  const upstream = createHttpsServer({ cert: good.certPem, key: good.keyPem }, (req, res) => {
    seenAuth.push(String(req.headers.authorization));
    req.resume();
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ id: 'c', object: 'chat.completion', created: 1, model: 'gpt-4o-mini', choices: [{ index: 0, message: { role: 'assistant', content: 'hi over TLS' }, finish_reason: 'stop' }], usage: { prompt_tokens: 1, completion_tokens: 3, total_tokens: 4 } }));
    });
  });
  await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
  const upstreamPort = (upstream.address() as AddressInfo).port;
  // The host-side relay: forwards bytes, records them, understands nothing.
  const relay = createNetServer((client) => {
    const out = connect(upstreamPort, '127.0.0.1');
    client.on('data', (c: Buffer) => relayed.push(Buffer.from(c)));
    out.on('data', (c: Buffer) => relayed.push(Buffer.from(c)));
    client.pipe(out).pipe(client);
    client.on('error', () => out.destroy());
    out.on('error', () => client.destroy());
  });
  const relayPath = join(dir, 'egress-openai.sock');
  await new Promise<void>((r) => relay.listen(relayPath, r));
  // A second relay to the same server but for a hostname the certificate does not cover.
  const wrongPath = join(dir, 'egress-wrong.sock');
  const wrong = createNetServer((client) => client.pipe(connect(upstreamPort, '127.0.0.1')).pipe(client));
  await new Promise<void>((r) => wrong.listen(wrongPath, r));
  writeFileSync(join(dir, 'ca.pem'), good.caPem);
  closers = [() => upstream.close(), () => relay.close(), () => wrong.close()];
  stack = await startTestStack({
    enclaveArgs: ['--egress', `https://${HOSTNAME}=unix:${relayPath}`, '--egress', `https://wrong.upstream.test=unix:${wrongPath}`, '--ca-file', join(dir, 'ca.pem'), '--egress-only'],
  });
});
afterAll(async () => {
  await stack?.cleanup();
  for (const c of closers) c();
  rmSync(dir, { recursive: true, force: true });
});

async function keyFor(baseUrl: string): Promise<string> {
  const conn = await connectProvider({
    serverUrl: stack.hostUrl, adminToken: stack.adminToken, ownerSecretKey: generateOwnerKeyPair().secretKey,
    shareholders: stack.shareholders.map(({ id, url, publicKey }) => ({ id, url, publicKey })), threshold: 3, provider: 'openai', baseUrl,
    apiKey: new TextEncoder().encode(UPSTREAM_KEY), pcrPolicy: devPcrPolicy(stack.pcr0), dev: true,
  });
  return (await createKey(stack.hostUrl, stack.adminToken, conn.id)).key;
}

const ask = (key: string) =>
  new OpenAI({ apiKey: key, baseURL: `${stack.hostUrl}/v1`, maxRetries: 0 }).chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'secret prompt text' }] });

describe('enclave egress through an opaque relay', () => {
  it('terminates TLS in the enclave: the upstream gets the key, the relay only ciphertext', async () => {
    const key = await keyFor(`https://${HOSTNAME}`);
    const completion = await ask(key);
    expect(completion.choices[0]!.message.content).toBe('hi over TLS');
    expect(seenAuth.at(-1)).toBe(`Bearer ${UPSTREAM_KEY}`);
    const wire = Buffer.concat(relayed);
    expect(wire.length).toBeGreaterThan(500);
    expect(wire.includes(UPSTREAM_KEY)).toBe(false);
    expect(wire.includes('Bearer')).toBe(false);
    expect(wire.includes('secret prompt text')).toBe(false);
    expect(wire.includes('gpt-4o-mini')).toBe(false);
    expect(wire.includes(HOSTNAME)).toBe(true); // SNI is the one thing in clear, as with any TLS
  });

  it('refuses a certificate that does not match the pinned hostname, without sending the key', async () => {
    const before = seenAuth.length;
    const key = await keyFor('https://wrong.upstream.test');
    const error = (await ask(key).catch((e: unknown) => e)) as { status: number };
    expect(error.status).toBe(502);
    expect(seenAuth.length).toBe(before);
  });

  it('refuses an origin that has no egress route', async () => {
    const key = await keyFor('https://elsewhere.example');
    const error = (await ask(key).catch((e: unknown) => e)) as { status: number };
    expect(error.status).toBe(502);
  });
});
