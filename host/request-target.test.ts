/**
 * Request targets that could reach another route. The table is the pure rule; the listener tests
 * send the bytes over a raw TCP socket (Node's and undici's clients normalise paths, which would
 * hide exactly what is being tested). Targets follow RFC 9112 §3.2 and the path-confusion classes
 * of LiteLLM's 2026 advisories and OWASP's path traversal cheat sheet.
 */
import { connect } from 'node:net';
import type { AddressInfo } from 'node:net';
import Fastify, { type FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HostError } from './errors.ts';
import { registerRequestTargetGuard, requestTargetProblem } from './request-target.ts';

describe('request target rule', () => {
  it('accepts plain paths, ordinary escapes and percent-encoded query values', () => {
    for (const target of [
      '/', '/v1/chat/completions', '/v1/models/gpt-4.1', '/v1beta/models/gemini-1.5-pro:generateContent', '/v1/files/file-abc/content',
      '/admin/v1/audit?after=2024-01-01T00%3A00&keyId=key_1', '/v1/x%20y', '/v1/%E2%82%AC', '/dashboard/', '/dashboard/assets/index-3f9.js',
      '/v1/x?q=100%25', '/v1/x?a=%2e%2e%2f', '/v1/...', '/v1/.well',
    ]) {
      expect(requestTargetProblem(target), target).toBeUndefined();
    }
  });

  it('refuses each way of reaching another route', () => {
    const cases: Array<[string, string]> = [
      ['http://x/admin/v1/keys', 'not_origin_form'],
      ['HTTP://127.0.0.1:8080/v1/models', 'not_origin_form'],
      ['x.example:443', 'not_origin_form'],
      ['*', 'not_origin_form'],
      ['//admin/v1/keys', 'not_origin_form'],
      ['/v1/models#frag', 'not_origin_form'],
      ['/v1/../admin/v1/keys', 'dot_segment'],
      ['/v1/./models', 'dot_segment'],
      ['/v1/models/..', 'dot_segment'],
      ['/v1/%2e%2e/admin/v1/keys', 'encoded_dot'],
      ['/v1/%2E./admin/v1/keys', 'encoded_dot'],
      ['/v1/.%2e/admin', 'encoded_dot'],
      ['/v1%2f..%2fadmin/v1/keys', 'encoded_separator'],
      ['/v1/files/x%2F..%2F..%2Fadmin', 'encoded_separator'],
      ['/v1/files/x%5cadmin', 'encoded_separator'],
      ['/v1\\..\\admin/v1/keys', 'backslash'],
      ['/v1/%252e%252e/admin', 'double_encoding'],
      ['/v1/%25', 'double_encoding'],
      ['/v1/models%00.json', 'nul'],
      ['/v1/models?x=%00', 'nul'],
      ['/v1/%zz', 'bad_escape'],
      ['/v1/%4', 'bad_escape'],
      ['/v1/%c0%ae%c0%ae/admin', 'bad_escape'],
      ['/v1/\u0001', 'control_character'],
    ];
    for (const [target, problem] of cases) expect(requestTargetProblem(target), target).toBe(problem);
  });
});

/** Sends `raw` over a fresh TCP connection and resolves with the status code of the answer. */
function rawStatus(port: number, requestLine: string, headers = 'host: localhost\r\n'): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    let data = '';
    socket.on('data', (c: Buffer) => (data += c.toString('latin1')));
    socket.on('error', reject);
    socket.on('close', () => {
      const m = /^HTTP\/1\.1 (\d{3})/.exec(data);
      if (!m) return reject(new Error(`no HTTP answer to ${requestLine}: ${JSON.stringify(data.slice(0, 200))}`));
      resolve({ status: Number(m[1]), body: data.slice(data.indexOf('\r\n\r\n') + 4) });
    });
    socket.write(`${requestLine}\r\n${headers}connection: close\r\n\r\n`);
  });
}

describe('request target guard on a real listener', () => {
  let app: FastifyInstance;
  let port: number;
  const reached: string[] = [];
  beforeAll(async () => {
    app = Fastify();
    app.setErrorHandler((e, _req, reply) => reply.status(e instanceof HostError ? e.status : 500).send({ code: e instanceof HostError ? e.code : 'other' }));
    registerRequestTargetGuard(app);
    await app.register(async (admin) => {
      admin.get('/keys', async () => (reached.push('admin'), { admin: true }));
    }, { prefix: '/admin/v1' });
    app.get('/v1/*', async (req) => (reached.push(`proxy ${req.url}`), { proxy: true }));
    app.get('/admin/v1/audit', async (req) => (reached.push('audit'), { query: req.query }));
    await app.listen({ port: 0, host: '127.0.0.1' });
    port = (app.server.address() as AddressInfo).port;
  });
  afterAll(() => app?.close());

  it('refuses an absolute-form target naming the admin API before any route runs', async () => {
    reached.length = 0;
    const res = await rawStatus(port, 'GET http://x/admin/v1/keys HTTP/1.1');
    expect(res.status).toBe(400);
    expect(JSON.parse(res.body)).toEqual({ code: 'invalid_request' });
    expect(reached).toEqual([]);
  });

  it('refuses encoded and dotted paths on every route, including ones that match no route', async () => {
    reached.length = 0;
    for (const target of ['/v1/%2e%2e/admin/v1/keys', '/v1/..%2fadmin/v1/keys', '/v1/../admin/v1/keys', '/admin/v1/%6beys/..', '/v1/x%5c..%5cadmin', '/v1/%252e%252e/admin', '/nowhere/%2e%2e', '/v1/a%00b']) {
      expect((await rawStatus(port, `GET ${target} HTTP/1.1`)).status, target).toBe(400);
    }
    expect(reached).toEqual([]);
  });

  it('refuses the asterisk-form target', async () => {
    expect((await rawStatus(port, 'OPTIONS * HTTP/1.1')).status).toBe(400);
  });

  it('still serves plain paths, with percent-encoded query values', async () => {
    reached.length = 0;
    expect((await rawStatus(port, 'GET /admin/v1/keys HTTP/1.1')).status).toBe(200);
    const audit = await rawStatus(port, 'GET /admin/v1/audit?after=2024-01-01T00%3A00 HTTP/1.1');
    expect(audit.status).toBe(200);
    expect(JSON.parse(audit.body)).toEqual({ query: { after: '2024-01-01T00:00' } });
    expect((await rawStatus(port, 'GET /v1/models/gpt-4.1 HTTP/1.1')).status).toBe(200);
    expect(reached).toEqual(['admin', 'audit', 'proxy /v1/models/gpt-4.1']);
  });

  it('routes by the path alone, whatever the Host header names', async () => {
    reached.length = 0;
    expect((await rawStatus(port, 'GET /v1/models HTTP/1.1', 'host: admin\r\n')).status).toBe(200);
    expect(reached).toEqual(['proxy /v1/models']);
  });
});
