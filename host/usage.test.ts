import { readFileSync } from 'node:fs';
import { Readable } from 'node:stream';
import { text } from 'node:stream/consumers';
import { describe, expect, it } from 'vitest';
import { jsonUsage, UsageTap, usageFromObject } from './usage.ts';

async function run(tap: UsageTap, chunks: string[]): Promise<string> {
  return text(Readable.from(chunks.map((c) => Buffer.from(c))).pipe(tap));
}

/** Splits `s` into pieces of `n` bytes so events straddle chunk boundaries. */
const pieces = (s: string, n: number) => Array.from({ length: Math.ceil(s.length / n) }, (_, i) => s.slice(i * n, i * n + n));

describe('usage from streamed responses', () => {
  it('reads Anthropic SSE (fixture from the SDK) with cumulative message_delta usage', async () => {
    const fixture = readFileSync(new URL('../test/fixtures/anthropic/basic_response.sse', import.meta.url), 'utf8');
    const tap = new UsageTap({ sse: true, kind: 'anthropic', stripInjectedUsage: false });
    const out = await run(tap, pieces(fixture, 37));
    expect(out).toBe(fixture);
    expect(tap.result.usage).toMatchObject({ inputTokens: 11, outputTokens: 6 });
    expect(tap.result.model).toBe('claude-opus-4-8');
  });

  const chunk = (o: object) => `data: ${JSON.stringify(o)}\n\n`;
  const openaiStream = [
    chunk({ id: 'c', object: 'chat.completion.chunk', model: 'gpt-4o-mini', choices: [{ index: 0, delta: { content: 'Hi' }, finish_reason: null }] }),
    chunk({ id: 'c', object: 'chat.completion.chunk', model: 'gpt-4o-mini', choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] }),
    chunk({ id: 'c', object: 'chat.completion.chunk', model: 'gpt-4o-mini', choices: [], usage: { prompt_tokens: 12, completion_tokens: 3, total_tokens: 15, prompt_tokens_details: { cached_tokens: 2 } } }),
    'data: [DONE]\n\n',
  ].join('');

  it('strips the usage chunk the gateway injected, and only that', async () => {
    const tap = new UsageTap({ sse: true, kind: 'openai', stripInjectedUsage: true });
    const out = await run(tap, pieces(openaiStream, 13));
    expect(out).not.toContain('"usage"');
    expect(out).toContain('data: [DONE]');
    expect(out.split('\n\n').length).toBe(openaiStream.split('\n\n').length - 1);
    expect(tap.result.usage).toEqual({ inputTokens: 10, outputTokens: 3, cacheReadTokens: 2 });
  });

  it('passes the usage chunk through when the client asked for it', async () => {
    const tap = new UsageTap({ sse: true, kind: 'openai', stripInjectedUsage: false });
    expect(await run(tap, pieces(openaiStream, 50))).toBe(openaiStream);
  });

  it('reads Responses API usage from response.completed', async () => {
    const s = [
      'event: response.output_text.delta\n' + chunk({ type: 'response.output_text.delta', delta: 'Hi' }),
      'event: response.completed\n' + chunk({ type: 'response.completed', response: { model: 'gpt-4o', usage: { input_tokens: 20, input_tokens_details: { cached_tokens: 5 }, output_tokens: 8 } } }),
    ].join('');
    const tap = new UsageTap({ sse: true, kind: 'responses', stripInjectedUsage: false });
    expect(await run(tap, pieces(s, 7))).toBe(s);
    expect(tap.result.usage).toMatchObject({ inputTokens: 15, outputTokens: 8, cacheReadTokens: 5 });
  });

  it('reads JSON bodies of chat, embeddings and Anthropic messages', async () => {
    const tap = new UsageTap({ sse: false, kind: 'openai', stripInjectedUsage: false });
    const body = JSON.stringify({ model: 'text-embedding-3-small', usage: { prompt_tokens: 9, total_tokens: 9 } });
    expect(await run(tap, pieces(body, 10))).toBe(body);
    expect(tap.result.usage).toEqual({ inputTokens: 9, outputTokens: 0, cacheReadTokens: 0 });
    expect(usageFromObject({ input_tokens: 4, output_tokens: 6, cache_read_input_tokens: 100, cache_creation_input_tokens: 7 })).toEqual({
      inputTokens: 4, outputTokens: 6, cacheReadTokens: 100, cacheWriteTokens: 7,
    });
  });

  it('passes binary bodies through byte for byte', async () => {
    const bytes = Buffer.from(Array.from({ length: 5000 }, (_, i) => i % 256));
    const tap = new UsageTap({ sse: false, kind: 'openai', stripInjectedUsage: false });
    const out: Buffer[] = [];
    for await (const c of Readable.from([bytes.subarray(0, 1234), bytes.subarray(1234)]).pipe(tap)) out.push(c as Buffer);
    expect(Buffer.concat(out).equals(bytes)).toBe(true);
    expect(tap.result.usage).toBeUndefined();
  });

  it('marks usage complete only when the final usage arrived', async () => {
    expect(jsonUsage(Buffer.from(JSON.stringify({ usage: { prompt_tokens: 1, completion_tokens: 2 } }))).complete).toBe(true);
    expect(jsonUsage(Buffer.from(JSON.stringify({ data: [] }))).complete).toBe(false);
    const tap = new UsageTap({ sse: true, kind: 'anthropic', stripInjectedUsage: false });
    const start = `event: message_start\ndata: ${JSON.stringify({ type: 'message_start', message: { model: 'claude', usage: { input_tokens: 5, output_tokens: 1 } } })}\n\n`;
    await run(tap, [start]);
    expect(tap.result.complete).toBe(false);
  });

  it('reads Gemini usageMetadata, thinking tokens as output', () => {
    const r = jsonUsage(Buffer.from(JSON.stringify({ usageMetadata: { promptTokenCount: 10, candidatesTokenCount: 4, thoughtsTokenCount: 6, cachedContentTokenCount: 3 } })));
    expect(r.usage).toEqual({ inputTokens: 7, outputTokens: 10, cacheReadTokens: 3 });
    expect(r.complete).toBe(true);
  });

  it('reads a transcription duration as audio seconds', () => {
    const r = jsonUsage(Buffer.from(JSON.stringify({ text: 'hello', duration: 12.5, language: 'en' })));
    expect(r.usage).toEqual({ inputTokens: 0, outputTokens: 0, audioSeconds: 12.5 });
  });
});
