/**
 * Hostile clients against the real stack (issue 16): fast-check generates requests across every
 * declared endpoint of the OpenAI and Anthropic providers (and some Gemini-native, Azure and
 * any-API ones), with odd media-type spellings, hostile JSON and multipart bodies, forwarding and
 * selector headers, framing tricks and key configurations (model allow-lists, scopes, tiny daily
 * caps). Requests are written on raw sockets, so nothing normalises them on the way. The mock
 * upstream records every request it receives; after each one the invariants below are checked:
 *
 *   (a) a refusal by the gateway (an `x-sg-code` header) never reaches the upstream;
 *   (b) an admitted request reaches it once, for a declared endpoint the key's scopes grant, with
 *       exactly the bytes that were checked, no selector/override/forwarding header, and only
 *       models the key allows (the mock records the JSON and multipart `model` it parsed);
 *   (c) a capped key's settled spend never exceeds its cap (requests here are sequential, so not
 *       even by one reservation);
 *   (d) no 5xx, and every gateway 4xx is an error body in the provider's shape carrying its code;
 *   and every admitted request of one key came from the one client address the trusted proxy
 *   (loopback, X-Forwarded-For) names.
 *
 * Runs are reproducible: SG_PROPERTY_SEED fixes the seed (printed on failure), SG_PROPERTY_RUNS
 * the number of runs. The hand-written attacks at the end (raw framing, absolute-form targets,
 * smuggling, hosted tools, priority tier) are the attacker's review; `it.fails` marks an opening
 * the lead still has to close in code this suite does not own.
 */
import { createHash, randomBytes } from 'node:crypto';
import { connect as netConnect } from 'node:net';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { reservationBound } from '../../host/pricing.ts';
import { requiredScope, scopeGrants } from '../../host/request/scopes.ts';
import {
  ANTHROPIC_ENDPOINTS,
  AZURE_DEPLOYMENT_ENDPOINTS,
  GEMINI_NATIVE_ENDPOINTS,
  OPENAI_ENDPOINTS,
  providerHostData,
  providerSpec,
  type EndpointSpec,
} from '../../protocol/index.ts';
import type { RecordedRequest } from '../mock-upstream/index.ts';
import { adminApi, connectTestProvider, eventually, startTestStack } from './helpers.ts';

const SEED = Number(process.env.SG_PROPERTY_SEED ?? 16_2026);
const RUNS = Number(process.env.SG_PROPERTY_RUNS ?? 120);

let stack: Awaited<ReturnType<typeof startTestStack>>;
let port: number;
const IP = '81.2.69.142';
const OTHER_IP = '200.160.2.3';
const VICTIM_IP = '89.160.20.112';

type Conn = 'openai' | 'anthropic' | 'gemini-native' | 'azure' | 'any';
const connections = {} as Record<Conn, string>;
let projectId: string;

// ---------------------------------------------------------------------------------------------
// Raw HTTP/1.1 over a socket: nothing between the test and the gateway rewrites the request.

interface Wire {
  method: string;
  target: string;
  /** Header lines in order, duplicates and odd spellings kept. */
  headers: Array<[string, string]>;
  body?: Buffer;
  /** How the body is framed: Content-Length, chunked, both (a smuggling classic), or as given in `headers`. */
  framing: 'length' | 'chunked' | 'both' | 'given';
}

interface Answer {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
}

function serialise(w: Wire): Buffer {
  const lines = [`${w.method} ${w.target} HTTP/1.1`, `Host: 127.0.0.1:${port}`, ...w.headers.map(([k, v]) => `${k}: ${v}`)];
  const body = w.body ?? Buffer.alloc(0);
  let payload = body;
  if (w.framing === 'length' && (w.body !== undefined || w.method === 'POST')) lines.push(`Content-Length: ${body.length}`);
  if (w.framing === 'chunked' || w.framing === 'both') {
    lines.push('Transfer-Encoding: chunked');
    if (w.framing === 'both') lines.push(`Content-Length: ${body.length}`);
    payload = Buffer.concat([body.length ? Buffer.from(`${body.length.toString(16)}\r\n`) : Buffer.alloc(0), body, body.length ? Buffer.from('\r\n') : Buffer.alloc(0), Buffer.from('0\r\n\r\n')]);
  }
  lines.push('Connection: close');
  return Buffer.concat([Buffer.from(`${lines.join('\r\n')}\r\n\r\n`, 'latin1'), payload]);
}

/** Parses every response on a connection (1xx skipped); chunked bodies are de-chunked. */
export function parseResponses(data: Buffer): Answer[] {
  const out: Answer[] = [];
  let p = 0;
  while (p < data.length) {
    const end = data.indexOf('\r\n\r\n', p);
    if (end < 0) break;
    const head = data.subarray(p, end).toString('latin1').split('\r\n');
    const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(head[0] ?? '')?.[1] ?? 0);
    const headers: Record<string, string> = {};
    for (const line of head.slice(1)) {
      const c = line.indexOf(':');
      if (c > 0) headers[line.slice(0, c).trim().toLowerCase()] ??= line.slice(c + 1).trim();
    }
    p = end + 4;
    if (status >= 100 && status < 200) continue;
    let body: Buffer;
    if (/chunked/i.test(headers['transfer-encoding'] ?? '')) {
      const parts: Buffer[] = [];
      for (;;) {
        const le = data.indexOf('\r\n', p);
        if (le < 0) {
          p = data.length;
          break;
        }
        const size = parseInt(data.subarray(p, le).toString('latin1'), 16);
        p = le + 2;
        if (!(size > 0)) {
          p = Math.min(data.length, p + 2);
          break;
        }
        parts.push(data.subarray(p, p + size));
        p += size + 2;
      }
      body = Buffer.concat(parts);
    } else if (headers['content-length'] !== undefined) {
      const n = Number(headers['content-length']);
      body = data.subarray(p, p + n);
      p += n;
    } else {
      body = data.subarray(p);
      p = data.length;
    }
    out.push({ status, headers, body });
  }
  return out;
}

/** Writes raw bytes to the gateway and reads until it closes the connection. */
function exchange(bytes: Buffer, timeoutMs = 15_000): Promise<Answer[]> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const socket = netConnect(port, '127.0.0.1');
    const timer = setTimeout(() => socket.destroy(new Error('no complete answer in time')), timeoutMs);
    socket.on('data', (c) => chunks.push(c));
    socket.on('error', (e) => {
      clearTimeout(timer);
      // The server may reset after answering: what arrived is the answer.
      if (chunks.length) resolve(parseResponses(Buffer.concat(chunks)));
      else reject(e);
    });
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(parseResponses(Buffer.concat(chunks)));
    });
    socket.write(bytes);
  });
}

async function sendWire(w: Wire): Promise<{ answers: Answer[]; upstream: RecordedRequest[] }> {
  const before = stack.mock!.requests.length;
  const answers = await exchange(serialise(w));
  // Multipart parts are recorded asynchronously by the mock; they are complete once it answered.
  return { answers, upstream: stack.mock!.requests.slice(before) };
}

// ---------------------------------------------------------------------------------------------
// Setup.

const admin = <T = Record<string, unknown>>(method: string, path: string, body?: unknown) => adminApi(stack)<T>(method, path, body);

const connect = (provider: string, allowRules?: string[]) => connectTestProvider(stack, provider, allowRules ? { authScheme: 'bearer', allowRules } : {});

interface KeyConfig {
  models: string[];
  scopes: string[] | undefined;
  dailyLimit: number | null;
}

async function newKey(conn: Conn, config: KeyConfig): Promise<{ id: string; key: string }> {
  const r = await admin<{ id: string; key: string }>('POST', '/keys', {
    connectionId: connections[conn],
    confirmUnknown: true,
    ...(config.models.length ? { models: config.models } : {}),
    ...(config.scopes ? { scopes: config.scopes } : {}),
    ...(config.dailyLimit !== null ? { dailyLimit: config.dailyLimit } : {}),
  });
  if (r.status !== 201) throw new Error(`key creation failed: ${JSON.stringify(r.json)}`);
  return r.json;
}

beforeAll(async () => {
  stack = await startTestStack({ hostArgs: ['--trusted-proxy', 'loopback', '--velocity-floor', '100000000'] });
  port = Number(new URL(stack.hostUrl).port);
  connections.openai = stack.demo!.connectionId;
  [connections.anthropic, connections['gemini-native'], connections.azure, connections.any] = await Promise.all([
    connect('anthropic'),
    connect('gemini-native'),
    connect('azure'),
    connect('any', ['GET /v1/ping', 'POST /v1/echo']),
  ]);
  const list = await admin<Array<{ id: string; projectId: string }> | { items: Array<{ id: string; projectId: string }> }>('GET', '/connections');
  const items = Array.isArray(list.json) ? list.json : list.json.items;
  projectId = items.find((c) => c.id === connections.openai)!.projectId;
  // An alias the model lock must see through: `fast` is gpt-4o-mini.
  expect((await admin('PUT', `/projects/${projectId}/aliases/fast`, { target: 'gpt-4o-mini' })).status).toBe(200);
}, 120_000);

afterAll(async () => {
  await stack?.cleanup();
});

// ---------------------------------------------------------------------------------------------
// The endpoint catalogue: one generator per declared endpoint row.

const E = OPENAI_ENDPOINTS;
const row = (rows: EndpointSpec[], id: string): EndpointSpec => rows.find((r) => r.id === id)!;
/** Any-API calls have no table: the connection's sealed allow-list grants method and path. */
const ANY_ROW = (access: 'read' | 'write'): EndpointSpec => ({ id: 'any', method: access === 'read' ? 'GET' : 'POST', path: /^/, kind: 'any', access, body: 'binary', model: { in: 'none' }, price: { unit: 'request' } });

type BodyKind = 'none' | 'json' | 'multipart-model' | 'multipart-upload' | 'multipart-data';

interface Sample {
  conn: Conn;
  row: EndpointSpec;
  method: string;
  /** Concrete paths; path-named models use `{m}`. */
  paths: string[];
  body: BodyKind;
  /** Models this endpoint is called with (the first ones are what locked keys allow). */
  models: string[];
  json?: (model: string, extra: Extra) => Record<string, unknown>;
}

interface Extra {
  maxTokens: number;
  n: number | undefined;
  stream: boolean;
}

const messages = [{ role: 'user', content: 'hi' }];
const CHAT = ['gpt-4o-mini', 'fast', 'gpt-4o', 'o1-pro', 'GPT-4O-MINI', 'gpt-4o-mini '];
const CLAUDE = ['claude-3-5-haiku-latest', 'claude-opus-4-1', 'claude-sonnet-4-5'];
const GEMINI = ['gemini-2.0-flash', 'gemini-2.5-pro'];
const AZURE = ['prod-mini', 'prod-gpt5'];

const SAMPLES: Sample[] = [
  { conn: 'openai', row: E.chat, method: 'POST', paths: ['/v1/chat/completions'], body: 'json', models: CHAT, json: (m, x) => ({ model: m, messages, max_tokens: x.maxTokens, ...(x.n ? { n: x.n } : {}), ...(x.stream ? { stream: true } : {}) }) },
  { conn: 'openai', row: E.chatList, method: 'GET', paths: ['/v1/chat/completions', '/v1/chat/completions?limit=1'], body: 'none', models: [] },
  { conn: 'openai', row: E.chatGet, method: 'GET', paths: ['/v1/chat/completions/chatcmpl-abc', '/v1/chat/completions/chatcmpl-abc/messages'], body: 'none', models: [] },
  { conn: 'openai', row: E.chatUpdate, method: 'POST', paths: ['/v1/chat/completions/chatcmpl-abc'], body: 'json', models: [], json: () => ({ metadata: { a: 'b' } }) },
  { conn: 'openai', row: E.chatDelete, method: 'DELETE', paths: ['/v1/chat/completions/chatcmpl-abc'], body: 'none', models: [] },
  { conn: 'openai', row: E.completions, method: 'POST', paths: ['/v1/completions'], body: 'json', models: ['gpt-3.5-turbo-instruct', 'davinci-002'], json: (m, x) => ({ model: m, prompt: 'hi', max_tokens: x.maxTokens, ...(x.n ? { n: x.n } : {}) }) },
  { conn: 'openai', row: E.embeddings, method: 'POST', paths: ['/v1/embeddings'], body: 'json', models: ['text-embedding-3-small', 'text-embedding-3-large'], json: (m) => ({ model: m, input: 'hi' }) },
  { conn: 'openai', row: E.responses, method: 'POST', paths: ['/v1/responses'], body: 'json', models: CHAT, json: (m, x) => ({ model: m, input: 'hi', max_output_tokens: x.maxTokens, ...(x.stream ? { stream: true } : {}) }) },
  { conn: 'openai', row: E.responsesInputTokens, method: 'POST', paths: ['/v1/responses/input_tokens'], body: 'json', models: CHAT, json: (m) => ({ model: m, input: 'hi' }) },
  { conn: 'openai', row: E.responsesGet, method: 'GET', paths: ['/v1/responses/resp_abc', '/v1/responses/resp_abc/input_items'], body: 'none', models: [] },
  { conn: 'openai', row: E.responsesCancel, method: 'POST', paths: ['/v1/responses/resp_abc/cancel'], body: 'none', models: [] },
  { conn: 'openai', row: E.responsesDelete, method: 'DELETE', paths: ['/v1/responses/resp_abc'], body: 'none', models: [] },
  { conn: 'openai', row: E.models, method: 'GET', paths: ['/v1/models'], body: 'none', models: [] },
  { conn: 'openai', row: E.modelGet, method: 'GET', paths: ['/v1/models/gpt-4o-mini', '/v1/models/o1-pro'], body: 'none', models: [] },
  { conn: 'openai', row: E.modelDelete, method: 'DELETE', paths: ['/v1/models/ft:gpt-4o-mini:acme:x:1'], body: 'none', models: [] },
  { conn: 'openai', row: E.moderations, method: 'POST', paths: ['/v1/moderations'], body: 'json', models: ['omni-moderation-latest', 'gpt-4o'], json: (m) => ({ model: m, input: 'hi' }) },
  { conn: 'openai', row: E.audioTranscriptions, method: 'POST', paths: ['/v1/audio/transcriptions', '/v1/audio/translations'], body: 'multipart-model', models: ['whisper-1', 'gpt-4o-transcribe'] },
  { conn: 'openai', row: E.audioSpeech, method: 'POST', paths: ['/v1/audio/speech'], body: 'json', models: ['tts-1', 'tts-1-hd'], json: (m) => ({ model: m, input: 'hi', voice: 'alloy' }) },
  { conn: 'openai', row: E.imagesGenerations, method: 'POST', paths: ['/v1/images/generations'], body: 'json', models: ['dall-e-2', 'dall-e-3'], json: (m, x) => ({ model: m, prompt: 'a cat', size: '256x256', ...(x.n ? { n: Math.min(x.n, 4) } : {}) }) },
  { conn: 'openai', row: E.imagesEdits, method: 'POST', paths: ['/v1/images/edits', '/v1/images/variations'], body: 'multipart-model', models: ['dall-e-2', 'gpt-image-1'] },
  { conn: 'openai', row: E.filesList, method: 'GET', paths: ['/v1/files'], body: 'none', models: [] },
  { conn: 'openai', row: E.filesUpload, method: 'POST', paths: ['/v1/files'], body: 'multipart-upload', models: ['gpt-4o-mini', 'o1-pro'] },
  { conn: 'openai', row: E.filesGet, method: 'GET', paths: ['/v1/files/file-abc', '/v1/files/file-abc/content'], body: 'none', models: [] },
  { conn: 'openai', row: E.filesDelete, method: 'DELETE', paths: ['/v1/files/file-abc'], body: 'none', models: [] },
  { conn: 'openai', row: E.uploadsCreate, method: 'POST', paths: ['/v1/uploads'], body: 'json', models: [], json: () => ({ purpose: 'batch', filename: 'b.jsonl', bytes: 10, mime_type: 'text/jsonl' }) },
  { conn: 'openai', row: E.uploadsPart, method: 'POST', paths: ['/v1/uploads/upload_abc/parts'], body: 'multipart-data', models: [] },
  { conn: 'openai', row: E.uploadsFinish, method: 'POST', paths: ['/v1/uploads/upload_abc/complete', '/v1/uploads/upload_abc/cancel'], body: 'json', models: [], json: () => ({ part_ids: [] }) },
  { conn: 'openai', row: E.batchesCreate, method: 'POST', paths: ['/v1/batches'], body: 'json', models: [], json: () => ({ input_file_id: 'file-abc', endpoint: '/v1/chat/completions', completion_window: '24h' }) },
  { conn: 'openai', row: E.batchesList, method: 'GET', paths: ['/v1/batches', '/v1/batches/batch_abc'], body: 'none', models: [] },
  { conn: 'openai', row: E.batchesCancel, method: 'POST', paths: ['/v1/batches/batch_abc/cancel'], body: 'none', models: [] },
  { conn: 'openai', row: E.vectorStoresRead, method: 'GET', paths: ['/v1/vector_stores', '/v1/vector_stores/vs_abc/files'], body: 'none', models: [] },
  { conn: 'openai', row: E.vectorStoresWrite, method: 'POST', paths: ['/v1/vector_stores', '/v1/vector_stores/vs_abc'], body: 'json', models: [], json: () => ({ name: 'x' }) },
  { conn: 'openai', row: E.vectorStoresSearch, method: 'POST', paths: ['/v1/vector_stores/vs_abc/search'], body: 'json', models: [], json: () => ({ query: 'x' }) },
  { conn: 'openai', row: E.vectorStoresDelete, method: 'DELETE', paths: ['/v1/vector_stores/vs_abc'], body: 'none', models: [] },
  { conn: 'openai', row: E.fineTuningCreate, method: 'POST', paths: ['/v1/fine_tuning/jobs'], body: 'json', models: ['gpt-4o-mini', 'gpt-4o'], json: (m) => ({ model: m, training_file: 'file-abc' }) },
  { conn: 'openai', row: E.fineTuningRead, method: 'GET', paths: ['/v1/fine_tuning/jobs', '/v1/fine_tuning/jobs/ftjob-abc/events'], body: 'none', models: [] },
  { conn: 'openai', row: E.fineTuningControl, method: 'POST', paths: ['/v1/fine_tuning/jobs/ftjob-abc/cancel'], body: 'none', models: [] },
  {
    conn: 'anthropic', row: row(ANTHROPIC_ENDPOINTS, 'messages.create'), method: 'POST', paths: ['/v1/messages'], body: 'json', models: CLAUDE,
    json: (m, x) => ({ model: m, max_tokens: x.maxTokens, messages, ...(x.stream ? { stream: true } : {}) }),
  },
  { conn: 'anthropic', row: row(ANTHROPIC_ENDPOINTS, 'messages.count_tokens'), method: 'POST', paths: ['/v1/messages/count_tokens'], body: 'json', models: CLAUDE, json: (m) => ({ model: m, messages }) },
  { conn: 'anthropic', row: row(ANTHROPIC_ENDPOINTS, 'models.list'), method: 'GET', paths: ['/v1/models'], body: 'none', models: [] },
  { conn: 'anthropic', row: row(ANTHROPIC_ENDPOINTS, 'models.get'), method: 'GET', paths: ['/v1/models/claude-opus-4-1'], body: 'none', models: [] },
  {
    conn: 'gemini-native', row: row(GEMINI_NATIVE_ENDPOINTS, 'gemini.generate'), method: 'POST', paths: ['/v1beta/models/{m}:generateContent'], body: 'json', models: GEMINI,
    json: (_m, x) => ({ contents: [{ parts: [{ text: 'hi' }] }], generationConfig: { maxOutputTokens: x.maxTokens } }),
  },
  { conn: 'gemini-native', row: row(GEMINI_NATIVE_ENDPOINTS, 'gemini.count_tokens'), method: 'POST', paths: ['/v1beta/models/{m}:countTokens'], body: 'json', models: GEMINI, json: () => ({ contents: [{ parts: [{ text: 'hi' }] }] }) },
  { conn: 'gemini-native', row: row(GEMINI_NATIVE_ENDPOINTS, 'gemini.models'), method: 'GET', paths: ['/v1beta/models', '/v1beta/models/gemini-2.5-pro'], body: 'none', models: [] },
  {
    conn: 'azure', row: row(AZURE_DEPLOYMENT_ENDPOINTS, 'azure.chat'), method: 'POST', paths: ['/openai/deployments/{m}/chat/completions?api-version=2024-10-21'], body: 'json', models: AZURE,
    json: (_m, x) => ({ messages, max_tokens: x.maxTokens }),
  },
  { conn: 'azure', row: row(AZURE_DEPLOYMENT_ENDPOINTS, 'azure.embeddings'), method: 'POST', paths: ['/openai/deployments/{m}/embeddings?api-version=2024-10-21'], body: 'json', models: AZURE, json: () => ({ input: 'hi' }) },
  { conn: 'any', row: ANY_ROW('read'), method: 'GET', paths: ['/any/v1/ping', '/any/v1/ping?x=1'], body: 'none', models: [] },
  { conn: 'any', row: ANY_ROW('write'), method: 'POST', paths: ['/any/v1/echo'], body: 'json', models: [], json: () => ({ hello: 'world' }) },
];

/** Requests no endpoint row declares: refused whatever the key. */
const UNDECLARED: Array<{ conn: Conn; method: string; target: string }> = [
  { conn: 'openai', method: 'PUT', target: '/v1/files' },
  { conn: 'openai', method: 'PATCH', target: '/v1/chat/completions' },
  { conn: 'openai', method: 'POST', target: '/v1/organization/users' },
  { conn: 'openai', method: 'GET', target: '/v1/dashboard/billing/usage' },
  { conn: 'openai', method: 'POST', target: '/v1/chat/completions/' },
  { conn: 'openai', method: 'POST', target: '/v1//chat/completions' },
  { conn: 'openai', method: 'POST', target: '/v1/chat/./completions' },
  { conn: 'openai', method: 'POST', target: '/v1/chat/%63ompletions' },
  { conn: 'openai', method: 'POST', target: '/v1/realtime/sessions' },
  { conn: 'openai', method: 'POST', target: '/any/v1/chat/completions' },
  { conn: 'openai', method: 'POST', target: '/openai/deployments/gpt-4o/chat/completions' },
  { conn: 'anthropic', method: 'POST', target: '/v1/chat/completions' },
  { conn: 'anthropic', method: 'POST', target: '/v1/messages/batches' },
  { conn: 'anthropic', method: 'GET', target: '/v1/files' },
  { conn: 'anthropic', method: 'POST', target: '/v1/complete' },
  { conn: 'gemini-native', method: 'POST', target: '/v1beta/tunedModels' },
  { conn: 'gemini-native', method: 'POST', target: '/v1beta/models/gemini-2.0-flash:generateContent/../x' },
  { conn: 'azure', method: 'POST', target: '/openai/v1/chat/completions' },
  { conn: 'azure', method: 'POST', target: '/openai/deployments/prod-mini/fine_tuning/jobs' },
  { conn: 'any', method: 'POST', target: '/any/v1/ping' },
  { conn: 'any', method: 'GET', target: '/any/v1/ping/extra' },
  { conn: 'any', method: 'GET', target: '/any/v1/%70ing' },
];

/** What each provider's locked keys allow (the first models of the samples' pools). */
const ALLOWED: Record<Conn, string[]> = {
  openai: ['gpt-4o-mini', 'whisper-1', 'text-embedding-3-small', 'tts-1', 'dall-e-2', 'gpt-3.5-turbo-instruct', 'omni-moderation-latest'],
  anthropic: ['claude-3-5-haiku-latest'],
  'gemini-native': ['gemini-2.0-flash'],
  azure: ['prod-mini'],
  any: [],
};
const ALIASES: Record<string, string> = { fast: 'gpt-4o-mini' };

// ---------------------------------------------------------------------------------------------
// Request shapes.

const MEDIA_TYPES: Array<string | null | [string, string]> = [
  'application/json', 'Application/JSON', 'APPLICATION/JSON;charset="utf-8"', 'application/json; charset=UTF-8', 'application/vnd.api+json', 'text/json',
  'application/json;', ' application/json ', 'application/json; charset=utf-16', 'application/json, text/plain', 'application/json; charset=utf-8; charset=latin1',
  'text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', 'application/jsonx', 'application/json\tx',
  null, ['application/json', 'text/plain'], ['text/plain', 'application/json'],
];

type JsonShape =
  | 'plain' | 'dup-model' | 'dup-model-escaped' | 'escaped-key' | 'bom' | 'deep-63' | 'deep-65' | 'deep-500' | 'number-odd' | 'max-tokens-odd'
  | 'lone-surrogate' | 'trailing-garbage' | 'array' | 'proto' | 'whitespace' | 'model-number' | 'model-array' | 'model-null' | 'model-empty'
  | 'model-case-key' | 'nested-model' | 'utf8-invalid' | 'comment';

const JSON_SHAPES: JsonShape[] = [
  'plain', 'plain', 'plain', 'dup-model', 'dup-model-escaped', 'escaped-key', 'bom', 'deep-63', 'deep-65', 'deep-500', 'number-odd', 'max-tokens-odd',
  'lone-surrogate', 'trailing-garbage', 'array', 'proto', 'whitespace', 'model-number', 'model-array', 'model-null', 'model-empty', 'model-case-key',
  'nested-model', 'utf8-invalid', 'comment',
];

const ODD_NUMBERS = ['1e400', '-0', '1.0', '1E2', '0.0000001', '123456789012345678901234567890', '-1e-400', '0x10', 'NaN', '+1', '01', '1.', '.5'];

function jsonText(obj: Record<string, unknown>, shape: JsonShape, other: string, odd: string): Buffer {
  const text = JSON.stringify(obj);
  const inner = text.slice(1, -1);
  const sep = inner.length ? ',' : '';
  switch (shape) {
    case 'plain': return Buffer.from(text);
    case 'dup-model': return Buffer.from(`{${inner}${sep}"model":${JSON.stringify(other)}}`);
    case 'dup-model-escaped': return Buffer.from(`{"mod\\u0065l":${JSON.stringify(other)}${sep}${inner}}`);
    case 'escaped-key': return Buffer.from(text.replace('"model":', '"\\u006d\\u006f\\u0064\\u0065\\u006c":'));
    case 'bom': return Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(text)]);
    case 'deep-63': return Buffer.from(`{${inner}${sep}"metadata":{"x":${'['.repeat(61)}${']'.repeat(61)}}}`);
    case 'deep-65': return Buffer.from(`{${inner}${sep}"metadata":{"x":${'['.repeat(64)}${']'.repeat(64)}}}`);
    case 'deep-500': return Buffer.from(`{${inner}${sep}"x":${'['.repeat(500)}${']'.repeat(500)}}`);
    case 'number-odd': return Buffer.from(`{${inner}${sep}"temperature":${odd}}`);
    case 'max-tokens-odd': {
      // The endpoint's own output ceiling, spelt oddly (or added as max_tokens where it names none).
      const field = ['max_tokens', 'max_output_tokens'].find((f) => f in obj) ?? 'max_tokens';
      return Buffer.from(JSON.stringify({ ...obj, [field]: '\u0000ODD' }).replace('"\\u0000ODD"', odd));
    }
    case 'lone-surrogate': return Buffer.from(`{${inner}${sep}"user":"\\ud800"}`);
    case 'trailing-garbage': return Buffer.from(`${text} {"model":${JSON.stringify(other)}}`);
    case 'array': return Buffer.from(`[${text}]`);
    case 'proto': return Buffer.from(`{"__proto__":{"model":${JSON.stringify(other)}}${sep}${inner}}`);
    case 'whitespace': return Buffer.from(`\r\n\t ${text} \n`);
    case 'model-number': return Buffer.from(JSON.stringify({ ...obj, model: 4 }));
    case 'model-array': return Buffer.from(JSON.stringify({ ...obj, model: [obj.model ?? other, other] }));
    case 'model-null': return Buffer.from(JSON.stringify({ ...obj, model: null }));
    case 'model-empty': return Buffer.from(JSON.stringify({ ...obj, model: '' }));
    case 'model-case-key': return Buffer.from(`{${inner}${sep}"Model":${JSON.stringify(other)},"MODEL":${JSON.stringify(other)}}`);
    case 'nested-model': return Buffer.from(JSON.stringify({ ...obj, metadata: { model: other } }));
    case 'utf8-invalid': return Buffer.from(`{${inner}${sep}"user":"\xff\xfe"}`, 'latin1');
    case 'comment': return Buffer.from(`/* c */${text}`);
  }
}

/** Multipart shapes: what could make two form parsers read different fields. */
type PartShape =
  | 'plain' | 'dup-model' | 'unquoted-name' | 'star-name' | 'lower-header' | 'upper-header' | 'no-close' | 'lf-only' | 'model-as-file'
  | 'model-with-type' | 'model-list' | 'preamble' | 'epilogue' | 'spaced-params' | 'single-quotes' | 'cte-base64' | 'model-case' | 'folded-header'
  | 'name-with-semicolon' | 'filename-star' | 'no-model' | 'model-after-file' | 'transport-padding';

const PART_SHAPES: PartShape[] = [
  'plain', 'plain', 'plain', 'dup-model', 'unquoted-name', 'star-name', 'lower-header', 'upper-header', 'no-close', 'lf-only', 'model-as-file',
  'model-with-type', 'model-list', 'preamble', 'epilogue', 'spaced-params', 'single-quotes', 'cte-base64', 'model-case', 'folded-header',
  'name-with-semicolon', 'filename-star', 'no-model', 'model-after-file', 'transport-padding',
];

type BoundaryStyle = 'plain' | 'quoted' | 'upper-param' | 'dup-param' | 'missing' | 'type-case' | 'escaped' | 'too-long';
const BOUNDARY_STYLES: BoundaryStyle[] = ['plain', 'plain', 'plain', 'quoted', 'upper-param', 'dup-param', 'missing', 'type-case', 'escaped', 'too-long'];

interface Part {
  name: string;
  filename?: string;
  type?: string;
  value: Buffer;
}

function multipartBody(parts: Part[], boundary: string, shape: PartShape, other: string): Buffer {
  const nl = shape === 'lf-only' ? '\n' : '\r\n';
  const cd = shape === 'lower-header' ? 'content-disposition' : shape === 'upper-header' ? 'CONTENT-DISPOSITION' : 'Content-Disposition';
  const out: Buffer[] = [];
  if (shape === 'preamble') out.push(Buffer.from(`this is a preamble${nl}`));
  let list = parts;
  if (shape === 'dup-model') list = [...parts, { name: 'model', value: Buffer.from(other) }];
  if (shape === 'no-model') list = parts.filter((p) => p.name !== 'model');
  if (shape === 'model-after-file') list = [...parts.filter((p) => p.name !== 'model'), ...parts.filter((p) => p.name === 'model')];
  if (shape === 'model-list') list = parts.map((p) => (p.name === 'model' ? { ...p, name: 'model[]' } : p));
  for (const p of list) {
    const isModel = p.name === 'model';
    let disposition = `form-data; name="${p.name}"${p.filename ? `; filename="${p.filename}"` : ''}`;
    if (isModel) {
      if (shape === 'unquoted-name') disposition = 'form-data; name=model';
      if (shape === 'star-name') disposition = `form-data; name*=UTF-8''model`;
      if (shape === 'spaced-params') disposition = 'form-data ; name = "model"';
      if (shape === 'single-quotes') disposition = "form-data; name='model'";
      if (shape === 'model-as-file') disposition = 'form-data; name="model"; filename="m.txt"';
      if (shape === 'model-case') disposition = 'form-data; name="Model"';
      if (shape === 'name-with-semicolon') disposition = 'form-data; name="model;x"';
      if (shape === 'filename-star') disposition = `form-data; name="model"; filename*=UTF-8''m.txt`;
    }
    const headers = [`${cd}: ${disposition}`];
    if (p.type) headers.push(`Content-Type: ${p.type}`);
    if (isModel && shape === 'model-with-type') headers.push('Content-Type: text/plain');
    if (isModel && shape === 'cte-base64') headers.push('Content-Transfer-Encoding: base64');
    if (shape === 'folded-header' && isModel) headers[0] = `${cd}: form-data;${nl} name="model"`;
    const value = isModel && shape === 'cte-base64' ? Buffer.from(p.value.toString('base64')) : p.value;
    out.push(Buffer.from(`--${boundary}${shape === 'transport-padding' ? '  ' : ''}${nl}${headers.join(nl)}${nl}${nl}`), value, Buffer.from(nl));
  }
  if (shape !== 'no-close') out.push(Buffer.from(`--${boundary}--${nl}`));
  if (shape === 'epilogue') out.push(Buffer.from(`--${boundary}${nl}${cd}: form-data; name="model"${nl}${nl}${other}${nl}--${boundary}--${nl}`));
  return Buffer.concat(out);
}

function multipartType(boundary: string, style: BoundaryStyle): string | null {
  switch (style) {
    case 'plain': return `multipart/form-data; boundary=${boundary}`;
    case 'quoted': return `multipart/form-data; boundary="${boundary}"`;
    case 'upper-param': return `multipart/form-data; BOUNDARY=${boundary}`;
    case 'dup-param': return `multipart/form-data; boundary=${boundary}; boundary=other${boundary}`;
    case 'missing': return 'multipart/form-data';
    case 'type-case': return `Multipart/Form-Data; boundary=${boundary}`;
    case 'escaped': return `multipart/form-data; boundary="${boundary.slice(0, 4)}\\${boundary.slice(4)}"`;
    case 'too-long': return `multipart/form-data; boundary=${boundary}${'x'.repeat(80)}`;
  }
}

const batchLine = (model: string, i: number) => JSON.stringify({ custom_id: String(i), method: 'POST', url: '/v1/chat/completions', body: { model, messages: [] } });

// ---------------------------------------------------------------------------------------------
// Headers: authentication spellings, forwarding headers, selectors and overrides.

type AuthStyle = 'bearer' | 'bearer-lower' | 'x-api-key' | 'api-key' | 'x-goog-api-key' | 'two-keys';
const AUTH_STYLES: AuthStyle[] = ['bearer', 'bearer', 'bearer', 'bearer-lower', 'x-api-key', 'api-key', 'x-goog-api-key', 'two-keys'];

function authHeaders(style: AuthStyle, key: string, other: string): Array<[string, string]> {
  switch (style) {
    case 'bearer': return [['Authorization', `Bearer ${key}`]];
    case 'bearer-lower': return [['authorization', `bearer  ${key}`]];
    case 'x-api-key': return [['x-api-key', key]];
    case 'api-key': return [['api-key', key]];
    case 'x-goog-api-key': return [['x-goog-api-key', key]];
    // Node keeps the first Authorization: does the gateway authenticate the one it forwards?
    case 'two-keys': return [['Authorization', `Bearer ${key}`], ['Authorization', `Bearer ${other}`]];
  }
}

/** X-Forwarded-For header lines, and the client address the loopback preset must derive from them. */
const XFF_SHAPES: Array<{ lines: string[]; client: string | undefined }> = [
  { lines: [IP], client: IP },
  { lines: [IP], client: IP },
  { lines: [`${OTHER_IP}, ${IP}`], client: IP },
  { lines: [`${IP}, 127.0.0.1`], client: IP },
  { lines: [OTHER_IP, IP], client: IP },
  { lines: [`${IP}:4711`], client: IP },
  { lines: [`[::ffff:${IP}]`], client: IP },
  { lines: [OTHER_IP], client: OTHER_IP },
  { lines: ['unknown'], client: undefined },
  { lines: [`${IP}, garbage`], client: undefined },
  { lines: [], client: undefined },
];

const EXTRA_HEADERS: Array<Array<[string, string]>> = [
  [],
  [],
  [['OpenAI-Organization', 'org-attacker'], ['OpenAI-Project', 'proj_attacker']],
  [['X-HTTP-Method-Override', 'DELETE'], ['X-Method-Override', 'DELETE'], ['X-HTTP-Method', 'DELETE']],
  [['CF-Connecting-IP', VICTIM_IP], ['True-Client-IP', VICTIM_IP]],
  [['Forwarded', `for=${VICTIM_IP}`], ['X-Real-IP', VICTIM_IP]],
  [['Accept-Encoding', 'gzip, br']],
  [['anthropic-beta', 'files-api-2025-04-14'], ['anthropic-version', '2023-06-01']],
  [['X-Original-URL', '/v1/files'], ['X-Rewrite-URL', '/v1/files']],
  [['Content-Encoding', 'gzip']],
  [['x-stainless-retry-count', '0'], ['User-Agent', 'OpenAI/JS 5.0.0']],
];

const FORBIDDEN_UPSTREAM_HEADERS = [
  'openai-organization', 'openai-project', 'x-http-method-override', 'x-method-override', 'x-http-method', 'cf-connecting-ip', 'true-client-ip',
  'forwarded', 'x-forwarded-for', 'x-real-ip', 'x-original-url', 'x-rewrite-url', 'x-device-fingerprint', 'cookie',
];

// ---------------------------------------------------------------------------------------------
// One attempt: what to send, and what the invariants need to know about it.

interface Attempt {
  sample: Sample;
  wire: Wire;
  /** The client address the trusted proxy names, or undefined when it cannot be told. */
  client: string | undefined;
  /** A body the gateway may legitimately re-serialise (alias rewrite, injected stream usage). */
  mayRewrite: boolean;
  /** A streamed upload: a refusal may come after a prefix went upstream (never a complete body). */
  streamed: boolean;
  /** A method and path no endpoint row declares: must be refused. */
  undeclared: boolean;
  label: string;
}

type Mutation = 'none' | 'json' | 'media' | 'multipart' | 'boundary' | 'auth' | 'xff' | 'extra' | 'framing' | 'undeclared' | 'combo';

/** Stands for the run's key in generated headers (keys are created inside the property). */
const KEY = 'SG_KEY_OF_THIS_RUN';

const attemptArb = (conn: Conn) =>
  fc
    .record({
      sample: fc.constantFrom(...SAMPLES.filter((s) => s.conn === conn)),
      pathIndex: fc.nat(3),
      model: fc.nat(10),
      other: fc.integer({ min: 5, max: 10 }),
      jsonShape: fc.constantFrom(...JSON_SHAPES),
      odd: fc.constantFrom(...ODD_NUMBERS),
      mediaType: fc.constantFrom(...MEDIA_TYPES),
      partShape: fc.constantFrom(...PART_SHAPES),
      boundaryStyle: fc.constantFrom(...BOUNDARY_STYLES),
      purpose: fc.constantFrom('batch', 'BATCH', ' batch', 'fine-tune', 'assistants', 'user_data'),
      purposeFirst: fc.boolean(),
      lineModels: fc.array(fc.nat(3), { minLength: 1, maxLength: 4 }),
      auth: fc.constantFrom(...AUTH_STYLES),
      xff: fc.constantFrom(...XFF_SHAPES),
      extra: fc.constantFrom(...EXTRA_HEADERS),
      framing: fc.constantFrom<Wire['framing']>('length', 'length', 'length', 'chunked', 'both'),
      maxTokens: fc.constantFrom(1, 16, 200, 4000, 100_000),
      n: fc.option(fc.integer({ min: 1, max: 64 }), { nil: undefined }),
      stream: fc.boolean(),
      undeclaredTarget: fc.constantFrom(...UNDECLARED.filter((u) => u.conn === conn)),
      // Mostly one hostile dimension at a time (so each is seen against admissions), sometimes all.
      mutation: fc.oneof(
        { weight: 5, arbitrary: fc.constant<Mutation>('none') },
        { weight: 9, arbitrary: fc.constantFrom<Mutation>('json', 'media', 'multipart', 'boundary', 'auth', 'xff', 'extra', 'framing', 'undeclared') },
        { weight: 1, arbitrary: fc.constant<Mutation>('combo') },
      ),
    })
    .map((raw): Attempt => {
      const on = (m: Mutation) => raw.mutation === m || raw.mutation === 'combo';
      const g = {
        ...raw,
        jsonShape: on('json') ? raw.jsonShape : 'plain',
        mediaType: on('media') ? raw.mediaType : 'application/json',
        partShape: on('multipart') ? raw.partShape : 'plain',
        boundaryStyle: on('boundary') ? raw.boundaryStyle : 'plain',
        auth: on('auth') ? raw.auth : 'bearer',
        xff: on('xff') ? raw.xff : XFF_SHAPES[0]!,
        extra: on('extra') ? raw.extra : [],
        framing: on('framing') ? raw.framing : 'length',
        undeclared: on('undeclared') ? raw.undeclaredTarget : undefined,
      } as const;
      const s = g.sample;
      // Half the time the first model of the pool (what locked keys allow), else any.
      const pick = (pool: string[], i: number) => (i < 5 ? pool[0] : pool[i % pool.length]) ?? 'gpt-4o-mini';
      const model = pick(s.models.length ? s.models : ['gpt-4o-mini'], g.model);
      const other = pick(s.models.length ? s.models : CHAT, g.other);
      let target = s.paths[g.pathIndex % s.paths.length]!.replace('{m}', model);
      let method = s.method;
      const headers: Array<[string, string]> = [...authHeaders(g.auth, KEY, stack.demo!.key)];
      for (const line of g.xff.lines) headers.push(['X-Forwarded-For', line]);
      headers.push(...g.extra);
      let body: Buffer | undefined;
      let mayRewrite = ALIASES[model] !== undefined && s.row.model.in !== 'path';
      let streamed = false;
      let label = `${s.row.id} ${target}`;
      if (s.body === 'json' && s.json) {
        const obj = s.json(model, { maxTokens: g.maxTokens, n: g.n, stream: g.stream });
        body = jsonText(obj, g.jsonShape, other, g.odd);
        if (g.stream && s.row.stream === 'openai') mayRewrite = true;
        label += ` json:${g.jsonShape}`;
        if (g.mediaType === null) label += ' ct:none';
        else if (Array.isArray(g.mediaType)) {
          for (const t of g.mediaType) headers.push(['Content-Type', t]);
          label += ` ct:${g.mediaType.join('|')}`;
        } else {
          headers.push(['Content-Type', g.mediaType]);
          label += ` ct:${g.mediaType}`;
        }
      } else if (s.body === 'none' && method === 'POST' && g.jsonShape === 'plain' && g.stream) {
        // A POST action with an (ignored) JSON object.
        body = Buffer.from('{}');
        headers.push(['Content-Type', 'application/json']);
      } else if (s.body.startsWith('multipart')) {
        const boundary = `----sgprop${randomBytes(6).toString('hex')}`;
        let parts: Part[];
        if (s.body === 'multipart-model') {
          const file: Part = s.row.id === 'images.edits'
            ? { name: 'image', filename: 'a.png', type: 'image/png', value: randomBytes(48) }
            : { name: 'file', filename: 'a.wav', type: 'audio/wav', value: randomBytes(48) };
          parts = [file, { name: 'model', value: Buffer.from(model) }];
          if (s.row.id === 'images.edits') parts.push({ name: 'prompt', value: Buffer.from('a cat') });
        } else if (s.body === 'multipart-upload') {
          const lines = g.lineModels.map((i, n) => batchLine(pick(s.models, i), n)).join('\n');
          const purpose: Part = { name: 'purpose', value: Buffer.from(g.purpose) };
          const file: Part = { name: 'file', filename: 'batch.jsonl', type: 'application/jsonl', value: Buffer.from(lines) };
          parts = g.purposeFirst ? [purpose, file] : [file, purpose];
          streamed = true;
          label += ` purpose:${JSON.stringify(g.purpose)} first:${g.purposeFirst} lines:${g.lineModels.join('')}`;
        } else {
          parts = [{ name: 'data', filename: 'part.bin', type: 'application/octet-stream', value: randomBytes(32) }];
          streamed = true;
        }
        body = multipartBody(parts, boundary, g.partShape, other);
        const type = multipartType(boundary, g.boundaryStyle);
        if (type !== null) headers.push(['Content-Type', type]);
        label += ` mp:${g.partShape} b:${g.boundaryStyle}`;
      }
      if (g.undeclared) {
        method = g.undeclared.method;
        target = g.undeclared.target;
        label = `undeclared ${method} ${target}`;
      }
      label += ` auth:${g.auth} xff:${g.xff.lines.join('|') || '-'} extra:${g.extra.map(([k]) => k).join('|') || '-'} framing:${g.framing}`;
      return { sample: s, wire: { method, target, headers, ...(body ? { body } : {}), framing: g.framing }, client: g.xff.client, mayRewrite, streamed, undeclared: g.undeclared !== undefined, label };
    });

const keyConfigArb = (conn: Conn) =>
  fc.record({
    models: fc.oneof(fc.constant([] as string[]), fc.subarray(ALLOWED[conn], { minLength: Math.min(1, ALLOWED[conn].length) })),
    scopes: fc.oneof(
      fc.constantFrom<string[] | undefined>(undefined, ['inference'], ['inference', 'files'], ['inference', 'files:read'], ['models:read'], ['files:read', 'files:delete']),
      // Every scope, so that endpoints beyond inference are admitted too and their other invariants checked.
      fc.constant<string[] | undefined>(['inference', 'files', 'files:delete', 'uploads', 'batches', 'fine_tuning', 'fine_tuning:delete', 'stored', 'stored:delete', 'vector_stores', 'vector_stores:delete']),
    ),
    dailyLimit: fc.constantFrom<number | null>(null, null, 0.000001, 0.0005, 0.003, 0.05),
  });

// ---------------------------------------------------------------------------------------------
// The invariants.

/** Codes a streamed upload may be refused with after a prefix of it went upstream. */
const STREAMED_REFUSALS = new Set(['invalid_request', 'model_not_allowed', 'request_too_large']);

function errorShapeOk(conn: Conn, body: Buffer, code: string): string | undefined {
  let json: { type?: unknown; error?: { message?: unknown; type?: unknown; code?: unknown } };
  try {
    json = JSON.parse(body.toString('utf8'));
  } catch {
    return `refusal body is not JSON: ${body.toString('utf8').slice(0, 120)}`;
  }
  const e = json.error;
  if (!e || typeof e.message !== 'string' || typeof e.type !== 'string' || e.code !== code) return `refusal body lacks error.{message,type,code=${code}}`;
  // A gateway refusal is in the shape of the provider the key's connection speaks.
  const anthropicShape = json.type === 'error';
  const want = providerHostData(conn)!.errorShape === 'anthropic';
  if (anthropicShape !== want) return `refusal body in the ${anthropicShape ? 'anthropic' : 'openai'} shape on a ${conn} connection`;
  return undefined;
}

interface KeyState {
  id: string;
  key: string;
  config: KeyConfig;
  conn: Conn;
  admittedFrom: Set<string>;
}

/** Checks one answered attempt; returns the violations (empty when all invariants hold). */
function violations(k: KeyState, a: Attempt, answers: Answer[], upstream: RecordedRequest[], strictShape: boolean): string[] {
  const v: string[] = [];
  const sent = a.wire.body ?? Buffer.alloc(0);
  if (answers.length !== 1) {
    v.push(`expected one answer on the connection, got ${answers.length}`);
    if (answers.length === 0) return v;
  }
  const answer = answers[0]!;
  if (answer.status >= 500 || answer.status < 100) v.push(`status ${answer.status}`);
  const code = answer.headers['x-sg-code'];
  if (upstream.length > 1) v.push(`one request reached the upstream ${upstream.length} times`);
  if (code !== undefined) {
    // (a) a gateway refusal never reaches the upstream (a streamed upload only as an unusable prefix).
    if (answer.status < 400) v.push(`x-sg-code ${code} on status ${answer.status}`);
    for (const u of upstream) {
      const prefixOnly = a.streamed && STREAMED_REFUSALS.has(code) && (u.aborted === true || u.bodyBytes < sent.length) && !u.parts;
      if (!prefixOnly) v.push(`refused (${code}) but the upstream got ${u.method} ${u.path} (${u.bodyBytes} bytes${u.aborted ? ', aborted' : ''})`);
    }
    // (d) the provider's error shape, carrying the code.
    const shape = errorShapeOk(k.conn, answer.body, code);
    if (shape && (strictShape || !shape.includes('shape on a'))) v.push(shape);
    return v;
  }
  if (upstream.length === 0) {
    // Only the HTTP parser itself may answer without the gateway (malformed framing): a bare 400.
    if (answer.status !== 400) v.push(`status ${answer.status} with neither a gateway code nor an upstream request`);
    return v;
  }
  // (b) admitted: reached the upstream exactly as checked.
  const u = upstream[0]!;
  const s = a.sample;
  if (a.undeclared) v.push(`an undeclared request was admitted: ${a.wire.method} ${a.wire.target}`);
  if (u.method !== a.wire.method) v.push(`sent ${a.wire.method}, the upstream got ${u.method}`);
  const expectedPath = k.conn === 'any' ? a.wire.target.slice(4) : a.wire.target;
  if (u.path !== expectedPath) v.push(`sent ${a.wire.target}, the upstream got ${u.path}`);
  const atom = requiredScope(s.row.kind, s.row.access);
  if (!scopeGrants(k.config.scopes ?? ['inference'], atom)) v.push(`admitted ${s.row.id} needing ${atom} with scopes ${JSON.stringify(k.config.scopes ?? ['inference'])}`);
  if (k.config.models.length > 0 && s.row.model.in !== 'none' && s.row.model.in !== 'upload') {
    const seen: unknown[] = [...(u.models ?? [])];
    if (s.row.model.in === 'path') seen.push(/\/models\/([^/:]+):|\/deployments\/([^/]+)\//.exec(u.path)?.slice(1).find(Boolean));
    if (seen.length === 0) v.push(`a model-locked key's ${s.row.id} request reached the upstream naming no model it could read`);
    for (const m of seen) if (typeof m !== 'string' || !k.config.models.includes(m)) v.push(`the upstream got model ${JSON.stringify(m)}; the key allows ${k.config.models.join(', ')}`);
  }
  if (!a.mayRewrite && u.bodySha256 !== createHash('sha256').update(sent).digest('hex')) {
    v.push(`the upstream got ${u.bodyBytes} bytes that differ from the ${sent.length} checked`);
  }
  for (const h of FORBIDDEN_UPSTREAM_HEADERS) if (u.headers[h] !== undefined) v.push(`header ${h} reached the upstream`);
  if (/gzip|br/.test(String(u.headers['accept-encoding'] ?? ''))) v.push('a compression request reached the upstream');
  if (JSON.stringify(u.headers).includes('SG_')) v.push('an SG_ key reached the upstream');
  // One key, one client address: admissions only from the address the trusted proxy names.
  if (a.client === undefined) v.push('admitted although the client address could not be determined');
  else k.admittedFrom.add(a.client);
  if (k.admittedFrom.size > 1) v.push(`one key admitted from ${[...k.admittedFrom].join(' and ')}`);
  return v;
}

async function settledSpend(keyId: string): Promise<{ spentToday: number; dailyLimit: number | null }> {
  return eventually(async () => {
    const s = (await admin<{ spentToday: number; reservedNow: number; dailyLimit: number | null }>('GET', `/keys/${keyId}/status`)).json;
    return s.reservedNow === 0 ? s : undefined;
  });
}

function runProperty(conn: Conn, strictShape: boolean) {
  return fc.asyncProperty(
    keyConfigArb(conn),
    fc.array(attemptArb(conn), { minLength: 1, maxLength: 3 }),
    async (config, attempts) => {
      const created = await newKey(conn, config);
      const k: KeyState = { ...created, config, conn, admittedFrom: new Set() };
      const problems: string[] = [];
      for (const a of attempts) {
        const wire: Wire = { ...a.wire, headers: a.wire.headers.map(([h, val]): [string, string] => [h, val.replace(KEY, created.key)]) };
        const { answers, upstream } = await sendWire(wire);
        const outcome = answers[0]?.headers['x-sg-code'] ?? (upstream.length ? 'admitted' : `http-${answers[0]?.status}`);
        tally.set(outcome, (tally.get(outcome) ?? 0) + 1);
        if (process.env.SG_PROPERTY_VERBOSE === '2') console.log(outcome, a.label, JSON.stringify(config));
        const v = violations(k, a, answers, upstream, strictShape);
        if (v.length) problems.push(`${a.label} → ${answers[0]?.status} ${answers[0]?.headers['x-sg-code'] ?? ''}: ${v.join('; ')}`);
      }
      // (c) a capped key's settled spend stays within its cap.
      if (config.dailyLimit !== null) {
        const s = await settledSpend(created.id);
        if (s.spentToday > config.dailyLimit + 1e-6) problems.push(`spent $${s.spentToday} on a $${config.dailyLimit} daily cap`);
      }
      if (problems.length) throw new Error(`key ${JSON.stringify(config)}:\n  ${problems.join('\n  ')}`);
    },
  );
}

/** Outcomes of the attempts (gateway code, `admitted`, or the parser's status): a degenerate generator shows here. */
const tally = new Map<string, number>();

async function check(conn: Conn, runs: number, strictShape = true): Promise<void> {
  tally.clear();
  try {
    await fc.assert(runProperty(conn, strictShape), { seed: SEED, numRuns: runs, endOnFailure: true });
    if (process.env.SG_PROPERTY_VERBOSE) console.log(conn, Object.fromEntries([...tally].sort((x, y) => y[1] - x[1])));
    // Both sides of every invariant must have been exercised.
    expect(tally.get('admitted') ?? 0, `${conn}: no attempt was admitted`).toBeGreaterThan(0);
    expect([...tally.keys()].filter((o) => o !== 'admitted').length, `${conn}: nothing was refused`).toBeGreaterThan(0);
  } catch (e) {
    console.error(`admission property (${conn}) failed; reproduce with SG_PROPERTY_SEED=${SEED} SG_PROPERTY_RUNS=${runs}`);
    throw e;
  }
}

// ---------------------------------------------------------------------------------------------

describe('hostile clients against every declared endpoint (properties)', () => {
  it('covers every declared OpenAI and Anthropic endpoint row', () => {
    const covered = new Set(SAMPLES.map((s) => `${s.conn}:${s.row.id}`));
    for (const r of providerSpec('openai')!.endpoints) expect(covered, r.id).toContain(`openai:${r.id}`);
    for (const r of providerSpec('anthropic')!.endpoints) expect(covered, r.id).toContain(`anthropic:${r.id}`);
  });

  it('the checker itself flags each kind of violation (so a passing run means something)', () => {
    const chat = SAMPLES.find((x) => x.row.id === 'chat.create')!;
    const body = Buffer.from('{"model":"gpt-4o-mini"}');
    const a: Attempt = { sample: chat, wire: { method: 'POST', target: '/v1/chat/completions', headers: [], body, framing: 'length' }, client: IP, mayRewrite: false, streamed: false, undeclared: false, label: 'self-test' };
    const k = (): KeyState => ({ id: 'k', key: 'SG_x', conn: 'openai', config: { models: ['gpt-4o-mini'], scopes: undefined, dailyLimit: null }, admittedFrom: new Set() });
    const sha = createHash('sha256').update(body).digest('hex');
    const up = (over: Partial<RecordedRequest>): RecordedRequest => ({ method: 'POST', path: '/v1/chat/completions', headers: {}, bodySha256: sha, bodyBytes: body.length, models: ['gpt-4o-mini'], ...over });
    const ok: Answer = { status: 200, headers: {}, body: Buffer.from('{}') };
    const refused: Answer = { status: 403, headers: { 'x-sg-code': 'model_not_allowed' }, body: Buffer.from('{"error":{"message":"m","type":"permission_error","code":"model_not_allowed"}}') };
    expect(violations(k(), a, [ok], [up({})], true)).toEqual([]);
    expect(violations(k(), a, [refused], [], true)).toEqual([]);
    expect(violations(k(), a, [ok], [up({ models: ['gpt-4o'] })], true).join()).toMatch(/model "gpt-4o"/);
    expect(violations(k(), a, [refused], [up({})], true).join()).toMatch(/refused .* but the upstream got/);
    expect(violations(k(), a, [ok], [up({ bodySha256: 'x' })], true).join()).toMatch(/differ/);
    expect(violations(k(), a, [ok], [up({ headers: { 'openai-organization': 'org' } })], true).join()).toMatch(/openai-organization/);
    expect(violations(k(), a, [{ ...ok, status: 502 }], [up({})], true).join()).toMatch(/status 502/);
    expect(violations(k(), { ...a, undeclared: true }, [ok], [up({})], true).join()).toMatch(/undeclared/);
    expect(violations(k(), { ...a, client: undefined }, [ok], [up({})], true).join()).toMatch(/client address/);
    expect(violations({ ...k(), config: { models: [], scopes: ['files:read'], dailyLimit: null } }, a, [ok], [up({})], true).join()).toMatch(/needing inference:write/);
    expect(violations(k(), a, [ok], [up({}), up({})], true).join()).toMatch(/2 times/);
    expect(violations(k(), a, [{ ...refused, body: Buffer.from('{"type":"error","error":{"message":"m","type":"t","code":"model_not_allowed"}}') }], [], true).join()).toMatch(/anthropic shape/);
  });

  it('OpenAI: refusals never reach the upstream; admissions carry only allowed models, scopes and bytes; caps hold', async () => {
    await check('openai', RUNS);
  }, 120_000);

  it('Anthropic: the same invariants on the Messages API', async () => {
    await check('anthropic', Math.ceil(RUNS / 4), false);
  }, 60_000);

  it('Gemini native, Azure deployments and any-API: path-named models and allow-lists hold', async () => {
    await check('gemini-native', Math.ceil(RUNS / 8));
    await check('azure', Math.ceil(RUNS / 8));
    await check('any', Math.ceil(RUNS / 10));
  }, 60_000);
});

// ---------------------------------------------------------------------------------------------
// Concurrency: a burst on a capped key, some streams cut off mid-answer.

describe('caps under a concurrent burst (property)', () => {
  it('a capped key never settles more than its cap plus one reservation, whatever runs at once', async () => {
    const burst = fc.array(
      fc.record({ maxTokens: fc.constantFrom(50, 500, 3000), padding: fc.constantFrom(0, 200, 4000), abort: fc.boolean(), n: fc.constantFrom(1, 1, 3) }),
      { minLength: 4, maxLength: 16 },
    );
    const property = fc.asyncProperty(fc.constantFrom(0.0005, 0.002, 0.01), burst, async (cap, requests) => {
      const { id, key } = await newKey('openai', { models: [], scopes: undefined, dailyLimit: cap });
      const bodies = requests.map((r) => JSON.stringify({
        model: 'gpt-4o-mini', messages: [{ role: 'user', content: `hi${' '.repeat(r.padding)}` }], max_tokens: r.maxTokens, n: r.n,
        // The mock keeps `mock-slow` streams open for seconds: those are cut off after their first chunk.
        ...(r.abort ? { stream: true, user: 'mock-slow' } : {}),
      }));
      await Promise.all(requests.map(async (r, i) => {
        const holder = new AbortController();
        const res = await fetch(`${stack.hostUrl}/v1/chat/completions`, {
          method: 'POST', headers: { authorization: `Bearer ${key}`, 'x-forwarded-for': IP, 'content-type': 'application/json' }, body: bodies[i], signal: holder.signal,
        });
        expect(res.status).toBeLessThan(500);
        if (r.abort && res.status === 200) {
          await res.body!.getReader().read();
          holder.abort();
        } else await res.arrayBuffer();
      }));
      const bounds = bodies.map((b) => {
        const bound = reservationBound({ provider: 'openai', model: 'gpt-4o-mini', rule: { unit: 'tokens' }, json: JSON.parse(b) as Record<string, unknown>, bodyBytes: Buffer.byteLength(b) });
        return bound.ok ? bound.micros / 1e6 : 0;
      });
      const s = await settledSpend(id);
      expect(s.spentToday).toBeLessThanOrEqual(cap + Math.max(...bounds) + 1e-6);
    });
    await fc.assert(property, { seed: SEED, numRuns: Math.max(3, Math.ceil(RUNS / 20)), endOnFailure: true });
  }, 60_000);
});

// ---------------------------------------------------------------------------------------------
// The attacker's review, by hand. First what holds: framing tricks that Node's HTTP client would
// normalise away, written raw. Each carries a body for a model the key does not allow.

describe('raw framing cannot carry a disallowed model past the gateway', () => {
  const bad = '{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}';
  const good = '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}';
  const chunk = (b: string) => `${b.length.toString(16)}\r\n${b}\r\n0\r\n\r\n`;
  let key: string;
  beforeAll(async () => {
    ({ key } = await newKey('openai', { models: ['gpt-4o-mini'], scopes: undefined, dailyLimit: null }));
  });
  const head = (extra: string) => `Host: 127.0.0.1\r\nAuthorization: Bearer ${key}\r\nX-Forwarded-For: ${IP}\r\nContent-Type: application/json\r\n${extra}`;

  const cases: Array<[string, () => string]> = [
    ['Transfer-Encoding chunked and Content-Length together', () => `POST /v1/chat/completions HTTP/1.1\r\n${head(`Content-Length: ${good.length}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n`)}\r\n${chunk(bad)}`],
    ['Transfer-Encoding "chunked, identity"', () => `POST /v1/chat/completions HTTP/1.1\r\n${head('Transfer-Encoding: chunked, identity\r\nConnection: close\r\n')}\r\n${chunk(bad)}`],
    ['Transfer-Encoding folded over two lines (obs-fold)', () => `POST /v1/chat/completions HTTP/1.1\r\n${head('Transfer-Encoding:\r\n chunked\r\nConnection: close\r\n')}\r\n${chunk(bad)}`],
    ['two different Content-Lengths', () => `POST /v1/chat/completions HTTP/1.1\r\n${head(`Content-Length: ${good.length}\r\nContent-Length: ${bad.length}\r\nConnection: close\r\n`)}\r\n${good}`],
    ['a folded Content-Type', () => `POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${key}\r\nX-Forwarded-For: ${IP}\r\nContent-Type: text/plain;\r\n application/json\r\nContent-Length: ${bad.length}\r\nConnection: close\r\n\r\n${bad}`],
    ['an absolute-form target', () => `POST http://127.0.0.1/v1/chat/completions HTTP/1.1\r\n${head(`Content-Length: ${bad.length}\r\nConnection: close\r\n`)}\r\n${bad}`],
    ['an absolute-form target naming the real upstream', () => `POST https://api.openai.com/v1/chat/completions HTTP/1.1\r\n${head(`Content-Length: ${bad.length}\r\nConnection: close\r\n`)}\r\n${bad}`],
    ['a request pipelined behind an allowed one', () => `POST /v1/chat/completions HTTP/1.1\r\n${head(`Content-Length: ${good.length}\r\n`)}\r\n${good}POST /v1/chat/completions HTTP/1.1\r\n${head(`Content-Length: ${bad.length}\r\nConnection: close\r\n`)}\r\n${bad}`],
    ['a request smuggled after a short Content-Length', () => `POST /v1/chat/completions HTTP/1.1\r\n${head(`Content-Length: ${good.length}\r\n`)}\r\n${good}POST /v1/chat/completions HTTP/1.1\r\n${head(`Content-Length: ${bad.length}\r\nConnection: close\r\n`)}\r\n${bad}`],
    ['a chunk trailer carrying Content-Type and a method override', () => `POST /v1/chat/completions HTTP/1.1\r\n${head('Transfer-Encoding: chunked\r\nConnection: close\r\n')}\r\n${bad.length.toString(16)};ext=1\r\n${bad}\r\n0\r\nContent-Type: text/plain\r\nX-HTTP-Method-Override: DELETE\r\n\r\n`],
    ['HTTP/1.0 without Host', () => `POST /v1/chat/completions HTTP/1.0\r\nAuthorization: Bearer ${key}\r\nX-Forwarded-For: ${IP}\r\nContent-Type: application/json\r\nContent-Length: ${bad.length}\r\n\r\n${bad}`],
    ['Expect: 100-continue', () => `POST /v1/chat/completions HTTP/1.1\r\n${head(`Expect: 100-continue\r\nContent-Length: ${bad.length}\r\nConnection: close\r\n`)}\r\n${bad}`],
    ['a header name with a space before the colon', () => `POST /v1/chat/completions HTTP/1.1\r\n${head(`Content-Type : text/plain\r\nContent-Length: ${bad.length}\r\nConnection: close\r\n`)}\r\n${bad}`],
    ['LF-only line endings', () => `POST /v1/chat/completions HTTP/1.1\n${head(`Content-Length: ${bad.length}\nConnection: close\n`).replace(/\r\n/g, '\n')}\n${bad}`],
  ];
  for (const [name, build] of cases) {
    it(`refuses or neutralises ${name}`, async () => {
      const before = stack.mock!.requests.length;
      const answers = await exchange(Buffer.from(build(), 'latin1'));
      const upstream = stack.mock!.requests.slice(before);
      for (const a of answers) expect(a.status, name).toBeLessThan(500);
      for (const u of upstream) expect(u.models, name).toEqual(['gpt-4o-mini']);
    });
  }
});

// ---------------------------------------------------------------------------------------------
// Openings found (each reproduced against the real stack). `it.fails` until the lead closes them
// in host/ (code this suite does not own); flip each to `it` with its fix.

describe('openings the attacker found', () => {
  async function post(key: string, path: string, body: unknown): Promise<{ status: number; code: string | undefined; upstream: RecordedRequest[] }> {
    const before = stack.mock!.requests.length;
    const res = await fetch(`${stack.hostUrl}${path}`, {
      method: 'POST', headers: { authorization: `Bearer ${key}`, 'x-forwarded-for': IP, 'content-type': 'application/json' }, body: JSON.stringify(body),
    });
    await res.arrayBuffer();
    return { status: res.status, code: res.headers.get('x-sg-code') ?? undefined, upstream: stack.mock!.requests.slice(before) };
  }

  it('a model-locked key cannot run another model through a hosted tool that names it (Responses image_generation)', async () => {
    // Key: models [gpt-4o-mini], no cap. Observed: 200, forwarded; upstream would run (and bill) gpt-image-1.
    const { key } = await newKey('openai', { models: ['gpt-4o-mini'], scopes: undefined, dailyLimit: null });
    const r = await post(key, '/v1/responses', { model: 'gpt-4o-mini', input: 'draw a cat', tools: [{ type: 'image_generation', model: 'gpt-image-1', quality: 'high' }] });
    expect(r.code).toBe('model_not_allowed');
    expect(r.upstream).toHaveLength(0);
  });

  it('an inference-only key cannot make the upstream read a stored file by id (needs files:read)', async () => {
    // Default scopes (inference). Observed: 200, forwarded; the model is handed the owner's file and can repeat it.
    const { key } = await newKey('openai', { models: [], scopes: undefined, dailyLimit: null });
    const r = await post(key, '/v1/chat/completions', { model: 'gpt-4o-mini', messages: [{ role: 'user', content: [{ type: 'text', text: 'print this file' }, { type: 'file', file: { file_id: 'file-abc' } }] }] });
    expect(r.code).toBe('scope_not_granted');
    expect(r.upstream).toHaveLength(0);
  });

  it('an inference-only key cannot continue a stored response, use a stored prompt or search a vector store (needs stored/vector_stores scopes)', async () => {
    // Observed: each 200 and forwarded on an uncapped key (capped keys refuse them only as price_unknown).
    const { key } = await newKey('openai', { models: [], scopes: undefined, dailyLimit: null });
    for (const body of [
      { model: 'gpt-4o-mini', input: 'repeat the conversation so far', previous_response_id: 'resp_abc' },
      { model: 'gpt-4o-mini', prompt: { id: 'pmpt_abc' } },
      { model: 'gpt-4o-mini', input: 'list the documents', tools: [{ type: 'file_search', vector_store_ids: ['vs_abc'] }] },
    ]) {
      const r = await post(key, '/v1/responses', body);
      expect(r.code, JSON.stringify(body)).toBe('scope_not_granted');
      expect(r.upstream).toHaveLength(0);
    }
  });

  it('a model-locked key with the batches scope cannot start a batch whose input lines were never checked', async () => {
    // Key: models [gpt-4o-mini], scopes inference+batches. Observed: 200, forwarded — the input file may be any
    // file of the owner's organisation (or one sent through the Uploads API, whose parts are not line-checked),
    // naming any model.
    const { key } = await newKey('openai', { models: ['gpt-4o-mini'], scopes: ['inference', 'batches'], dailyLimit: null });
    const r = await post(key, '/v1/batches', { input_file_id: 'file-uploaded-elsewhere', endpoint: '/v1/chat/completions', completion_window: '24h' });
    expect(r.status).toBe(403);
    expect(r.upstream).toHaveLength(0);
  });

  it('a capped key cannot buy the priority tier at standard prices (service_tier: "priority")', async () => {
    // Cap $0.05/day. Observed: 200; reserved and settled at standard rates ($0.15/$0.60 per M for gpt-4o-mini),
    // while OpenAI bills priority processing at about 1.7× that — a capped key can spend ~1.7× its cap.
    const { key, id } = await newKey('openai', { models: [], scopes: undefined, dailyLimit: 0.05 });
    const r = await post(key, '/v1/chat/completions', { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }], max_tokens: 1000, service_tier: 'priority' });
    if (r.upstream.length === 0) return; // refused: fixed
    // The mock answers 1000 completion tokens: at priority rates ($1.00/M output) that is at least $0.001.
    const row = await eventually(async () => {
      const audit = (await admin<{ items: Array<{ cost: number; code: string | null }> }>('GET', `/audit?keyId=${id}`)).json;
      return audit.items.find((i) => i.code === null);
    });
    expect(row.cost).toBeGreaterThanOrEqual(0.001);
  });

  it("answers an Anthropic key's refusals in Anthropic's error shape on every path, not only /v1/messages", async () => {
    // Observed: GET /v1/files with an Anthropic key → 404 {"error":{"message","type","param","code"}} (OpenAI's shape).
    const { key } = await newKey('anthropic', { models: [], scopes: undefined, dailyLimit: null });
    const res = await fetch(`${stack.hostUrl}/v1/files`, { headers: { 'x-api-key': key, 'x-forwarded-for': IP } });
    expect(res.headers.get('x-sg-code')).toBe('endpoint_not_allowed');
    expect(((await res.json()) as { type?: string }).type).toBe('error');
  });
});
