import { describe, expect, it } from 'vitest';
import { UsageMeter } from './usage-meter.ts';

function read(contentType: string, body: string, cut = 7): ReturnType<UsageMeter['end']> {
  const m = new UsageMeter(contentType);
  for (let i = 0; i < body.length; i += cut) m.push(Buffer.from(body.slice(i, i + cut)));
  return m.end();
}
const sse = (...events: unknown[]) => events.map((e) => `data: ${JSON.stringify(e)}\n\n`).join('') + 'data: [DONE]\n\n';

describe('usage meter', () => {
  it('reads an OpenAI JSON answer', () => {
    expect(read('application/json', JSON.stringify({ usage: { prompt_tokens: 12, completion_tokens: 4, prompt_tokens_details: { cached_tokens: 2 } } }))).toEqual({ inputTokens: 12, outputTokens: 4, complete: true });
  });

  it('reads the usage chunk of an OpenAI stream split anywhere', () => {
    const body = sse({ choices: [{ delta: { content: 'a' } }] }, { choices: [], usage: { prompt_tokens: 5, completion_tokens: 9 } });
    for (const cut of [1, 3, 16, 1000]) expect(read('text/event-stream; charset=utf-8', body, cut)).toEqual({ inputTokens: 5, outputTokens: 9, complete: true });
  });

  it('reads an Anthropic stream: input and cache tokens at message_start, cumulative output in message_delta', () => {
    const body = sse(
      { type: 'message_start', message: { usage: { input_tokens: 20, cache_read_input_tokens: 100, output_tokens: 1 } } },
      { type: 'message_delta', usage: { output_tokens: 30 } },
      { type: 'message_delta', usage: { output_tokens: 42 } },
    );
    expect(read('text/event-stream', body)).toEqual({ inputTokens: 120, outputTokens: 42, complete: true });
  });

  it('reads the Responses API completed event and Gemini usageMetadata', () => {
    expect(read('text/event-stream', sse({ type: 'response.completed', response: { usage: { input_tokens: 3, output_tokens: 4 } } }))).toEqual({ inputTokens: 3, outputTokens: 4, complete: true });
    expect(read('application/json', JSON.stringify({ usageMetadata: { promptTokenCount: 8, candidatesTokenCount: 2, thoughtsTokenCount: 5 } }))).toEqual({ inputTokens: 8, outputTokens: 7, complete: true });
  });

  it('says when a stream was cut off before its final usage (only partial counts were seen)', () => {
    const cut = (body: string) => body.slice(0, body.lastIndexOf('data: [DONE]'));
    const anthropic = sse({ type: 'message_start', message: { usage: { input_tokens: 20, output_tokens: 1 } } }, { type: 'content_block_delta', delta: { text: 'x'.repeat(50) } });
    expect(read('text/event-stream', anthropic)).toEqual({ inputTokens: 20, outputTokens: 1, complete: false });
    const openai = sse({ choices: [{ delta: { content: 'a' } }], usage: null }, { choices: [{ delta: { content: 'b' } }], usage: null });
    expect(read('text/event-stream', cut(openai))).toBeUndefined();
    const responses = sse({ type: 'response.created', response: { usage: null } }, { type: 'response.output_text.delta', delta: 'x' });
    expect(read('text/event-stream', responses)).toBeUndefined();
    const gemini = sse({ candidates: [{ content: {} }], usageMetadata: { promptTokenCount: 8, candidatesTokenCount: 2 } });
    expect(read('text/event-stream', gemini)).toEqual({ inputTokens: 8, outputTokens: 2, complete: false });
    const geminiDone = sse({ candidates: [{ finishReason: 'STOP' }], usageMetadata: { promptTokenCount: 8, candidatesTokenCount: 9 } });
    expect(read('text/event-stream', geminiDone)).toEqual({ inputTokens: 8, outputTokens: 9, complete: true });
  });

  it('reads nothing from an answer without usage or that is not JSON', () => {
    expect(read('application/json', '{"data":[]}')).toBeUndefined();
    expect(read('audio/mpeg', '\u0000\u0001binary')).toBeUndefined();
    expect(read('text/event-stream', 'data: {"choices":[]}\n\n')).toBeUndefined();
  });
});
