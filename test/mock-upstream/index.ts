/**
 * A faithful mock of the upstream AI APIs (a test double — never imported by production code):
 * OpenAI chat/completions (JSON and SSE with `stream_options.include_usage`), embeddings,
 * responses (JSON and SSE ending in `response.completed`), models; Anthropic messages (JSON and
 * the SSE event sequence of the SDK's own fixtures) and count_tokens. Errors use each provider's
 * shape; a wrong key gets OpenAI's real message, which echoes part of the key, so tests can prove
 * the enclave scrubs it. Every request is recorded (method, path, headers) for assertions.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createHash, randomBytes } from 'node:crypto';
import type { AddressInfo } from 'node:net';

export interface RecordedPart {
  name: string;
  filename: string | null;
  size: number;
  sha256: string;
  value: string | null;
}

export interface RecordedRequest {
  method: string;
  path: string;
  headers: Record<string, string | string[] | undefined>;
  bodySha256: string;
  bodyBytes: number;
  /** Multipart requests: each part with its size and SHA-256 (files) or value (fields). */
  parts?: RecordedPart[];
  /** Set when the client (here: the enclave) went away before the response finished. */
  aborted?: boolean;
  /**
   * Every model the request names where an upstream parser would read it: the top-level `model`
   * of a body that parses as a JSON object, whatever its Content-Type (JSON.parse: the last of
   * duplicated keys), and the value of every multipart part named `model` or `model[]` (as
   * undici's form parser reads them). Admission tests compare these with a key's allow-list.
   */
  models?: unknown[];
}

/** The speech audio the mock returns for an input: deterministic, so tests can compare bytes. */
export function mockSpeechBytes(input: string, size = 256 * 1024): Buffer {
  const out = Buffer.alloc(size);
  let x = createHash('sha256').update(input).digest().readUInt32BE(0) || 1;
  for (let i = 0; i < size; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

export interface MockUpstreamOptions {
  /** The upstream key the mock accepts (Bearer for OpenAI paths, x-api-key for Anthropic). */
  apiKey: string;
  host?: string;
  port?: number;
  /** Record every request (default). The benchmark turns it off: it sends hundreds of thousands. */
  record?: boolean;
}

export interface MockUpstream {
  url: string;
  origin: string;
  requests: RecordedRequest[];
  /** Accept one more upstream key (key rotation tests). */
  acceptKey(key: string): void;
  close(): Promise<void>;
}

const id = (prefix: string) => `${prefix}${randomBytes(12).toString('hex')}`;

function json(res: ServerResponse, status: number, body: unknown, extra: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
    'x-request-id': id('req_'),
    'openai-processing-ms': '12',
    'x-ratelimit-remaining-requests': '9999',
    ...extra,
  });
  res.end(text);
}

function sse(res: ServerResponse, events: Array<{ event?: string; data: string }>): void {
  res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', 'x-request-id': id('req_') });
  for (const e of events) res.write(`${e.event ? `event: ${e.event}\n` : ''}data: ${e.data}\n\n`);
  res.end();
}

/** Rough token count: words in the request text, like a tokenizer would order of magnitude. */
function promptTokens(body: Record<string, unknown>): number {
  const text = JSON.stringify(body.messages ?? body.input ?? body.prompt ?? '');
  return Math.max(1, Math.ceil(text.length / 4));
}

function openaiError(res: ServerResponse, status: number, message: string, type: string, code: string | null): void {
  json(res, status, { error: { message, type, param: null, code } });
}

/**
 * Completion tokens the mock "produces" on OpenAI endpoints: exactly max_tokens when the client
 * sets it (priced usage for spend tests), else a small fixed count. Anthropic always reports 6.
 */
function completionTokens(body: Record<string, unknown>, fallback: number): number {
  const max = body.max_completion_tokens ?? body.max_tokens ?? body.max_output_tokens;
  return typeof max === 'number' && max > 0 ? max : fallback;
}

function chatCompletion(res: ServerResponse, body: Record<string, unknown>): void {
  const model = String(body.model ?? 'gpt-4o-mini');
  const content = 'Hello from the mock upstream.';
  const out = completionTokens(body, 7);
  const usage = { prompt_tokens: promptTokens(body), completion_tokens: out, total_tokens: promptTokens(body) + out };
  const created = Math.floor(Date.now() / 1000);
  const cid = id('chatcmpl-');
  if (body.stream === true) {
    const chunk = (delta: object, finish: string | null) =>
      JSON.stringify({ id: cid, object: 'chat.completion.chunk', created, model, system_fingerprint: 'fp_mock', choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }] });
    const events = [
      { data: chunk({ role: 'assistant', content: '' }, null) },
      ...content.split(' ').map((w, i) => ({ data: chunk({ content: (i ? ' ' : '') + w }, null) })),
      { data: chunk({}, 'stop') },
    ];
    const opts = body.stream_options as { include_usage?: boolean } | undefined;
    if (opts?.include_usage) {
      events.push({ data: JSON.stringify({ id: cid, object: 'chat.completion.chunk', created, model, system_fingerprint: 'fp_mock', choices: [], usage }) });
    }
    events.push({ data: '[DONE]' });
    return sse(res, events);
  }
  json(res, 200, {
    id: cid,
    object: 'chat.completion',
    created,
    model,
    system_fingerprint: 'fp_mock',
    choices: [{ index: 0, message: { role: 'assistant', content, refusal: null }, logprobs: null, finish_reason: 'stop' }],
    usage,
  });
}

function responses(res: ServerResponse, body: Record<string, unknown>): void {
  const model = String(body.model ?? 'gpt-4o-mini');
  const text = 'Hello from the mock Responses API.';
  const out = completionTokens(body, 8);
  const usage = { input_tokens: promptTokens(body), input_tokens_details: { cached_tokens: 0 }, output_tokens: out, output_tokens_details: { reasoning_tokens: 0 }, total_tokens: promptTokens(body) + out };
  const rid = id('resp_');
  const msgId = id('msg_');
  const message = { id: msgId, type: 'message', status: 'completed', role: 'assistant', content: [{ type: 'output_text', text, annotations: [] }] };
  const response = (status: string, output: unknown[], u: unknown) => ({
    id: rid, object: 'response', created_at: Math.floor(Date.now() / 1000), status, model, output, usage: u, error: null, incomplete_details: null,
    instructions: null, max_output_tokens: null, parallel_tool_calls: true, previous_response_id: null, reasoning: { effort: null, summary: null },
    temperature: 1, text: { format: { type: 'text' } }, tool_choice: 'auto', tools: [], top_p: 1, truncation: 'disabled', metadata: {},
  });
  if (body.stream === true) {
    let seq = 0;
    const ev = (type: string, payload: object) => ({ event: type, data: JSON.stringify({ type, sequence_number: seq++, ...payload }) });
    return sse(res, [
      ev('response.created', { response: response('in_progress', [], null) }),
      ev('response.output_item.added', { output_index: 0, item: { ...message, status: 'in_progress', content: [] } }),
      ev('response.content_part.added', { item_id: msgId, output_index: 0, content_index: 0, part: { type: 'output_text', text: '', annotations: [] } }),
      ev('response.output_text.delta', { item_id: msgId, output_index: 0, content_index: 0, delta: text }),
      ev('response.output_text.done', { item_id: msgId, output_index: 0, content_index: 0, text }),
      ev('response.content_part.done', { item_id: msgId, output_index: 0, content_index: 0, part: message.content[0] }),
      ev('response.output_item.done', { output_index: 0, item: message }),
      ev('response.completed', { response: response('completed', [message], usage) }),
    ]);
  }
  json(res, 200, response('completed', [message], usage));
}

function embeddings(res: ServerResponse, body: Record<string, unknown>): void {
  const inputs = Array.isArray(body.input) ? body.input : [body.input];
  const data = inputs.map((_, index) => {
    const vec = Array.from({ length: 8 }, (_v, i) => Number(((index + 1) * 0.01 * (i + 1)).toFixed(4)));
    const embedding = body.encoding_format === 'base64' ? Buffer.from(new Float32Array(vec).buffer).toString('base64') : vec;
    return { object: 'embedding', index, embedding };
  });
  const tokens = promptTokens(body);
  json(res, 200, { object: 'list', data, model: String(body.model), usage: { prompt_tokens: tokens, total_tokens: tokens } });
}

function anthropicMessages(res: ServerResponse, body: Record<string, unknown>): void {
  const model = String(body.model ?? 'claude-sonnet-4-5');
  const input = promptTokens(body);
  const mid = id('msg_');
  if (body.stream === true) {
    const ev = (event: string, payload: object) => ({ event, data: JSON.stringify({ type: event, ...payload }) });
    return sse(res, [
      ev('message_start', { message: { id: mid, type: 'message', role: 'assistant', content: [], model, stop_reason: null, stop_sequence: null, usage: { input_tokens: input, output_tokens: 1, cache_creation_input_tokens: 0, cache_read_input_tokens: 0 } } }),
      ev('content_block_start', { index: 0, content_block: { type: 'text', text: '' } }),
      ev('ping', {}),
      ev('content_block_delta', { index: 0, delta: { type: 'text_delta', text: 'Hello' } }),
      ev('content_block_delta', { index: 0, delta: { type: 'text_delta', text: ' there!' } }),
      ev('content_block_stop', { index: 0 }),
      ev('message_delta', { delta: { stop_reason: 'end_turn', stop_sequence: null }, usage: { output_tokens: 6 } }),
      ev('message_stop', {}),
    ]);
  }
  json(res, 200, {
    id: mid, type: 'message', role: 'assistant', model, content: [{ type: 'text', text: 'Hello there!' }],
    stop_reason: 'end_turn', stop_sequence: null,
    usage: { input_tokens: input, output_tokens: 6, cache_creation_input_tokens: 0, cache_read_input_tokens: 0 },
  }, { 'request-id': id('req_') });
}

/** A stream that takes ~5 s (model `mock-slow`, or any model with `user: "mock-slow"`): for disconnect tests. */
function slowStream(res: ServerResponse): void {
  res.writeHead(200, { 'content-type': 'text/event-stream' });
  let n = 0;
  const timer = setInterval(() => {
    if (res.destroyed || n++ > 100) {
      clearInterval(timer);
      if (!res.destroyed) res.end('data: [DONE]\n\n');
      return;
    }
    res.write(`data: ${JSON.stringify({ id: 'slow', object: 'chat.completion.chunk', model: 'mock-slow', choices: [{ index: 0, delta: { content: 'x' }, finish_reason: null }] })}\n\n`);
  }, 50);
  res.on('close', () => clearInterval(timer));
}

/** The top-level `model` of a body that is a JSON object (BOM and surrounding whitespace allowed), as a lenient upstream would read it. */
function jsonModels(raw: Buffer): unknown[] {
  if (raw.length === 0 || raw.length > 8 * 1024 * 1024) return [];
  try {
    const value: unknown = JSON.parse(raw.toString('utf8').replace(/^\uFEFF/, ''));
    return typeof value === 'object' && value !== null && !Array.isArray(value) && Object.hasOwn(value, 'model') ? [(value as { model: unknown }).model] : [];
  } catch {
    return [];
  }
}

async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

async function parseParts(raw: Buffer, contentType: string): Promise<RecordedPart[]> {
  const form = await new Response(new Uint8Array(raw), { headers: { 'content-type': contentType } }).formData();
  const parts: RecordedPart[] = [];
  for (const [name, value] of form as unknown as Iterable<[string, string | File]>) {
    if (typeof value === 'string') parts.push({ name, filename: null, size: Buffer.byteLength(value), sha256: createHash('sha256').update(value).digest('hex'), value });
    else {
      const bytes = Buffer.from(await value.arrayBuffer());
      parts.push({ name, filename: value.name, size: bytes.length, sha256: createHash('sha256').update(bytes).digest('hex'), value: null });
    }
  }
  return parts;
}

interface StoredFile {
  id: string;
  filename: string;
  purpose: string;
  bytes: Buffer;
  created_at: number;
}

const fileObject = (f: StoredFile) => ({ id: f.id, object: 'file', bytes: f.bytes.length, created_at: f.created_at, filename: f.filename, purpose: f.purpose, status: 'processed', expires_at: null, status_details: null });

export async function startMockUpstream(options: MockUpstreamOptions): Promise<MockUpstream> {
  const requests: RecordedRequest[] = [];
  const accepted = new Set([options.apiKey]);
  const files = new Map<string, StoredFile>();
  const uploads = new Map<string, { id: string; filename: string; purpose: string; bytes: number; parts: Map<string, Buffer> }>();
  const server: Server = createServer(async (req, res) => {
    const raw = await readBody(req);
    const url = new URL(req.url ?? '/', 'http://mock');
    const record: RecordedRequest = { method: req.method ?? 'GET', path: url.pathname + url.search, headers: { ...req.headers }, bodySha256: '', bodyBytes: raw.length };
    if (options.record !== false) {
      record.bodySha256 = createHash('sha256').update(raw).digest('hex');
      record.models = jsonModels(raw);
      requests.push(record);
    }
    res.on('close', () => {
      if (!res.writableFinished) record.aborted = true;
    });
    const contentType = String(req.headers['content-type'] ?? '');
    if (contentType.startsWith('multipart/form-data')) {
      try {
        record.parts = await parseParts(raw, contentType);
        if (options.record !== false) record.models = [...(record.models ?? []), ...record.parts.filter((p) => p.name === 'model' || p.name === 'model[]').map((p) => p.value ?? `(file ${p.filename})`)];
      } catch {
        return openaiError(res, 400, 'Could not parse multipart form', 'invalid_request_error', null);
      }
    } else if (options.record !== false && contentType.toLowerCase().includes('multipart/form-data')) {
      // A type spelt in another case (or with odd parameters): what a case-insensitive upstream parser would read.
      const parts = await parseParts(raw, contentType).catch(() => [] as RecordedPart[]);
      record.models = [...(record.models ?? []), ...parts.filter((p) => p.name === 'model' || p.name === 'model[]').map((p) => p.value ?? `(file ${p.filename})`)];
    }
    const field = (name: string) => record.parts?.find((p) => p.name === name);
    const anthropic = url.pathname.startsWith('/v1/messages');
    const presented = anthropic ? req.headers['x-api-key'] : (req.headers.authorization ?? '').replace(/^Bearer /, '');
    if (typeof presented !== 'string' || !accepted.has(presented)) {
      const shown = typeof presented === 'string' && presented.length > 8 ? `${presented.slice(0, 8)}${'*'.repeat(6)}${presented.slice(-4)}` : String(presented);
      if (anthropic) return json(res, 401, { type: 'error', error: { type: 'authentication_error', message: 'invalid x-api-key' } });
      return openaiError(res, 401, `Incorrect API key provided: ${shown}. You can find your API key at https://platform.openai.com/account/api-keys.`, 'invalid_request_error', 'invalid_api_key');
    }
    let body: Record<string, unknown> = {};
    if (raw.length > 0 && String(req.headers['content-type'] ?? '').includes('json')) {
      try {
        body = JSON.parse(raw.toString('utf8'));
      } catch {
        return openaiError(res, 400, 'We could not parse the JSON body of your request.', 'invalid_request_error', null);
      }
    }
    const route = `${req.method} ${url.pathname}`;
    const fileId = /^\/v1\/files\/([\w-]+)(\/content)?$/.exec(url.pathname);
    if (fileId) {
      const f = files.get(fileId[1]!);
      if (!f) return openaiError(res, 404, `No such File object: ${fileId[1]}`, 'invalid_request_error', null);
      if (fileId[2] && req.method === 'GET') {
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': f.bytes.length, 'x-request-id': id('req_') });
        return res.end(f.bytes);
      }
      if (req.method === 'DELETE') {
        files.delete(f.id);
        return json(res, 200, { id: f.id, object: 'file', deleted: true });
      }
      return json(res, 200, fileObject(f));
    }
    const upload = /^\/v1\/uploads\/([\w-]+)\/(parts|complete|cancel)$/.exec(url.pathname);
    if (upload && req.method === 'POST') {
      const u = uploads.get(upload[1]!);
      if (!u) return openaiError(res, 404, 'No such upload', 'invalid_request_error', null);
      if (upload[2] === 'parts') {
        const data = record.parts?.find((p) => p.name === 'data');
        if (!data) return openaiError(res, 400, 'data is required', 'invalid_request_error', null);
        const form = await new Response(new Uint8Array(raw), { headers: { 'content-type': contentType } }).formData();
        const partId = id('part_');
        u.parts.set(partId, Buffer.from(await (form.get('data') as Blob).arrayBuffer()));
        return json(res, 200, { id: partId, object: 'upload.part', created_at: Math.floor(Date.now() / 1000), upload_id: u.id });
      }
      if (upload[2] === 'complete') {
        const order = (body.part_ids as string[] | undefined) ?? [];
        const bytes = Buffer.concat(order.map((p) => u.parts.get(p) ?? Buffer.alloc(0)));
        const f: StoredFile = { id: id('file-'), filename: u.filename, purpose: u.purpose, bytes, created_at: Math.floor(Date.now() / 1000) };
        files.set(f.id, f);
        return json(res, 200, { id: u.id, object: 'upload', status: 'completed', bytes: bytes.length, filename: u.filename, purpose: u.purpose, created_at: f.created_at, expires_at: f.created_at + 3600, file: fileObject(f) });
      }
      return json(res, 200, { id: u.id, object: 'upload', status: 'cancelled' });
    }
    const simple = /^\/v1\/(batches|vector_stores|fine_tuning\/jobs|responses)\/([\w-]+)(\/(cancel|input_items))?$/.exec(url.pathname);
    if (simple) {
      const kind = simple[1]!;
      if (kind === 'responses' && simple[4] === 'input_items') return json(res, 200, { object: 'list', data: [], first_id: null, last_id: null, has_more: false });
      const object = { batches: 'batch', vector_stores: 'vector_store', 'fine_tuning/jobs': 'fine_tuning.job', responses: 'response' }[kind]!;
      return json(res, 200, {
        id: simple[2], object, status: simple[4] === 'cancel' ? 'cancelled' : 'completed', created_at: Math.floor(Date.now() / 1000),
        ...(kind === 'responses' ? { output: [], usage: null, model: 'gpt-4o-mini' } : {}),
      });
    }
    switch (route) {
      case 'POST /v1/audio/transcriptions':
      case 'POST /v1/audio/translations': {
        if (!field('file')) return openaiError(res, 400, "Missing required parameter: 'file'.", 'invalid_request_error', null);
        const text = `transcript of ${field('file')!.size} bytes by ${field('model')?.value ?? '?'}`;
        if (field('stream')?.value === 'true') {
          return sse(res, [
            { data: JSON.stringify({ type: 'transcript.text.delta', delta: text }) },
            { data: JSON.stringify({ type: 'transcript.text.done', text, usage: { type: 'tokens', input_tokens: 10, output_tokens: 5, total_tokens: 15 } }) },
          ]);
        }
        return json(res, 200, { text });
      }
      case 'POST /v1/audio/speech': {
        const audio = mockSpeechBytes(String(body.input ?? ''));
        if (body.stream_format === 'sse') {
          return sse(res, [
            { data: JSON.stringify({ type: 'speech.audio.delta', audio: audio.subarray(0, 1024).toString('base64') }) },
            { data: JSON.stringify({ type: 'speech.audio.done', usage: { input_tokens: 5, output_tokens: 10, total_tokens: 15 } }) },
          ]);
        }
        res.writeHead(200, { 'content-type': 'audio/mpeg', 'content-length': audio.length, 'x-request-id': id('req_') });
        return res.end(audio);
      }
      case 'POST /v1/images/generations':
        return json(res, 200, { created: Math.floor(Date.now() / 1000), data: [{ b64_json: Buffer.from('png-bytes').toString('base64') }], usage: { input_tokens: 10, output_tokens: 100, total_tokens: 110, input_tokens_details: { text_tokens: 10, image_tokens: 0 } } });
      case 'POST /v1/images/edits':
      case 'POST /v1/images/variations': {
        const images = (record.parts ?? []).filter((p) => p.filename !== null);
        return json(res, 200, { created: Math.floor(Date.now() / 1000), data: images.map((p) => ({ b64_json: Buffer.from(p.sha256).toString('base64') })) });
      }
      case 'POST /v1/files': {
        const form = await new Response(new Uint8Array(raw), { headers: { 'content-type': contentType } }).formData();
        const file = form.get('file');
        if (!(file instanceof Blob)) return openaiError(res, 400, "Missing required parameter: 'file'.", 'invalid_request_error', null);
        const f: StoredFile = { id: id('file-'), filename: (file as File).name, purpose: String(form.get('purpose') ?? 'user_data'), bytes: Buffer.from(await file.arrayBuffer()), created_at: Math.floor(Date.now() / 1000) };
        files.set(f.id, f);
        return json(res, 200, fileObject(f));
      }
      case 'GET /v1/files':
        return json(res, 200, { object: 'list', data: [...files.values()].map(fileObject), has_more: false, first_id: null, last_id: null });
      case 'POST /v1/uploads': {
        const u = { id: id('upload_'), filename: String(body.filename), purpose: String(body.purpose), bytes: Number(body.bytes), parts: new Map<string, Buffer>() };
        uploads.set(u.id, u);
        return json(res, 200, { id: u.id, object: 'upload', status: 'pending', bytes: u.bytes, filename: u.filename, purpose: u.purpose, created_at: Math.floor(Date.now() / 1000), expires_at: Math.floor(Date.now() / 1000) + 3600 });
      }
      case 'POST /v1/moderations':
        return json(res, 200, { id: id('modr-'), model: String(body.model ?? 'omni-moderation-latest'), results: [{ flagged: false, categories: {}, category_scores: {}, category_applied_input_types: {} }] });
      case 'POST /v1/batches':
      case 'POST /v1/vector_stores':
      case 'POST /v1/fine_tuning/jobs': {
        const object = { '/v1/batches': 'batch', '/v1/vector_stores': 'vector_store', '/v1/fine_tuning/jobs': 'fine_tuning.job' }[url.pathname]!;
        return json(res, 200, { id: id(`${object.split('.')[0]}_`), object, status: 'validating', created_at: Math.floor(Date.now() / 1000), ...body });
      }
      case 'GET /v1/batches':
      case 'GET /v1/vector_stores':
      case 'GET /v1/fine_tuning/jobs':
        return json(res, 200, { object: 'list', data: [], has_more: false, first_id: null, last_id: null });
      case 'POST /v1/chat/completions':
        if (body.model === 'mock-slow' || body.user === 'mock-slow') return slowStream(res);
        return chatCompletion(res, body);
      case 'POST /v1/responses':
        return responses(res, body);
      case 'POST /v1/embeddings':
        return embeddings(res, body);
      case 'GET /v1/models':
        return json(res, 200, { object: 'list', data: [{ id: 'gpt-4o-mini', object: 'model', created: 1721172741, owned_by: 'system' }, { id: 'text-embedding-3-small', object: 'model', created: 1705948997, owned_by: 'system' }] });
      case 'POST /v1/messages':
        return anthropicMessages(res, body);
      case 'POST /v1/messages/count_tokens':
        return json(res, 200, { input_tokens: promptTokens(body) });
      default:
        if (anthropic) return json(res, 404, { type: 'error', error: { type: 'not_found_error', message: `Not found: ${url.pathname}` } });
        return openaiError(res, 404, `Invalid URL (${req.method} ${url.pathname})`, 'invalid_request_error', null);
    }
  });
  await new Promise<void>((resolve) => server.listen(options.port ?? 0, options.host ?? '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  const origin = `http://${options.host ?? '127.0.0.1'}:${port}`;
  return {
    url: `${origin}/v1`,
    origin,
    requests,
    acceptKey: (key) => void accepted.add(key),
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
