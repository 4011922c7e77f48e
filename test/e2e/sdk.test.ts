/**
 * The official SDKs, pointed at the gateway with an SG_ key, through host → enclave → mock
 * upstream (real processes on loopback). The mock must see the real upstream key, never SG_.
 */
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { enrollConnection, startTestStack } from './helpers.ts';

let stack: Awaited<ReturnType<typeof startTestStack>>;
let openai: OpenAI;

beforeAll(async () => {
  stack = await startTestStack();
  openai = new OpenAI({ apiKey: stack.demo!.key, baseURL: `${stack.hostUrl}/v1`, maxRetries: 0 });
});
afterAll(async () => {
  await stack?.cleanup();
});

function upstreamSawOnlyTheRealKey() {
  expect(stack.mock!.requests.length).toBeGreaterThan(0);
  for (const r of stack.mock!.requests) {
    expect(JSON.stringify(r.headers)).not.toContain('SG_');
  }
}

describe('OpenAI SDK through SecureGate', () => {
  it('creates a chat completion', async () => {
    const before = stack.mock!.requests.length;
    const completion = await openai.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Say hello' }] });
    expect(completion.choices[0]!.message.content).toBe('Hello from the mock upstream.');
    expect(completion.usage?.completion_tokens).toBe(7);
    const seen = stack.mock!.requests.slice(before);
    expect(seen).toHaveLength(1);
    expect(seen[0]!.path).toBe('/v1/chat/completions');
    expect(seen[0]!.headers.authorization).toBe(`Bearer ${stack.demo!.upstreamKey}`);
    upstreamSawOnlyTheRealKey();
  });

  it('streams a chat completion chunk by chunk', async () => {
    const stream = await openai.chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'Say hello' }],
      stream: true,
      stream_options: { include_usage: true },
    });
    const parts: string[] = [];
    let usage;
    for await (const chunk of stream) {
      parts.push(chunk.choices[0]?.delta?.content ?? '');
      if (chunk.usage) usage = chunk.usage;
    }
    expect(parts.join('')).toBe('Hello from the mock upstream.');
    expect(usage?.completion_tokens).toBe(7);
  });

  it('creates embeddings (float and base64)', async () => {
    const res = await openai.embeddings.create({ model: 'text-embedding-3-small', input: ['a', 'b'] });
    expect(res.data).toHaveLength(2);
    expect(res.data[0]!.embedding).toHaveLength(8);
    expect(res.usage.prompt_tokens).toBeGreaterThan(0);
  });

  it('creates and streams a response (Responses API)', async () => {
    const response = await openai.responses.create({ model: 'gpt-4o-mini', input: 'Hi' });
    expect(response.output_text).toBe('Hello from the mock Responses API.');
    const stream = await openai.responses.create({ model: 'gpt-4o-mini', input: 'Hi', stream: true });
    const types: string[] = [];
    for await (const event of stream) types.push(event.type);
    expect(types[0]).toBe('response.created');
    expect(types.at(-1)).toBe('response.completed');
  });

  it('lists models', async () => {
    const models = await openai.models.list();
    expect(models.data.map((m) => m.id)).toContain('gpt-4o-mini');
  });

  it('refuses an unknown key with 401 in OpenAI shape, x-should-retry false, nothing upstream', async () => {
    const before = stack.mock!.requests.length;
    const bad = new OpenAI({ apiKey: 'SG_not-a-real-key', baseURL: `${stack.hostUrl}/v1`, maxRetries: 2 });
    const error = await bad.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }] }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(OpenAI.AuthenticationError);
    expect((error as InstanceType<typeof OpenAI.AuthenticationError>).code).toBe('invalid_api_key');
    const raw = await fetch(`${stack.hostUrl}/v1/chat/completions`, { method: 'POST', headers: { authorization: 'Bearer SG_x' }, body: '{}' });
    expect(raw.headers.get('x-should-retry')).toBe('false');
    expect(stack.mock!.requests.length).toBe(before);
  });

  it('refuses a non-inference path without calling upstream', async () => {
    const before = stack.mock!.requests.length;
    const res = await fetch(`${stack.hostUrl}/v1/organization/admin_api_keys`, { headers: { authorization: `Bearer ${stack.demo!.key}` } });
    expect(res.status).toBe(404);
    expect((await res.json()).error.code).toBe('endpoint_not_allowed');
    expect(stack.mock!.requests.length).toBe(before);
  });
});

describe('Anthropic SDK through SecureGate', () => {
  let anthropic: Anthropic;
  let upstreamKey: string;

  beforeAll(async () => {
    // The mock accepts one key; an Anthropic connection presents it as x-api-key.
    upstreamKey = stack.demo!.upstreamKey;
    const conn = await enrollConnection(stack, { upstreamKey, provider: 'anthropic' });
    anthropic = new Anthropic({
      apiKey: conn.key,
      baseURL: stack.hostUrl,
      maxRetries: 0,
      defaultHeaders: { 'anthropic-beta': 'prompt-caching-2024-07-31' },
    });
  });

  it('creates a message with the key as x-api-key', async () => {
    const before = stack.mock!.requests.length;
    const message = await anthropic.messages.create({ model: 'claude-opus-4-8', max_tokens: 64, messages: [{ role: 'user', content: 'Hello' }] });
    expect(message.content[0]).toMatchObject({ type: 'text', text: 'Hello there!' });
    expect(message.usage.output_tokens).toBe(6);
    const seen = stack.mock!.requests.slice(before);
    expect(seen[0]!.headers['x-api-key']).toBe(upstreamKey);
    expect(seen[0]!.headers['anthropic-version']).toMatch(/^\d{4}-\d{2}-\d{2}$/);
    expect(seen[0]!.headers['anthropic-beta']).toBe('prompt-caching-2024-07-31');
    expect(seen[0]!.headers.authorization).toBeUndefined();
  });

  it('streams a message', async () => {
    const stream = anthropic.messages.stream({ model: 'claude-opus-4-8', max_tokens: 64, messages: [{ role: 'user', content: 'Hello' }] });
    const texts: string[] = [];
    stream.on('text', (t) => texts.push(t));
    const final = await stream.finalMessage();
    expect(texts.join('')).toBe('Hello there!');
    expect(final.usage.output_tokens).toBe(6);
  });

  it('accepts the SG_ key as Bearer too', async () => {
    const bearer = new Anthropic({ authToken: (anthropic as unknown as { apiKey: string }).apiKey, apiKey: null, baseURL: stack.hostUrl, maxRetries: 0 });
    const message = await bearer.messages.create({ model: 'claude-opus-4-8', max_tokens: 16, messages: [{ role: 'user', content: 'Hi' }] });
    expect(message.type).toBe('message');
  });

  it('refuses a bad key in Anthropic error shape', async () => {
    const bad = new Anthropic({ apiKey: 'SG_nope', baseURL: stack.hostUrl, maxRetries: 0 });
    const error = await bad.messages.create({ model: 'claude-opus-4-8', max_tokens: 8, messages: [{ role: 'user', content: 'x' }] }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(Anthropic.AuthenticationError);
    expect((error as { error: { type: string; error: { type: string } } }).error).toMatchObject({ type: 'error', error: { type: 'authentication_error' } });
  });
});
