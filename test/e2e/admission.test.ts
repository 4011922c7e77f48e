/**
 * Fail-closed admission (issue 16), tried as an attacker holding a stolen, model-locked, capped
 * key would: each opening the issue lists, through the real stack, against a mock upstream that
 * records every request. A refused request must never reach the upstream; an admitted one must
 * reach it with exactly what was checked.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminApi, connectTestProvider, eventually, startTestStack } from './helpers.ts';

let stack: Awaited<ReturnType<typeof startTestStack>>;
const IP = '81.2.69.142';

beforeAll(async () => {
  stack = await startTestStack({ hostArgs: ['--trusted-proxy', 'loopback', '--velocity-floor', '100000000'] });
});
afterAll(async () => {
  await stack?.cleanup();
});

const admin = <T = Record<string, unknown>>(method: string, path: string, body?: unknown) => adminApi(stack)<T>(method, path, body);

async function newKey(options: Record<string, unknown> = {}, connectionId = stack.demo!.connectionId): Promise<{ id: string; key: string }> {
  const r = await admin<{ id: string; key: string }>('POST', '/keys', { connectionId, ...options });
  expect(r.status).toBe(201);
  return r.json;
}

interface Sent {
  status: number;
  code: string | undefined;
  retry: string | null;
  body: Record<string, unknown>;
  /** Requests the upstream received while this one ran. */
  upstream: typeof stack.mock extends undefined ? never : NonNullable<typeof stack.mock>['requests'];
}

async function send(key: string, method: string, path: string, init: { headers?: Record<string, string>; body?: string | Buffer; ip?: string } = {}): Promise<Sent> {
  const before = stack.mock!.requests.length;
  const res = await fetch(`${stack.hostUrl}${path}`, {
    method,
    headers: { authorization: `Bearer ${key}`, 'x-forwarded-for': init.ip ?? IP, ...init.headers },
    ...(init.body !== undefined ? { body: typeof init.body === 'string' ? init.body : new Uint8Array(init.body) } : {}),
  });
  const text = await res.text();
  let body: Record<string, unknown> = {};
  try {
    body = JSON.parse(text) as Record<string, unknown>;
  } catch {
    body = {};
  }
  const error = body.error as { code?: string } | undefined;
  return { status: res.status, code: error?.code, retry: res.headers.get('x-should-retry'), body, upstream: stack.mock!.requests.slice(before) };
}

const connect = (provider: string, apiKey?: string) => connectTestProvider(stack, provider, apiKey ? { apiKey } : {});

const chatBody = (model: string, extra: Record<string, unknown> = {}) => JSON.stringify({ model, messages: [{ role: 'user', content: 'hi' }], ...extra });

function multipart(boundary: string, parts: Array<{ disposition: string; value: string | Buffer; type?: string }>): Buffer {
  const chunks: Buffer[] = [];
  for (const p of parts) {
    chunks.push(Buffer.from(`--${boundary}\r\nContent-Disposition: ${p.disposition}\r\n${p.type ? `Content-Type: ${p.type}\r\n` : ''}\r\n`));
    chunks.push(Buffer.isBuffer(p.value) ? p.value : Buffer.from(p.value));
    chunks.push(Buffer.from('\r\n'));
  }
  chunks.push(Buffer.from(`--${boundary}--\r\n`));
  return Buffer.concat(chunks);
}

describe('the model lock holds whatever the request looks like', () => {
  let key: string;
  beforeAll(async () => {
    ({ key } = await newKey({ models: ['gpt-4o-mini'] }));
  });

  it('records what a refused request called and the model it named in its audit row', async () => {
    const { key: k, id } = await newKey({ models: ['gpt-4o-mini'] });
    const r = await send(k, 'POST', '/v1/chat/completions?x=secret', { headers: { 'content-type': 'application/json' }, body: chatBody('gpt-4o') });
    expect(r.code).toBe('model_not_allowed');
    const row = await eventually(async () => {
      const audit = (await admin<{ items: Array<{ code: string | null; endpoint: string | null; modelRequested: string | null }> }>('GET', `/audit?keyId=${id}`)).json;
      return audit.items.find((i) => i.code === 'model_not_allowed');
    });
    expect(row).toMatchObject({ endpoint: 'POST /v1/chat/completions', modelRequested: 'gpt-4o' });
  });

  it('checks the model of a JSON body whatever the media type spelling', async () => {
    for (const type of ['Application/JSON', 'application/json; charset=UTF-8', 'application/vnd.api+json', 'APPLICATION/JSON;charset="utf-8"']) {
      const r = await send(key, 'POST', '/v1/chat/completions', { headers: { 'content-type': type }, body: chatBody('gpt-4o') });
      expect(r.status, type).toBe(403);
      expect(r.code).toBe('model_not_allowed');
      expect(r.retry).toBe('false');
      expect(r.upstream).toHaveLength(0);
    }
  });

  it('refuses a JSON endpoint body sent as text/plain, form data or with no Content-Type', async () => {
    for (const headers of [{ 'content-type': 'text/plain' }, { 'content-type': 'application/x-www-form-urlencoded' }, {}] as Array<Record<string, string>>) {
      const r = await send(key, 'POST', '/v1/chat/completions', { headers, body: chatBody('gpt-4o') });
      expect(r.status).toBe(415);
      expect(r.code).toBe('unsupported_media_type');
      expect(r.upstream).toHaveLength(0);
    }
  });

  it('refuses a duplicated model key, whichever one the upstream would read', async () => {
    const body = '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}],"model":"gpt-4o"}';
    const r = await send(key, 'POST', '/v1/chat/completions', { headers: { 'content-type': 'application/json' }, body });
    expect(r.status).toBe(400);
    expect(r.upstream).toHaveLength(0);
  });

  it('refuses a request that names no model on a model-locked key', async () => {
    const r = await send(key, 'POST', '/v1/chat/completions', { headers: { 'content-type': 'application/json' }, body: JSON.stringify({ messages: [] }) });
    expect(r.code).toBe('model_not_allowed');
    expect(r.upstream).toHaveLength(0);
  });

  it('refuses a second or oddly quoted multipart model field', async () => {
    const boundary = `b${randomBytes(8).toString('hex')}`;
    const audio = { disposition: 'form-data; name="file"; filename="a.wav"', value: randomBytes(64), type: 'audio/wav' };
    const twice = multipart(boundary, [audio, { disposition: 'form-data; name="model"', value: 'gpt-4o-mini' }, { disposition: 'form-data; name="model"', value: 'whisper-1' }]);
    const unquoted = multipart(boundary, [audio, { disposition: 'form-data; name=model', value: 'whisper-1' }]);
    for (const body of [twice, unquoted]) {
      const r = await send(key, 'POST', '/v1/audio/transcriptions', { headers: { 'content-type': `multipart/form-data; boundary=${boundary}` }, body });
      expect(r.status).toBeGreaterThanOrEqual(400);
      expect(r.status).toBeLessThan(500);
      expect(r.upstream).toHaveLength(0);
    }
  });

  it('admits the allowed model and forwards exactly what it checked', async () => {
    const body = chatBody('gpt-4o-mini');
    const r = await send(key, 'POST', '/v1/chat/completions', { headers: { 'content-type': 'Application/JSON' }, body });
    expect(r.status).toBe(200);
    expect(r.upstream).toHaveLength(1);
    expect(r.upstream[0]!.bodyBytes).toBe(Buffer.byteLength(body));
  });
});

describe('models named in the path are checked', () => {
  it('refuses a Gemini native generateContent for a model outside the allow-list', async () => {
    const connectionId = await connect('gemini-native');
    const { key } = await newKey({ models: ['gemini-2.0-flash'], confirmUnknown: true }, connectionId);
    const body = JSON.stringify({ contents: [{ parts: [{ text: 'hi' }] }] });
    const refused = await send(key, 'POST', '/v1beta/models/gemini-2.5-pro:generateContent', { headers: { 'content-type': 'application/json' }, body });
    expect(refused.code).toBe('model_not_allowed');
    expect(refused.upstream).toHaveLength(0);
    const admitted = await send(key, 'POST', '/v1beta/models/gemini-2.0-flash:generateContent', { headers: { 'content-type': 'application/json' }, body });
    expect(admitted.upstream).toHaveLength(1);
  });

  it('refuses an Azure deployment outside the allow-list', async () => {
    const connectionId = await connect('azure');
    const { key } = await newKey({ models: ['prod-mini'], confirmUnknown: true }, connectionId);
    const refused = await send(key, 'POST', '/openai/deployments/prod-gpt5/chat/completions?api-version=2024-10-21', {
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ messages: [{ role: 'user', content: 'hi' }] }),
    });
    expect(refused.code).toBe('model_not_allowed');
    expect(refused.upstream).toHaveLength(0);
  });
});

describe('scopes: a stolen inference key reaches only inference', () => {
  it('refuses files, stored completions, batches, fine-tuning and model deletion by default', async () => {
    const { key } = await newKey({ models: ['gpt-4o-mini'] });
    const attempts: Array<[string, string, string | undefined]> = [
      ['GET', '/v1/files', undefined],
      ['GET', '/v1/files/file-abc/content', undefined],
      ['DELETE', '/v1/files/file-abc', undefined],
      ['DELETE', '/v1/models/ft:gpt-4o-mini:acme:x:1', undefined],
      ['GET', '/v1/chat/completions', undefined],
      ['POST', '/v1/batches', JSON.stringify({ input_file_id: 'file-abc', endpoint: '/v1/chat/completions', completion_window: '24h' })],
      ['POST', '/v1/fine_tuning/jobs', JSON.stringify({ model: 'gpt-4o-mini', training_file: 'file-abc' })],
      ['GET', '/v1/vector_stores', undefined],
    ];
    for (const [method, path, body] of attempts) {
      const r = await send(key, method, path, body ? { headers: { 'content-type': 'application/json' }, body } : {});
      expect(r.status, `${method} ${path}`).toBe(403);
      expect(r.code).toBe('scope_not_granted');
      expect(r.upstream).toHaveLength(0);
    }
  });

  it('grants reading files without deleting them', async () => {
    const { key } = await newKey({ scopes: ['inference', 'files:read'] });
    expect((await send(key, 'GET', '/v1/files')).upstream).toHaveLength(1);
    const del = await send(key, 'DELETE', '/v1/files/file-abc');
    expect(del.code).toBe('scope_not_granted');
    expect(del.upstream).toHaveLength(0);
  });

  it('refuses a path or method no endpoint declares', async () => {
    const { key } = await newKey({ scopes: ['inference', 'files', 'files:delete'] });
    for (const [method, path] of [['PUT', '/v1/files'], ['POST', '/v1/organization/users'], ['GET', '/v1/dashboard/billing/usage'], ['PATCH', '/v1/chat/completions']]) {
      const r = await send(key, method!, path!, method === 'GET' ? {} : { headers: { 'content-type': 'application/json' }, body: '{}' });
      expect(r.code, `${method} ${path}`).toBe('endpoint_not_allowed');
      expect(r.upstream).toHaveLength(0);
    }
  });

  it('rejects a scope it does not understand at key creation', async () => {
    const r = await admin('POST', '/keys', { connectionId: stack.demo!.connectionId, scopes: ['files:everything'] });
    expect(r.status).toBe(400);
  });
});

describe('batch input uploads on a model-locked key', () => {
  it('refuses a batch file with a line for another model, and the upstream never gets a complete upload', async () => {
    const { key } = await newKey({ models: ['gpt-4o-mini'], scopes: ['inference', 'files:write'] });
    const lines = [
      { custom_id: '1', method: 'POST', url: '/v1/chat/completions', body: { model: 'gpt-4o-mini', messages: [] } },
      { custom_id: '2', method: 'POST', url: '/v1/chat/completions', body: { model: 'o1-pro', messages: [] } },
    ].map((l) => JSON.stringify(l)).join('\n');
    const boundary = `b${randomBytes(8).toString('hex')}`;
    const body = multipart(boundary, [
      { disposition: 'form-data; name="purpose"', value: 'batch' },
      { disposition: 'form-data; name="file"; filename="batch.jsonl"', value: lines, type: 'application/jsonl' },
    ]);
    const r = await send(key, 'POST', '/v1/files', { headers: { 'content-type': `multipart/form-data; boundary=${boundary}` }, body });
    expect(r.code).toBe('model_not_allowed');
    for (const u of r.upstream) expect(u.parts === undefined || u.aborted === true || u.bodyBytes < body.length).toBe(true);
  });

  it('accepts a batch file whose every line uses an allowed model', async () => {
    const { key } = await newKey({ models: ['gpt-4o-mini'], scopes: ['inference', 'files:write'] });
    const lines = [1, 2, 3].map((i) => JSON.stringify({ custom_id: String(i), method: 'POST', url: '/v1/chat/completions', body: { model: 'gpt-4o-mini', messages: [] } })).join('\n');
    const boundary = `b${randomBytes(8).toString('hex')}`;
    const body = multipart(boundary, [
      { disposition: 'form-data; name="purpose"', value: 'batch' },
      { disposition: 'form-data; name="file"; filename="batch.jsonl"', value: lines, type: 'application/jsonl' },
    ]);
    const r = await send(key, 'POST', '/v1/files', { headers: { 'content-type': `multipart/form-data; boundary=${boundary}` }, body });
    expect(r.status).toBe(200);
    expect(r.upstream).toHaveLength(1);
    expect(r.upstream[0]!.bodyBytes).toBe(body.length);
  });
});

describe('spend is an upper bound', () => {
  it('counts n choices in the reservation: n: 60 does not fit a cap one choice fits', async () => {
    const { key } = await newKey({ dailyLimit: 0.05 });
    const one = await send(key, 'POST', '/v1/chat/completions', { headers: { 'content-type': 'application/json' }, body: chatBody('gpt-4o-mini', { max_tokens: 500 }) });
    expect(one.status).toBe(200);
    const sixty = await send(key, 'POST', '/v1/chat/completions', { headers: { 'content-type': 'application/json' }, body: chatBody('gpt-4o-mini', { max_tokens: 5000, n: 60 }) });
    expect(sixty.status).toBe(429);
    expect(sixty.code).toBe('budget_exceeded');
    expect(sixty.upstream).toHaveLength(0);
  });

  it('refuses on a capped key what it cannot price: input referenced by id, an unpriced model', async () => {
    // stored:read lets the key name an earlier response at all; the cap still cannot bound it.
    const { key } = await newKey({ dailyLimit: 5, scopes: ['inference', 'stored:read'] });
    const byId = await send(key, 'POST', '/v1/responses', { headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'gpt-4o-mini', previous_response_id: 'resp_123', input: 'go on', max_output_tokens: 10 }) });
    expect(byId.code).toBe('price_unknown');
    expect(byId.upstream).toHaveLength(0);
    const unpriced = await send(key, 'POST', '/v1/chat/completions', { headers: { 'content-type': 'application/json' }, body: chatBody('totally-new-model-9000', { max_tokens: 5 }) });
    expect(unpriced.code).toBe('price_unknown');
    expect(unpriced.upstream).toHaveLength(0);
  });

  it('answers 400 for numbers the API does not allow and for JSON nested too deep', async () => {
    const { key } = await newKey();
    const huge = await send(key, 'POST', '/v1/chat/completions', { headers: { 'content-type': 'application/json' }, body: chatBody('gpt-4o-mini', { max_tokens: 1e300 }) });
    expect(huge.status).toBe(400);
    const deep = '{"model":"gpt-4o-mini","stream":true,"messages":' + '['.repeat(5000) + ']'.repeat(5000) + '}';
    const nested = await send(key, 'POST', '/v1/chat/completions', { headers: { 'content-type': 'application/json' }, body: deep });
    expect(nested.status).toBe(400);
    expect(huge.upstream.length + nested.upstream.length).toBe(0);
  });

  it('tells an SDK to retry when only reservations in flight stand in the way', async () => {
    const { key } = await newKey({ dailyLimit: 0.002 });
    // gpt-4o-mini output at $0.60/M: 3000 tokens hold under $0.002 — one fits, two do not.
    // `user: mock-slow` keeps the first stream (and so its reservation) open for seconds.
    const headers = { authorization: `Bearer ${key}`, 'x-forwarded-for': IP, 'content-type': 'application/json' };
    const body = chatBody('gpt-4o-mini', { max_tokens: 3000, stream: true, user: 'mock-slow' });
    const holder = new AbortController();
    const first = await fetch(`${stack.hostUrl}/v1/chat/completions`, { method: 'POST', headers, body, signal: holder.signal });
    expect(first.status).toBe(200);
    const second = await fetch(`${stack.hostUrl}/v1/chat/completions`, { method: 'POST', headers, body });
    await second.arrayBuffer();
    holder.abort();
    expect(second.status).toBe(429);
    expect(second.headers.get('x-sg-code')).toBe('budget_busy');
    expect(second.headers.get('x-should-retry')).toBeNull();
    expect(second.headers.get('retry-after')).not.toBeNull();
  });

  it('says do not retry once settled spend itself leaves no room, and raises one budget alert per window', async () => {
    const { key, id } = await newKey({ dailyLimit: 0.002 });
    const body = chatBody('gpt-4o-mini', { max_tokens: 3000 });
    expect((await send(key, 'POST', '/v1/chat/completions', { headers: { 'content-type': 'application/json' }, body })).status).toBe(200);
    const after = await send(key, 'POST', '/v1/chat/completions', { headers: { 'content-type': 'application/json' }, body });
    expect(after.code).toBe('budget_exceeded');
    expect(after.retry).toBe('false');
    expect(String((after.body.error as { message: string }).message)).toMatch(/max_tokens/);
    expect((await send(key, 'POST', '/v1/chat/completions', { headers: { 'content-type': 'application/json' }, body })).code).toBe('budget_exceeded');
    const alerts = await eventually(async () => {
      const list = (await admin<Array<{ type: string; detail: { window?: string } }>>('GET', `/events?keyId=${id}&type=budget_refused`)).json;
      return list.length > 0 ? list : undefined;
    });
    expect(alerts).toHaveLength(1);
    expect(alerts[0]!.detail.window).toMatch(/^key:d:/);
  });

  it('lets a model-locked key fine-tune only an allowed base model', async () => {
    const { key } = await newKey({ models: ['gpt-4o-mini'], scopes: ['inference', 'fine_tuning', 'files:read'] });
    const refused = await send(key, 'POST', '/v1/fine_tuning/jobs', { headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'gpt-4.1', training_file: 'file-abc' }) });
    expect(refused.code).toBe('model_not_allowed');
    expect(refused.upstream).toHaveLength(0);
    const allowed = await send(key, 'POST', '/v1/fine_tuning/jobs', { headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'gpt-4o-mini', training_file: 'file-abc' }) });
    expect(allowed.upstream).toHaveLength(1);
    // Its training file is stored data named by id: without files:read the job is refused.
    const { key: noFiles } = await newKey({ models: ['gpt-4o-mini'], scopes: ['inference', 'fine_tuning'] });
    const refusedFile = await send(noFiles, 'POST', '/v1/fine_tuning/jobs', { headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'gpt-4o-mini', training_file: 'file-abc' }) });
    expect(refusedFile.code).toBe('scope_not_granted');
  });

  it('charges an aborted stream the bound it held, not just what it printed', async () => {
    const { key, id } = await newKey({ dailyLimit: 1 });
    const holder = new AbortController();
    const res = await fetch(`${stack.hostUrl}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'x-forwarded-for': IP, 'content-type': 'application/json' },
      body: chatBody('gpt-4o-mini', { max_tokens: 1000, stream: true, user: 'mock-slow' }),
      signal: holder.signal,
    });
    const reader = res.body!.getReader();
    await reader.read();
    holder.abort();
    const row = await eventually(async () => {
      const audit = (await admin<{ items: Array<{ keyId: string; cost: number; code: string | null }> }>('GET', `/audit?keyId=${id}`)).json;
      return audit.items.find((i) => i.keyId === id && i.code === 'client_disconnected');
    });
    // 1000 output tokens at $0.60/M is $0.0006; the bound also holds the input bytes.
    expect(row.cost).toBeGreaterThanOrEqual(0.0006);
  });
});

describe('headers', () => {
  it('never forwards org/project selectors, method overrides or a compression request', async () => {
    const { key } = await newKey();
    const r = await send(key, 'POST', '/v1/chat/completions', {
      headers: { 'content-type': 'application/json', 'openai-organization': 'org-attacker', 'openai-project': 'proj_attacker', 'x-http-method-override': 'DELETE', 'accept-encoding': 'gzip' },
      body: chatBody('gpt-4o-mini'),
    });
    expect(r.status).toBe(200);
    const h = r.upstream[0]!.headers;
    expect(h['openai-organization']).toBeUndefined();
    expect(h['openai-project']).toBeUndefined();
    expect(h['x-http-method-override']).toBeUndefined();
    expect(h['accept-encoding']).not.toMatch(/gzip/);
  });

  it('ignores CF-Connecting-IP from a proxy that does not set it', async () => {
    const { key, id } = await newKey();
    expect((await send(key, 'POST', '/v1/chat/completions', { headers: { 'content-type': 'application/json' }, body: chatBody('gpt-4o-mini'), ip: IP })).status).toBe(200);
    const thief = await send(key, 'POST', '/v1/chat/completions', {
      headers: { 'content-type': 'application/json', 'cf-connecting-ip': IP },
      body: chatBody('gpt-4o-mini'),
      ip: '200.160.2.3',
    });
    expect(thief.code).toBe('ip_mismatch');
    expect(thief.upstream).toHaveLength(0);
    expect((await admin<{ boundIp: string }>('GET', `/keys/${id}`)).json.boundIp).toBe(IP);
  });
});

describe('first-use binding', () => {
  it('does not bind the IP on a request the upstream rejected', async () => {
    // A connection whose upstream key the upstream refuses (401): nothing succeeds through it.
    const connectionId = await connect('openai', 'sk-wrong-upstream-key');
    const { key, id } = await newKey({}, connectionId);
    const failed = await send(key, 'POST', '/v1/chat/completions', { headers: { 'content-type': 'application/json' }, body: chatBody('gpt-4o-mini'), ip: '200.160.2.3' });
    expect(failed.status).toBe(401);
    expect(failed.upstream).toHaveLength(1);
    expect((await admin<{ boundIp: string | null }>('GET', `/keys/${id}`)).json.boundIp).toBeNull();
  });

  it('binds the IP on the first successful request', async () => {
    const { key, id } = await newKey();
    const ok = await send(key, 'POST', '/v1/chat/completions', { headers: { 'content-type': 'application/json' }, body: chatBody('gpt-4o-mini'), ip: IP });
    expect(ok.status).toBe(200);
    expect((await admin<{ boundIp: string }>('GET', `/keys/${id}`)).json.boundIp).toBe(IP);
  });
});

describe("the owner's signed connection policy, enforced by the enclave behind the host", () => {
  it('refuses, through the real host, a model and an operation the policy excludes and stops at its daily ceiling, whatever the key allows', async () => {
    // The key itself is unlocked and fully scoped: only the enclave's policy stands in the way.
    const connectionId = await connectTestProvider(stack, 'openai', {
      connectionPolicy: { operations: ['inference'], models: ['gpt-4o-mini'], ceiling: { requests: 3 } },
    });
    const { key } = await newKey({ scopes: ['inference', 'files'] }, connectionId);
    const json = { 'content-type': 'application/json' };
    const other = await send(key, 'POST', '/v1/chat/completions', { headers: json, body: chatBody('gpt-4o') });
    expect(other.status).toBe(403);
    expect(other.code).toBe('connection_policy_denied');
    expect(other.upstream).toHaveLength(0);
    const files = await send(key, 'GET', '/v1/files');
    expect(files.code).toBe('connection_policy_denied');
    expect(files.upstream).toHaveLength(0);
    const served: number[] = [];
    for (let i = 0; i < 4; i++) served.push((await send(key, 'POST', '/v1/chat/completions', { headers: json, body: chatBody('gpt-4o-mini') })).status);
    expect(served.filter((s) => s === 200).length).toBeLessThanOrEqual(3);
    const last = await send(key, 'POST', '/v1/chat/completions', { headers: json, body: chatBody('gpt-4o-mini') });
    expect(last.code).toBe('connection_ceiling_reached');
    expect(last.upstream).toHaveLength(0);
  });
});

