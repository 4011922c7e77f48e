/**
 * The request-body bound against a real listener, with raw TCP clients that stall, trickle, or
 * send steadily; and a handler that stops reading (back-pressure), which must not count against
 * the client. Windows are short (300 ms) so the tests run fast; the rule does not depend on them.
 */
import { connect, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { once } from 'node:events';
import Fastify, { type FastifyInstance } from 'fastify';
import type { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { registerBodyTimeout } from './body-timeout.ts';

const WINDOW_MS = 300;
let app: FastifyInstance;
let port: number;
let releaseReading: () => void = () => {};

beforeAll(async () => {
  app = Fastify();
  registerBodyTimeout(app, { windowMs: WINDOW_MS, minBytesPerSecond: 1_000 });
  // Streamed like the proxy streams to the enclave: the body is never parsed here.
  app.addContentTypeParser('application/octet-stream', (_req, payload, done) => done(null, payload));
  app.post('/stream', async (req) => {
    let bytes = 0;
    for await (const chunk of req.body as Readable) bytes += (chunk as Buffer).length;
    return { bytes };
  });
  app.post('/stream-later', async (req) => {
    await new Promise<void>((r) => (releaseReading = r));
    let bytes = 0;
    for await (const chunk of req.body as Readable) bytes += (chunk as Buffer).length;
    return { bytes };
  });
  app.post('/v1/chat/completions', async (req) => ({ got: req.body }));
  app.post('/refuse', async (_req, reply) => reply.code(401).send({ refused: true }));
  await app.listen({ port: 0, host: '127.0.0.1' });
  port = (app.server.address() as AddressInfo).port;
});
afterAll(() => app?.close());

interface RawClient {
  socket: Socket;
  /** Everything received until the server closed the connection. */
  closed: Promise<string>;
  /** Everything received once a whole JSON answer arrived (or the connection closed first). */
  answered: Promise<string>;
}

async function open(path: string, length: number, contentType = 'application/octet-stream'): Promise<RawClient> {
  const socket = connect(port, '127.0.0.1');
  await once(socket, 'connect');
  let data = '';
  let answered!: (text: string) => void;
  const answer = new Promise<string>((r) => (answered = r));
  socket.on('data', (c: Buffer) => {
    data += c.toString('latin1');
    if (data.includes('\r\n\r\n') && data.endsWith('}')) answered(data);
  });
  socket.on('error', () => undefined);
  // Not events.once: it would reject on an 'error' (a reset) before 'close'.
  const closed = new Promise<void>((r) => socket.once('close', () => r())).then(() => (answered(data), data));
  socket.write(`POST ${path} HTTP/1.1\r\nhost: localhost\r\ncontent-type: ${contentType}\r\ncontent-length: ${length}\r\n\r\n`);
  return { socket, closed, answered: answer };
}

const status = (answer: string) => Number(/^HTTP\/1\.1 (\d{3})/.exec(answer)?.[1]);
const body = (answer: string) => answer.slice(answer.indexOf('\r\n\r\n') + 4);

describe('request body timeout', () => {
  it('answers 408 and closes the connection when a client sends headers and then stalls', async () => {
    const client = await open('/stream', 100);
    const answer = await client.closed;
    expect(status(answer)).toBe(408);
    expect(answer.toLowerCase()).toContain('connection: close');
  });

  it('answers 408 in the provider\'s error shape when a JSON body stalls midway', async () => {
    const client = await open('/v1/chat/completions', 1_000, 'application/json');
    client.socket.write('{"model":');
    const answer = await client.closed;
    expect(status(answer)).toBe(408);
    expect(JSON.parse(body(answer)).error.code).toBe('request_timeout');
  });

  it('answers 408 to a client that trickles its body below the minimum rate', async () => {
    const client = await open('/stream', 100_000);
    const trickle = setInterval(() => client.socket.write('x'), 20);
    try {
      expect(status(await client.closed)).toBe(408);
    } finally {
      clearInterval(trickle);
    }
  });

  it('lets a slow client that keeps above the minimum rate finish', async () => {
    // 1 000 bytes every 20 ms for ~1 s: over three windows, each far above the 300 bytes required.
    const total = 50_000;
    const client = await open('/stream', total);
    let sent = 0;
    const steady = setInterval(() => {
      client.socket.write(Buffer.alloc(1_000, 0x61));
      sent += 1_000;
      if (sent >= total) clearInterval(steady);
    }, 20);
    const answer = await client.answered;
    client.socket.destroy();
    expect(status(answer)).toBe(200);
    expect(JSON.parse(body(answer))).toEqual({ bytes: total });
  });

  it('does not hold the host\'s own back-pressure against the client', async () => {
    const total = 16 * 1024 * 1024;
    const client = await open('/stream-later', total);
    client.socket.write(Buffer.alloc(total, 0x62));
    // The handler reads nothing for five windows; the socket fills up and is paused.
    await new Promise((r) => setTimeout(r, WINDOW_MS * 5));
    releaseReading();
    const answer = await client.answered;
    client.socket.destroy();
    expect(status(answer)).toBe(200);
    expect(JSON.parse(body(answer))).toEqual({ bytes: total });
  });

  it('closes the connection of a client that stalls its body after it was already answered', async () => {
    const client = await open('/refuse', 10_000);
    client.socket.write('partial');
    const answer = await client.closed;
    expect(status(answer)).toBe(401);
  });
});

describe('request body timeout when the host itself is busy', () => {
  let busy: FastifyInstance;
  beforeAll(async () => {
    busy = Fastify();
    // One byte per one-second window is enough here: only the host's own stall is being tested.
    registerBodyTimeout(busy, { windowMs: 1_000, minBytesPerSecond: 0 });
    busy.addContentTypeParser('application/octet-stream', (_req, payload, done) => done(null, payload));
    busy.post('/stream', async (req) => {
      let bytes = 0;
      for await (const chunk of req.body as Readable) bytes += (chunk as Buffer).length;
      return { bytes };
    });
    await busy.listen({ port: 0, host: '127.0.0.1' });
  });
  afterAll(() => busy?.close());

  it('does not hold time its own blocked event loop spent against the client', async () => {
    const socket = connect((busy.server.address() as AddressInfo).port, '127.0.0.1');
    await once(socket, 'connect');
    let data = '';
    socket.on('data', (c: Buffer) => (data += c.toString('latin1')));
    const closed = once(socket, 'close');
    socket.write('POST /stream HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/octet-stream\r\ncontent-length: 2\r\nconnection: close\r\n\r\n');
    await new Promise((r) => setTimeout(r, 100));
    socket.write('x');
    // Past one window boundary (which the first byte satisfies), then the host blocks for three windows.
    await new Promise((r) => setTimeout(r, 1_300));
    // Blocked in the check phase, so the next loop iteration runs timers (the watch) before it reads
    // the socket again — as when the host is busy handling other I/O.
    await new Promise<void>((resolve) =>
      setImmediate(() => {
        const until = performance.now() + 3_000;
        while (performance.now() < until) {
          // busy: neither the host nor this client runs
        }
        socket.write('y');
        resolve();
      }),
    );
    await closed;
    expect(status(data)).toBe(200);
    expect(JSON.parse(body(data))).toEqual({ bytes: 2 });
  });
});
