/**
 * Helpers for end-to-end tests: a stack in a temp directory, RPC calls straight to the enclave's
 * socket (as a hostile host would make them), and a hand-rolled enrollment that lets a test give
 * one shareholder a corrupted share.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer as createHttpServer } from 'node:http';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Pool } from 'undici';
import {
  encodeShare,
  fromHex,
  generateOwnerKeyPair,
  sealShareEnvelope,
  sealUpstreamKey,
  signOwnerMessage,
  splitSecret,
  type ConnectionPolicyInput,
  type KeyBinding,
} from '../../protocol/index.ts';
import { devPcrPolicy } from '../../attestation/dev.ts';
import { connectProvider, createKey } from '../../cli/owner.ts';
import { startStack, type Stack, type StackOptions } from '../../scripts/stack.ts';

export async function startTestStack(options: Partial<StackOptions> = {}): Promise<Stack & { cleanup(): Promise<void> }> {
  const dataDir = await mkdtemp(join(tmpdir(), 'sg-e2e-'));
  const stack = await startStack({ dataDir, hostPort: 0, mock: true, ...options });
  return Object.assign(stack, {
    async cleanup() {
      await stack.stop();
      await rm(dataDir, { recursive: true, force: true });
    },
  });
}

export function enclaveRpc(stack: Stack): Pool {
  return new Pool('http://enclave.local', { connect: { socketPath: stack.enclaveSocket } });
}

/** Reads the enclave's Prometheus metrics over its socket. */
export async function enclaveMetrics(stack: Stack): Promise<string> {
  const pool = enclaveRpc(stack);
  try {
    const res = await pool.request({ path: '/metrics', method: 'GET' });
    return await res.body.text();
  } finally {
    await pool.close();
  }
}

/** Polls `probe` until it returns a value (event-driven waits are not available across processes). */
/**
 * A loopback port nobody listens on right now, for a program that must be told its port (a fixed,
 * random or pid-derived one can be held by a stray server or an outgoing connection).
 */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address() as { port: number };
      probe.close(() => resolve(port));
    });
  });
}

export async function eventually<T>(probe: () => Promise<T | undefined>, timeoutMs = 10_000): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > until) throw new Error('condition not reached in time');
    await new Promise((r) => setTimeout(r, 50));
  }
}

export interface ManualConnection {
  connectionId: string;
  key: string;
  keyId: string;
  binding: KeyBinding;
  sealedRecord: string;
  /** What the host must never hold: the data key and the encoded shares (for secret scans). */
  secrets: { dek: Uint8Array; shares: Uint8Array[] };
}

/**
 * Enrolls a connection to the mock upstream like the CLI does, except that the shareholder named
 * in `corrupt` is given a share with one flipped byte (a shareholder whose store went bad).
 */
export async function enrollConnection(stack: Stack, options: { upstreamKey: string; corrupt?: string; provider?: string; projectId?: string; adminToken?: string }): Promise<ManualConnection> {
  const connectionId = `conn_${randomBytes(12).toString('hex')}`;
  const provider = options.provider ?? 'openai';
  const binding: KeyBinding = { connectionId, provider, origin: stack.mock!.origin, authScheme: provider === 'anthropic' ? 'x-api-key' : 'bearer' };
  const dek = new Uint8Array(randomBytes(32));
  const record = sealUpstreamKey(new TextEncoder().encode(options.upstreamKey), dek, binding, (n) => new Uint8Array(randomBytes(n)));
  const shares = splitSecret(dek, stack.threshold, stack.shareholders.length);
  const secrets = { dek: dek.slice(), shares: shares.map((sh) => encodeShare(sh)) };
  const owner = generateOwnerKeyPair();
  await Promise.all(
    stack.shareholders.map(async (sh, i) => {
      const share = shares[i]!;
      if (sh.id === options.corrupt) share.data[3]! ^= 0x5a;
      const envelope = await sealShareEnvelope(fromHex(sh.publicKey), encodeShare(share), { purpose: 'enroll', connectionId, shareholderId: sh.id });
      const signed = signOwnerMessage(owner.secretKey, {
        type: 'enroll',
        connectionId,
        shareholderId: sh.id,
        issuedAt: Date.now(),
        envelopeSha256: createHash('sha256').update(envelope).digest('hex'),
        policy: devPcrPolicy(stack.pcr0),
        maxReleasesPerMinute: 600,
      });
      const res = await fetch(`${sh.url}/v1/shares`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ envelope: Buffer.from(envelope).toString('base64'), signed }),
      });
      if (res.status !== 201) throw new Error(`enroll at ${sh.id} failed: ${res.status} ${await res.text()}`);
    }),
  );
  const sealedRecord = Buffer.from(record).toString('base64');
  const res = await fetch(`${stack.hostUrl}/admin/v1/connections`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${options.adminToken ?? stack.adminToken}` },
    body: JSON.stringify({
      id: connectionId,
      provider,
      origin: binding.origin,
      authScheme: binding.authScheme,
      sealedRecord,
      threshold: stack.threshold,
      shareholders: stack.shareholders.map((s) => s.id),
      ...(options.projectId ? { projectId: options.projectId } : {}),
    }),
  });
  if (res.status !== 201) throw new Error(`connection registration failed: ${await res.text()}`);
  const key = await createKey(stack.hostUrl, options.adminToken ?? stack.adminToken, connectionId);
  return { connectionId, key: key.key, keyId: key.id, binding, sealedRecord, secrets };
}

/** The admin API of a stack's host, as its operator (the stack's admin token). */
export function adminApi(stack: Stack, token = stack.adminToken) {
  return async function admin<T = Record<string, unknown>>(method: string, path: string, body?: unknown): Promise<{ status: number; json: T }> {
    const res = await fetch(`${stack.hostUrl}/admin/v1${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    return { status: res.status, json: (await res.json()) as T };
  };
}

/**
 * Connects `provider` the way the CLI does (sealed on this side, split to the stack's
 * shareholders) with `origin` (default: the stack's mock upstream) as its pinned origin.
 */
export async function connectTestProvider(
  stack: Stack,
  provider: string,
  options: { apiKey?: string; origin?: string; authScheme?: string; allowRules?: string[]; connectionPolicy?: ConnectionPolicyInput } = {},
): Promise<string> {
  const conn = await connectProvider({
    serverUrl: stack.hostUrl,
    adminToken: stack.adminToken,
    ownerSecretKey: generateOwnerKeyPair().secretKey,
    shareholders: stack.shareholders.map(({ id, url, publicKey }) => ({ id, url, publicKey })),
    threshold: 3,
    provider,
    baseUrl: options.origin ?? stack.mock!.origin,
    apiKey: new TextEncoder().encode(options.apiKey ?? stack.demo!.upstreamKey),
    pcrPolicy: devPcrPolicy(stack.pcr0),
    dev: true,
    ...(options.authScheme ? { authScheme: options.authScheme } : {}),
    ...(options.allowRules ? { allowRules: options.allowRules } : {}),
    ...(options.connectionPolicy ? { connectionPolicy: options.connectionPolicy } : {}),
  });
  return conn.id;
}

/**
 * A loopback upstream that streams an Anthropic answer — `message_start` (input 10, output 1, as
 * Anthropic reports it), then `deltas` one-token text deltas — and sends the final usage
 * (`message_delta` with `output_tokens: deltas`, then `message_stop`) `finalAfterMs` later, or
 * never (`undefined`: it stalls and ends after 20 s), as at the end of a long generation. What a
 * client or host that hangs up before `message_delta` must not get counted as input + 1 tokens.
 */
export async function startAnthropicStreamUpstream(deltas: number, finalAfterMs?: number): Promise<{ origin: string; close(): void }> {
  const server = createHttpServer((req, res) => {
    req.resume();
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      const ev = (event: string, payload: object) => res.write(`event: ${event}\ndata: ${JSON.stringify({ type: event, ...payload })}\n\n`);
      ev('message_start', {
        message: { id: 'msg_1', type: 'message', role: 'assistant', content: [], model: 'claude-sonnet-4-5', stop_reason: null, stop_sequence: null, usage: { input_tokens: 10, output_tokens: 1 } },
      });
      ev('content_block_start', { index: 0, content_block: { type: 'text', text: '' } });
      for (let i = 0; i < deltas; i++) ev('content_block_delta', { index: 0, delta: { type: 'text_delta', text: ' tok' } });
      ev('content_block_stop', { index: 0 });
      const timer =
        finalAfterMs === undefined
          ? setTimeout(() => res.end(), 20_000)
          : setTimeout(() => {
              ev('message_delta', { delta: { stop_reason: 'end_turn', stop_sequence: null }, usage: { output_tokens: deltas } });
              ev('message_stop', {});
              res.end();
            }, finalAfterMs);
      res.on('close', () => clearTimeout(timer));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    origin: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close() {
      server.closeAllConnections();
      server.close();
    },
  };
}

/**
 * A client that streams an Anthropic message through the host at `hostUrl` with `key`, reads
 * until the generated text has arrived (`content_block_stop`), then hangs up before the final
 * usage. Returns the status and what it read: the streamed text, or the refusal's body.
 */
export async function readAnthropicStreamAndHangUp(hostUrl: string, key: string, maxTokens: number): Promise<{ status: number; text: string }> {
  const ac = new AbortController();
  const res = await fetch(`${hostUrl}/v1/messages`, {
    method: 'POST',
    signal: ac.signal,
    headers: { 'x-api-key': key, 'content-type': 'application/json', 'anthropic-version': '2023-06-01' },
    body: JSON.stringify({ model: 'claude-sonnet-4-5', max_tokens: maxTokens, stream: true, messages: [{ role: 'user', content: 'hi' }] }),
  });
  if (res.status !== 200) return { status: res.status, text: await res.text() };
  const reader = res.body!.getReader();
  let text = '';
  while (!text.includes('content_block_stop')) {
    const { value, done } = await reader.read();
    if (done) break;
    text += Buffer.from(value).toString();
  }
  ac.abort();
  await reader.cancel().catch(() => undefined);
  return { status: res.status, text };
}
