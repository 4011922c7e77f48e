/**
 * The whole OpenAI surface through host → enclave → mock, with the official SDK: uploads of
 * several MB whose SHA-256 the mock checks, binary downloads compared byte for byte, multipart
 * alias rewriting, response headers, body limits, client disconnects; plus a third real client
 * (Vercel AI SDK) and Anthropic streaming tool use.
 */
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createOpenAI } from '@ai-sdk/openai';
import Anthropic from '@anthropic-ai/sdk';
import { generateText, streamText } from 'ai';
import OpenAI, { toFile } from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mockSpeechBytes } from '../mock-upstream/index.ts';
import { enrollConnection, eventually, startTestStack } from './helpers.ts';

let stack: Awaited<ReturnType<typeof startTestStack>>;
let client: OpenAI;
let fullKey: string;
const ALL_SCOPES = ['inference', 'stored', 'stored:delete', 'files', 'files:delete', 'uploads', 'batches', 'fine_tuning', 'fine_tuning:delete', 'vector_stores', 'vector_stores:delete'];
const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

beforeAll(async () => {
  stack = await startTestStack();
  // The whole surface needs every scope; new keys get `inference` only (test/e2e/admission.test.ts).
  const res = await fetch(`${stack.hostUrl}/admin/v1/keys`, {
    method: 'POST',
    headers: { authorization: `Bearer ${stack.adminToken}`, 'content-type': 'application/json' },
    body: JSON.stringify({ connectionId: stack.demo!.connectionId, scopes: ALL_SCOPES }),
  });
  fullKey = ((await res.json()) as { key: string }).key;
  client = new OpenAI({ apiKey: fullKey, baseURL: `${stack.hostUrl}/v1`, maxRetries: 0 });
});
afterAll(async () => {
  await stack?.cleanup();
});

const lastRequest = (path: string) => [...stack.mock!.requests].reverse().find((r) => r.path.startsWith(path))!;

describe('media and files, byte for byte', () => {
  it('uploads a 6 MB audio file for transcription intact', async () => {
    const audio = randomBytes(6 * 1024 * 1024);
    const result = await client.audio.transcriptions.create({ file: await toFile(audio, 'speech.wav', { type: 'audio/wav' }), model: 'whisper-1' });
    expect(result.text).toBe(`transcript of ${audio.length} bytes by whisper-1`);
    const seen = lastRequest('/v1/audio/transcriptions');
    expect(seen.parts!.find((p) => p.name === 'file')!.sha256).toBe(sha(audio));
    expect(seen.headers.authorization).toBe(`Bearer ${stack.demo!.upstreamKey}`);
  });

  it('streams a transcription (SSE variant)', async () => {
    const stream = await client.audio.transcriptions.create({ file: await toFile(Buffer.alloc(1000, 1), 'a.wav'), model: 'gpt-4o-transcribe', stream: true });
    const types: string[] = [];
    for await (const event of stream) types.push(event.type);
    expect(types).toEqual(['transcript.text.delta', 'transcript.text.done']);
  });

  it('returns speech audio byte-identical', async () => {
    const res = await client.audio.speech.create({ model: 'gpt-4o-mini-tts', voice: 'alloy', input: 'Hello world' });
    const bytes = Buffer.from(await res.arrayBuffer());
    expect(bytes.equals(mockSpeechBytes('Hello world'))).toBe(true);
    expect(res.headers.get('content-type')).toBe('audio/mpeg');
  });

  it('sends repeated image[] parts to image edits unmodified', async () => {
    const a = randomBytes(300_000);
    const b = randomBytes(200_000);
    const result = await client.images.edit({ model: 'gpt-image-1', prompt: 'add a hat', image: [await toFile(a, 'a.png', { type: 'image/png' }), await toFile(b, 'b.png', { type: 'image/png' })] });
    expect(result.data).toHaveLength(2);
    const parts = lastRequest('/v1/images/edits').parts!.filter((p) => p.name === 'image[]');
    expect(parts.map((p) => p.sha256)).toEqual([sha(a), sha(b)]);
  });

  it('uploads, lists, retrieves, downloads (byte-identical) and deletes a file', async () => {
    const content = randomBytes(8 * 1024 * 1024);
    const file = await client.files.create({ file: await toFile(content, 'data.jsonl'), purpose: 'user_data' });
    expect(file.bytes).toBe(content.length);
    expect((await client.files.list()).data.map((f) => f.id)).toContain(file.id);
    expect((await client.files.retrieve(file.id)).filename).toBe('data.jsonl');
    const downloaded = Buffer.from(await (await client.files.content(file.id)).arrayBuffer());
    expect(sha(downloaded)).toBe(sha(content));
    expect((await client.files.delete(file.id)).deleted).toBe(true);
  });

  it('streams a chunked upload without content-length', async () => {
    const chunks = [randomBytes(700_000), randomBytes(900_000)];
    const form = new FormData();
    form.append('purpose', 'user_data');
    form.append('file', new Blob(chunks), 'chunked.bin');
    const encoded = new Response(form);
    const res = await fetch(`${stack.hostUrl}/v1/files`, {
      method: 'POST',
      headers: { authorization: `Bearer ${fullKey}`, 'content-type': encoded.headers.get('content-type')! },
      body: encoded.body,
      duplex: 'half',
    } as RequestInit);
    expect(res.status).toBe(200);
    const seen = lastRequest('/v1/files');
    expect(seen.headers['content-length']).toBeUndefined();
    expect(seen.parts!.find((p) => p.name === 'file')!.sha256).toBe(sha(Buffer.concat(chunks)));
  });

  it('assembles an upload from parts', async () => {
    const p1 = randomBytes(1024 * 1024);
    const p2 = randomBytes(512 * 1024);
    const upload = await client.uploads.create({ filename: 'big.jsonl', purpose: 'batch', bytes: p1.length + p2.length, mime_type: 'application/jsonl' });
    const a = await client.uploads.parts.create(upload.id, { data: await toFile(p1, 'p1') });
    const b = await client.uploads.parts.create(upload.id, { data: await toFile(p2, 'p2') });
    const done = await client.uploads.complete(upload.id, { part_ids: [a.id, b.id] });
    expect(done.status).toBe('completed');
    const downloaded = Buffer.from(await (await client.files.content(done.file!.id)).arrayBuffer());
    expect(downloaded.equals(Buffer.concat([p1, p2]))).toBe(true);
  });
});

describe('ordinary JSON endpoints', () => {
  it('serves moderations, batches, vector stores, fine-tuning jobs, image generation and responses retrieval', async () => {
    expect((await client.moderations.create({ input: 'hello', model: 'omni-moderation-latest' })).results[0]!.flagged).toBe(false);
    const batch = await client.batches.create({ input_file_id: 'file-x', endpoint: '/v1/chat/completions', completion_window: '24h' });
    expect(batch.object).toBe('batch');
    expect((await client.batches.retrieve(batch.id)).id).toBe(batch.id);
    expect((await client.batches.cancel(batch.id)).status).toBe('cancelled');
    expect((await client.vectorStores.create({ name: 'docs' })).object).toBe('vector_store');
    expect((await client.fineTuning.jobs.create({ model: 'gpt-4o-mini', training_file: 'file-x' })).object).toBe('fine_tuning.job');
    expect((await client.images.generate({ model: 'gpt-image-1', prompt: 'a cat' })).data).toHaveLength(1);
    expect((await client.responses.retrieve('resp_123')).id).toBe('resp_123');
    expect((await client.responses.cancel('resp_123')).status).toBe('cancelled');
  });

  it('forwards the response headers clients rely on and not hop-by-hop ones', async () => {
    const { response } = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }] }).withResponse();
    expect(response.headers.get('x-request-id')).toMatch(/^req_/);
    expect(response.headers.get('openai-processing-ms')).toBe('12');
    expect(response.headers.get('x-ratelimit-remaining-requests')).toBe('9999');
    expect(response.headers.get('x-sg-enclave-error')).toBeNull();
  });
});

describe('aliases, limits and disconnects', () => {
  it('rewrites an aliased model inside a multipart body and nothing else', async () => {
    await fetch(`${stack.hostUrl}/admin/v1/projects/proj_default/aliases/transcriber`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${stack.adminToken}`, 'content-type': 'application/json' },
      body: JSON.stringify({ target: 'whisper-1' }),
    });
    const audio = randomBytes(100_000);
    const result = await client.audio.transcriptions.create({ file: await toFile(audio, 'a.wav'), model: 'transcriber', language: 'en' });
    expect(result.text).toContain('by whisper-1');
    const parts = lastRequest('/v1/audio/transcriptions').parts!;
    expect(parts.find((p) => p.name === 'model')!.value).toBe('whisper-1');
    expect(parts.find((p) => p.name === 'language')!.value).toBe('en');
    expect(parts.find((p) => p.name === 'file')!.sha256).toBe(sha(audio));
  });

  it('refuses a body over the endpoint limit with 413 before forwarding', async () => {
    const before = stack.mock!.requests.length;
    const res = await fetch(`${stack.hostUrl}/v1/audio/transcriptions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${stack.demo!.key}`, 'content-type': 'multipart/form-data; boundary=x', 'content-length': String(26 * 1024 * 1024) },
      body: new Uint8Array(26 * 1024 * 1024),
    });
    expect(res.status).toBe(413);
    expect((await res.json()).error.code).toBe('request_too_large');
    expect(stack.mock!.requests.length).toBe(before);
  });

  it('aborts the upstream call when the client disconnects mid-stream', async () => {
    const controller = new AbortController();
    const stream = await client.chat.completions.create({ model: 'mock-slow', stream: true, messages: [{ role: 'user', content: 'x' }] }, { signal: controller.signal });
    for await (const _ of stream) {
      controller.abort();
      break;
    }
    const seen = await eventually(async () => {
      const r = lastRequest('/v1/chat/completions');
      return r.aborted ? r : undefined;
    });
    expect(seen.aborted).toBe(true);
  });
});

describe('an upstream that breaks off mid-stream', () => {
  it('ends the client stream with an error, not a hang, after every byte the upstream sent, and charges it', async () => {
    // Headers and two content events, then the upstream's connection dies.
    const event = (content: string) => `data: ${JSON.stringify({ id: 'c1', object: 'chat.completion.chunk', created: 1, model: 'gpt-4o-mini', choices: [{ index: 0, delta: { content }, finish_reason: null }] })}\n\n`;
    const broken = createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.write(event('Hel'));
        res.write(event('lo'), () => setTimeout(() => res.socket?.destroy(), 50));
      });
    });
    await new Promise<void>((r) => broken.listen(0, '127.0.0.1', r));
    try {
      const origin = `http://127.0.0.1:${(broken.address() as AddressInfo).port}`;
      const conn = await enrollConnection({ ...stack, mock: { ...stack.mock!, origin } }, { upstreamKey: 'sk-broken' });
      const sdk = new OpenAI({ apiKey: conn.key, baseURL: `${stack.hostUrl}/v1`, maxRetries: 0, timeout: 10_000 });
      const stream = await sdk.chat.completions.create({ model: 'gpt-4o-mini', stream: true, messages: [{ role: 'user', content: 'hi' }] });
      let text = '';
      const consumed = (async () => {
        for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? '';
      })();
      await expect(consumed).rejects.toThrow();
      expect(text).toBe('Hello');
      const row = await eventually(async () => {
        const res = await fetch(`${stack.hostUrl}/admin/v1/audit?keyId=${conn.keyId}&limit=10`, { headers: { authorization: `Bearer ${stack.adminToken}` } });
        const items = ((await res.json()) as { items: Array<{ code: string | null; tokensOut: number; cost: number }> }).items;
        return items[0];
      });
      expect(row.code).toBe('upstream_broken');
      expect(row.tokensOut).toBe(2);
      expect(row.cost).toBeGreaterThan(0);
    } finally {
      broken.close();
    }
  });
});

describe('other real clients', () => {
  it('Vercel AI SDK: generateText and streamText through the gateway', async () => {
    const provider = createOpenAI({ apiKey: stack.demo!.key, baseURL: `${stack.hostUrl}/v1` });
    const { text } = await generateText({ model: provider.chat('gpt-4o-mini'), prompt: 'Say hello' });
    expect(text).toBe('Hello from the mock upstream.');
    const streamed = streamText({ model: provider.chat('gpt-4o-mini'), prompt: 'Say hello' });
    let all = '';
    for await (const delta of streamed.textStream) all += delta;
    expect(all).toBe('Hello from the mock upstream.');
  });

  it('Anthropic SDK: streaming tool use passes through exactly (SDK fixture)', async () => {
    const fixture = readFileSync(new URL('../fixtures/anthropic/tool_use_response.sse', import.meta.url), 'utf8');
    // A tiny upstream that replays the fixture, reached through a connection pinned to it.
    const replay = createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.end(fixture);
      });
    });
    await new Promise<void>((r) => replay.listen(0, '127.0.0.1', r));
    try {
      const origin = `http://127.0.0.1:${(replay.address() as AddressInfo).port}`;
      const conn = await enrollConnection({ ...stack, mock: { ...stack.mock!, origin } }, { upstreamKey: 'sk-ant-replay', provider: 'anthropic' });
      const raw = await fetch(`${stack.hostUrl}/v1/messages`, {
        method: 'POST',
        headers: { 'x-api-key': conn.key, 'content-type': 'application/json', 'anthropic-version': '2023-06-01' },
        body: JSON.stringify({ model: 'claude-opus-4-8', max_tokens: 100, stream: true, messages: [{ role: 'user', content: 'weather?' }] }),
      });
      expect(await raw.text()).toBe(fixture);
      const anthropic = new Anthropic({ apiKey: conn.key, baseURL: stack.hostUrl, maxRetries: 0 });
      const message = await anthropic.messages.stream({ model: 'claude-opus-4-8', max_tokens: 100, messages: [{ role: 'user', content: 'weather?' }] }).finalMessage();
      expect(message.content.some((b) => b.type === 'tool_use')).toBe(true);
    } finally {
      replay.close();
    }
  });
});
