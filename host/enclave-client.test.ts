import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Pool } from 'undici';
import { RPC_FORWARD_PREFIX } from '../protocol/index.ts';
import { enclaveAnomalies, enclaveAttestation, enclaveEvict, enclaveHealth, enclaveMetricsText, EnclaveUnreachableError, forwardToEnclave } from './enclave-client.ts';

/** A stand-in enclave that records the paths it was asked for. */
const seen: string[] = [];
const server = createServer((req: IncomingMessage, res) => {
  seen.push(`${req.method} ${req.url}`);
  const json = (status: number, body: unknown) => res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
  if (req.url === '/healthz') return json(503, { phase: 'provisioning' });
  if (req.url === '/metrics') return void res.writeHead(200).end('securegate_enclave_up 1\n');
  if (req.url?.startsWith('/anomalies')) return json(200, { anomalies: [{ seq: 7, at: 1, shareholder: 'sh1', connectionId: 'conn_x' }] });
  if (req.url?.startsWith('/attestation')) return json(200, { document: 'ZG9j', nsm: 'dev' });
  if (req.url === `${RPC_FORWARD_PREFIX}/stream`) {
    // Three events a few milliseconds apart, then the end; `/hang` sends one and never ends.
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    let n = 0;
    const timer = setInterval(() => {
      res.write(`data: ${n}\n\n`);
      if (++n === 3) {
        clearInterval(timer);
        res.end();
      }
    }, 5);
    return;
  }
  if (req.url === `${RPC_FORWARD_PREFIX}/hang`) return void res.writeHead(200, { 'content-type': 'text/event-stream' }).write('data: 0\n\n');
  if (req.url === `${RPC_FORWARD_PREFIX}/never`) return;
  if (req.url?.startsWith(`${RPC_FORWARD_PREFIX}/`)) return json(200, { forwarded: req.url.slice(RPC_FORWARD_PREFIX.length) });
  if (req.method === 'POST' && req.url === '/evict') {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      const { connectionId } = JSON.parse(body) as { connectionId: string };
      if (connectionId === 'conn_refused') json(400, { error: { code: 'bad_request' } });
      else json(200, { evicted: connectionId });
    });
    return;
  }
  json(404, {});
});
let pool: Pool;

beforeAll(async () => {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  pool = new Pool(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
});
afterAll(async () => {
  await pool.close();
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

describe('enclave client', () => {
  it('reports the enclave phase with its status code', async () => {
    expect(await enclaveHealth(pool, 2_000)).toEqual({ statusCode: 503, phase: 'provisioning' });
  });

  it('reads the enclave metrics text', async () => {
    expect(await enclaveMetricsText(pool, 2_000)).toBe('securegate_enclave_up 1\n');
  });

  it('asks for anomalies after a sequence number', async () => {
    expect(await enclaveAnomalies(pool, 6, 2_000)).toEqual([{ seq: 7, at: 1, shareholder: 'sh1', connectionId: 'conn_x' }]);
    expect(seen).toContain('GET /anomalies?after=6');
  });

  it('asks for an attestation over the nonce, or none', async () => {
    expect(await enclaveAttestation(pool, 'abcd')).toEqual({ statusCode: 200, document: 'ZG9j', nsm: 'dev' });
    await enclaveAttestation(pool, '');
    expect(seen).toContain('GET /attestation?nonce=abcd');
    expect(seen).toContain('GET /attestation');
  });

  it('forwards a request under the RPC forward prefix with its path and query unchanged', async () => {
    const res = await forwardToEnclave(pool, '/v1/chat/completions?x=1', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' }).answer;
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toBe('application/json');
    expect(JSON.parse((await res.whole()).toString())).toEqual({ forwarded: '/v1/chat/completions?x=1' });
  });

  it('keeps what arrived before the caller chose how to take the body', async () => {
    const res = await forwardToEnclave(pool, '/stream', { method: 'GET' }).answer;
    await new Promise((r) => setTimeout(r, 30));
    expect((await res.whole()).toString()).toBe('data: 0\n\ndata: 1\n\ndata: 2\n\n');
  });

  it('streams a body chunk by chunk into a sink, the enclave paused while the sink is full', async () => {
    const res = await forwardToEnclave(pool, '/stream', { method: 'GET' }).answer;
    const got: string[] = [];
    const ended = new Promise<void>((resolve, reject) => {
      res.stream({
        data(chunk) {
          got.push(chunk.toString());
          if (got.length === 1) {
            res.pause();
            setTimeout(() => res.resume(), 40);
          }
        },
        end: resolve,
        error: reject,
      });
    });
    await ended;
    expect(got.join('')).toBe('data: 0\n\ndata: 1\n\ndata: 2\n\n');
  });

  it('cancels a call before its answer and while it streams, with the reason an aborted signal gives', async () => {
    const waiting = forwardToEnclave(pool, '/never', { method: 'GET' });
    setTimeout(() => waiting.abort(), 20);
    await expect(waiting.answer).rejects.toMatchObject({ name: 'AbortError', message: 'This operation was aborted' });
    const streaming = forwardToEnclave(pool, '/hang', { method: 'GET' });
    const res = await streaming.answer;
    const broken = new Promise<Error>((resolve) => res.stream({ data: () => streaming.abort(), end: () => resolve(new Error('ended')), error: resolve }));
    expect(await broken).toMatchObject({ name: 'AbortError' });
    expect(streaming.aborted).toBe(true);
  });

  it('discards the rest of a body it no longer wants', async () => {
    const res = await forwardToEnclave(pool, '/stream', { method: 'GET' }).answer;
    await res.discard();
    expect(JSON.parse((await forwardToEnclave(pool, '/x', { method: 'GET' }).answer.then((r) => r.whole())).toString())).toEqual({ forwarded: '/x' });
  });

  it('asks the enclave to drop a connection\'s data key, and says whether it confirmed', async () => {
    expect(await enclaveEvict(pool, 'conn_a', 2_000)).toBe(true);
    expect(seen).toContain('POST /evict');
    expect(await enclaveEvict(pool, 'conn_refused', 2_000)).toBe(false);
    const nowhere = new Pool('http://127.0.0.1:1');
    expect(await enclaveEvict(nowhere, 'conn_a', 2_000)).toBe(false);
    await nowhere.close();
  });

  it('tells an unreachable enclave apart from a bad answer when attesting', async () => {
    const nowhere = new Pool('http://127.0.0.1:1');
    await expect(enclaveAttestation(nowhere, '')).rejects.toBeInstanceOf(EnclaveUnreachableError);
    await nowhere.close();
  });
});
