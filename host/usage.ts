/**
 * Reads usage from responses as they stream past, without holding them back: OpenAI JSON
 * (chat, completions, embeddings, responses, images, audio), OpenAI SSE (the final usage chunk —
 * dropped again when the gateway added `stream_options.include_usage` itself), Responses API SSE
 * (`response.completed`), Anthropic JSON and SSE (`message_start` + cumulative `message_delta`,
 * cache tokens). SSE is forwarded event by event; JSON chunk by chunk with a bounded side copy.
 */
import { Transform, type TransformCallback } from 'node:stream';
import type { TokenUsage } from './pricing.ts';

export type StreamKind = 'openai' | 'responses' | 'anthropic' | 'gemini';

const MAX_JSON_COPY = 4 * 1024 * 1024;

type Obj = Record<string, unknown>;
const num = (v: unknown) => (typeof v === 'number' && Number.isFinite(v) ? v : 0);

/** Normalises any provider's usage object (field names differ per API). */
export function usageFromObject(u: unknown): TokenUsage | undefined {
  if (!u || typeof u !== 'object') return undefined;
  const o = u as Obj;
  const details = (o.prompt_tokens_details ?? o.input_tokens_details) as Obj | undefined;
  const cached = num(details?.cached_tokens);
  const cacheRead = num(o.cache_read_input_tokens);
  const cacheWrite = num(o.cache_creation_input_tokens);
  if ('prompt_tokens' in o || 'completion_tokens' in o) {
    return { inputTokens: num(o.prompt_tokens) - cached, outputTokens: num(o.completion_tokens), cacheReadTokens: cached };
  }
  if ('promptTokenCount' in o || 'candidatesTokenCount' in o) {
    // Gemini's usageMetadata: thinking tokens are billed as output; cached content is part of the prompt.
    const cachedContent = num(o.cachedContentTokenCount);
    return {
      inputTokens: num(o.promptTokenCount) + num(o.toolUsePromptTokenCount) - cachedContent,
      outputTokens: num(o.candidatesTokenCount) + num(o.thoughtsTokenCount),
      cacheReadTokens: cachedContent,
    };
  }
  if ('input_tokens' in o || 'output_tokens' in o) {
    // Anthropic reports cache tokens separately from input_tokens; OpenAI Responses includes them.
    const anthropicStyle = 'cache_read_input_tokens' in o || 'cache_creation_input_tokens' in o;
    return {
      inputTokens: num(o.input_tokens) - (anthropicStyle ? 0 : cached),
      outputTokens: num(o.output_tokens),
      cacheReadTokens: anthropicStyle ? cacheRead : cached,
      cacheWriteTokens: cacheWrite,
    };
  }
  return undefined;
}

export interface UsageTapResult {
  usage: TokenUsage | undefined;
  model: string | undefined;
  /** Content events seen (for a partial charge when a stream ends without usage). */
  contentEvents: number;
  /**
   * True once the answer's final usage was read (JSON usage; the OpenAI usage chunk; Anthropic's
   * message_stop after message_delta; Responses' completed/incomplete event; Gemini's chunk with
   * a finishReason). Anything less is settled at the reservation's bound.
   */
  complete: boolean;
}

/** Usage and model of a whole (non-streamed) JSON response body; nothing when it is not JSON. */
export function jsonUsage(body: Buffer): UsageTapResult {
  const result: UsageTapResult = { usage: undefined, model: undefined, contentEvents: 0, complete: false };
  try {
    const parsed = JSON.parse(body.toString('utf8')) as Obj;
    result.usage = usageFromObject(parsed.usage ?? parsed.usageMetadata);
    // Whisper-style transcriptions report no usage, only the audio's duration (verbose_json).
    if (result.usage === undefined && typeof parsed.duration === 'number' && Number.isFinite(parsed.duration) && parsed.duration >= 0 && typeof parsed.text === 'string') {
      result.usage = { inputTokens: 0, outputTokens: 0, audioSeconds: parsed.duration };
    }
    result.complete = result.usage !== undefined;
    if (typeof parsed.model === 'string') result.model = parsed.model;
  } catch {
    // Not JSON (audio, files): no usage to read.
  }
  return result;
}

/**
 * Reads usage from a streamed answer chunk by chunk, returning what goes on to the client: SSE
 * event by event (holding back only an incomplete event, and the usage chunk the gateway asked
 * for itself); other bodies as they come, with a bounded side copy parsed at the end.
 */
export class UsageReader {
  readonly result: UsageTapResult = { usage: undefined, model: undefined, contentEvents: 0, complete: false };
  #anthropicDelta = false;
  readonly #sse: boolean;
  readonly #kind: StreamKind;
  readonly #stripInjected: boolean;
  #pending = '';
  #copy: Buffer[] = [];
  #copied = 0;

  constructor(options: { sse: boolean; kind: StreamKind; stripInjectedUsage: boolean }) {
    this.#sse = options.sse;
    this.#kind = options.kind;
    this.#stripInjected = options.stripInjectedUsage;
  }

  /** What of `chunk` goes to the client now, if anything. */
  push(chunk: Buffer): Buffer | undefined {
    if (!this.#sse) {
      if (this.#copied < MAX_JSON_COPY) {
        this.#copy.push(chunk);
        this.#copied += chunk.length;
      }
      return chunk;
    }
    this.#pending += chunk.toString('utf8');
    let out = '';
    for (;;) {
      const m = /\r?\n\r?\n/.exec(this.#pending);
      if (!m) break;
      const event = this.#pending.slice(0, m.index + m[0].length);
      this.#pending = this.#pending.slice(m.index + m[0].length);
      if (this.#inspect(event)) out += event;
    }
    return out.length ? Buffer.from(out, 'utf8') : undefined;
  }

  /** The body ended: what is still held goes to the client, if anything. */
  end(): Buffer | undefined {
    let rest: Buffer | undefined;
    if (this.#sse) {
      if (this.#pending && this.#inspect(this.#pending)) rest = Buffer.from(this.#pending, 'utf8');
    } else if (this.#copied <= MAX_JSON_COPY) {
      Object.assign(this.result, jsonUsage(Buffer.concat(this.#copy)));
    }
    this.#copy = [];
    return rest;
  }

  /** Returns false when the event must not reach the client. */
  #inspect(event: string): boolean {
    const data = event
      .split(/\r?\n/)
      .filter((l) => l.startsWith('data:'))
      .map((l) => l.slice(5).trimStart())
      .join('\n');
    if (!data || data === '[DONE]') return true;
    let obj: Obj;
    try {
      obj = JSON.parse(data) as Obj;
    } catch {
      return true;
    }
    if (this.#kind === 'anthropic') {
      if (obj.type === 'message_start') {
        const message = obj.message as Obj | undefined;
        this.result.usage = usageFromObject(message?.usage);
        if (typeof message?.model === 'string') this.result.model = message.model;
      } else if (obj.type === 'message_delta') {
        const delta = usageFromObject(obj.usage);
        if (delta) {
          this.result.usage = { ...(this.result.usage ?? { inputTokens: 0, outputTokens: 0 }), outputTokens: delta.outputTokens };
          this.#anthropicDelta = true;
        }
      } else if (obj.type === 'message_stop') this.result.complete = this.#anthropicDelta && this.result.usage !== undefined;
      else if (obj.type === 'content_block_delta') this.result.contentEvents++;
      return true;
    }
    if (this.#kind === 'responses') {
      if (obj.type === 'response.completed' || obj.type === 'response.incomplete') {
        const response = obj.response as Obj | undefined;
        this.result.usage = usageFromObject(response?.usage);
        this.result.complete = this.result.usage !== undefined;
        if (typeof response?.model === 'string') this.result.model = response.model;
      } else if (obj.type === 'response.output_text.delta') this.result.contentEvents++;
      return true;
    }
    if (this.#kind === 'gemini') {
      const usage = usageFromObject(obj.usageMetadata);
      if (usage) this.result.usage = usage;
      if (typeof obj.modelVersion === 'string') this.result.model = obj.modelVersion;
      const candidates = obj.candidates as Obj[] | undefined;
      if (Array.isArray(candidates) && candidates.some((c) => c && typeof c === 'object' && typeof c.finishReason === 'string')) this.result.complete = usage !== undefined;
      else this.result.contentEvents++;
      return true;
    }
    if (typeof obj.model === 'string') this.result.model = obj.model;
    const choices = obj.choices as unknown[] | undefined;
    if (obj.usage) {
      this.result.usage = usageFromObject(obj.usage);
      this.result.complete = this.result.usage !== undefined;
      // The usage-only chunk the gateway asked for on the client's behalf: not the client's.
      if (this.#stripInjected && Array.isArray(choices) && choices.length === 0) return false;
    } else if (Array.isArray(choices) && choices.length > 0) this.result.contentEvents++;
    return true;
  }
}

/** `UsageReader` as a Transform, for a caller that pipes. */
export class UsageTap extends Transform {
  readonly #reader: UsageReader;

  constructor(options: { sse: boolean; kind: StreamKind; stripInjectedUsage: boolean }) {
    super();
    this.#reader = new UsageReader(options);
  }

  get result(): UsageTapResult {
    return this.#reader.result;
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    done(null, this.#reader.push(chunk));
  }

  override _flush(done: TransformCallback): void {
    done(null, this.#reader.end());
  }
}
