/**
 * A bound on how long a client may take to send a request body. A client that sends complete
 * headers and then stalls or trickles its body would otherwise hold a connection, a handler and
 * (on the proxy path) an enclave request for as long as it likes. In every window of `windowMs`
 * during which the host is waiting for body bytes, the body must advance by at least
 * `minBytesPerSecond × windowMs` bytes (and at least one byte); otherwise the client gets 408 and
 * the connection is closed.
 *
 * Progress is read from the socket's byte counter, never from the body itself: the body is
 * streamed by whoever handles the request (the proxy pipes it to the enclave) and this module must
 * not consume or buffer it. Time during which the host is not reading — data already waiting in
 * the request's buffer, or the socket paused for back-pressure from a slow enclave — is not held
 * against the client: the window starts again. Nor is time the host's event loop spent busy.
 *
 * One shared timer serves every watched request, and runs only while one is being watched.
 */
import type { Socket } from 'node:net';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { errorBody, errorShapeForPath } from './errors.ts';

export interface BodyTimeoutOptions {
  /** Length of one window of waiting (default 30 s). */
  windowMs?: number;
  /** Minimum body rate over a window, in bytes per second (default 512; 0: only "some progress"). */
  minBytesPerSecond?: number;
}

interface Watched {
  req: FastifyRequest;
  reply: FastifyReply;
  socket: Socket;
  /** Time spent waiting for the client in the current window. */
  waitedMs: number;
  lastTick: number;
  bytesAtWindowStart: number;
}

function hasBody(req: FastifyRequest): boolean {
  const length = req.headers['content-length'];
  return req.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0');
}

/** Adds the body-progress watch to every route of `app` (an `onRequest` hook; reads no body). */
export function registerBodyTimeout(app: FastifyInstance, options: BodyTimeoutOptions = {}): void {
  const windowMs = options.windowMs ?? 30_000;
  const required = Math.max(1, Math.floor(((options.minBytesPerSecond ?? 512) * windowMs) / 1000));
  const tickMs = Math.max(10, Math.min(1_000, Math.floor(windowMs / 4)));
  const watched = new Set<Watched>();
  let timer: NodeJS.Timeout | undefined;

  const expire = (w: Watched) => {
    const { req, reply, socket } = w;
    req.log.info({ path: req.url.split('?')[0], windowMs, required }, 'request body too slow; closing the connection');
    if (reply.sent || reply.raw.headersSent) {
      socket.destroy();
      return;
    }
    // After the answer the connection is half-closed (so the client reads the 408 instead of a
    // reset), then destroyed, which also ends the handler's read of the body (the stream errors).
    const close = () => {
      socket.end();
      setTimeout(() => socket.destroy(), 1_000).unref();
    };
    reply.raw.once('finish', close);
    reply.raw.once('close', close);
    void reply
      .code(408)
      .header('connection', 'close')
      .header('x-sg-code', 'request_timeout')
      .type('application/json')
      .send(errorBody(errorShapeForPath(req.url.split('?')[0]!), 'request_timeout', 'invalid_request_error', 'the request body did not arrive in time'));
  };

  const tick = () => {
    const now = performance.now();
    for (const w of watched) {
      const raw = w.req.raw;
      if (raw.complete || w.socket.destroyed) {
        watched.delete(w);
        continue;
      }
      // A tick that came late means the host's own event loop was busy (not reading either): at
      // most two ticks' worth of time is held against the client.
      const elapsed = Math.min(now - w.lastTick, 2 * tickMs);
      w.lastTick = now;
      // The host is not reading (buffered data, or back-pressure): not the client's fault.
      if (raw.readableLength > 0 || w.socket.isPaused()) {
        w.waitedMs = 0;
        w.bytesAtWindowStart = w.socket.bytesRead;
        continue;
      }
      w.waitedMs += elapsed;
      if (w.waitedMs < windowMs) continue;
      if (w.socket.bytesRead - w.bytesAtWindowStart < required) {
        watched.delete(w);
        expire(w);
        continue;
      }
      w.waitedMs = 0;
      w.bytesAtWindowStart = w.socket.bytesRead;
    }
    if (watched.size === 0) {
      clearInterval(timer);
      timer = undefined;
    }
  };

  app.addHook('onRequest', async (req, reply) => {
    if (req.raw.complete || !hasBody(req)) return;
    const socket = req.raw.socket;
    watched.add({ req, reply, socket, waitedMs: 0, lastTick: performance.now(), bytesAtWindowStart: socket.bytesRead });
    if (!timer) {
      timer = setInterval(tick, tickMs);
      timer.unref();
    }
  });
  app.addHook('onClose', async () => {
    clearInterval(timer);
    watched.clear();
  });
}
