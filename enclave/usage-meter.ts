/**
 * Reads token usage from the answers the enclave relays, so the owner's daily token and dollar
 * ceilings are counted inside the trusted boundary, not from what the host reports. JSON bodies
 * (bounded side copy) and SSE streams (event by event) of every provider shape the host reads:
 * `usage` (OpenAI, Anthropic), `message.usage` (Anthropic message_start), `response.usage`
 * (Responses API), `usageMetadata` (Gemini). Counts only; never keeps or logs content.
 */

export interface RelayedUsage {
  inputTokens: number;
  outputTokens: number;
  /**
   * False when the answer's final usage never passed (a stream cut off before OpenAI's usage
   * chunk, Anthropic's message_delta, Responses' completed event or Gemini's finishReason): the
   * counts are then only what was seen so far (Anthropic's message_start says 1 output token).
   */
  complete?: boolean;
}

const MAX_JSON_COPY = 4 * 1024 * 1024;
const MAX_SSE_EVENT = 1024 * 1024;
type Obj = Record<string, unknown>;
const num = (v: unknown) => (typeof v === 'number' && Number.isFinite(v) && v > 0 ? Math.floor(v) : 0);
const obj = (v: unknown): Obj | undefined => (v && typeof v === 'object' && !Array.isArray(v) ? (v as Obj) : undefined);

/** Input and output tokens of one usage object, any provider's field names; cache tokens count as input. */
export function tokensOf(u: unknown): RelayedUsage | undefined {
  const o = obj(u);
  if (!o) return undefined;
  if ('prompt_tokens' in o || 'completion_tokens' in o) return { inputTokens: num(o.prompt_tokens), outputTokens: num(o.completion_tokens) };
  if ('promptTokenCount' in o || 'candidatesTokenCount' in o) {
    return { inputTokens: num(o.promptTokenCount) + num(o.toolUsePromptTokenCount), outputTokens: num(o.candidatesTokenCount) + num(o.thoughtsTokenCount) };
  }
  if ('input_tokens' in o || 'output_tokens' in o) {
    return { inputTokens: num(o.input_tokens) + num(o.cache_read_input_tokens) + num(o.cache_creation_input_tokens), outputTokens: num(o.output_tokens) };
  }
  return undefined;
}

export class UsageMeter {
  readonly #sse: boolean;
  #copy: Buffer[] = [];
  #copied = 0;
  #pending = '';
  #usage: RelayedUsage | undefined;
  #final = false;

  constructor(contentType: string) {
    this.#sse = contentType.toLowerCase().includes('text/event-stream');
  }

  /** Streamed providers repeat or accumulate usage: keep the largest of each count seen. */
  #observe(value: unknown): void {
    const o = obj(value);
    if (!o) return;
    // The final usage of a stream: OpenAI's usage chunk and Anthropic's message_delta carry a
    // top-level `usage` (message_start's sits in `message`); Responses ends with completed or
    // incomplete; Gemini's last chunk has a finishReason beside its usageMetadata.
    const candidates = o.candidates;
    if (
      (obj(o.usage) && o.type !== 'message_start') ||
      ((o.type === 'response.completed' || o.type === 'response.incomplete') && obj(obj(o.response)?.usage)) ||
      (obj(o.usageMetadata) && Array.isArray(candidates) && candidates.some((c) => typeof obj(c)?.finishReason === 'string'))
    ) {
      this.#final = true;
    }
    for (const u of [o.usage, obj(o.message)?.usage, obj(o.response)?.usage, o.usageMetadata]) {
      const t = tokensOf(u);
      if (!t) continue;
      this.#usage = {
        inputTokens: Math.max(this.#usage?.inputTokens ?? 0, t.inputTokens),
        outputTokens: Math.max(this.#usage?.outputTokens ?? 0, t.outputTokens),
      };
    }
  }

  #event(event: string): void {
    const data = event
      .split(/\r?\n/)
      .filter((l) => l.startsWith('data:'))
      .map((l) => l.slice(5).trimStart())
      .join('\n');
    if (!data || data === '[DONE]') return;
    try {
      this.#observe(JSON.parse(data));
    } catch {
      // Not JSON: nothing to count.
    }
  }

  push(chunk: Buffer): void {
    if (!this.#sse) {
      if (this.#copied <= MAX_JSON_COPY) {
        this.#copy.push(chunk);
        this.#copied += chunk.length;
      }
      return;
    }
    this.#pending += chunk.toString('utf8');
    for (;;) {
      const m = /\r?\n\r?\n/.exec(this.#pending);
      if (!m) break;
      this.#event(this.#pending.slice(0, m.index));
      this.#pending = this.#pending.slice(m.index + m[0].length);
    }
    // An event that never ends is not read (it cannot be a usage event of any provider).
    if (this.#pending.length > MAX_SSE_EVENT) this.#pending = '';
  }

  /** The usage read (`complete` says whether it was the final one), or undefined when the answer carried none that could be read. */
  end(): RelayedUsage | undefined {
    if (this.#sse) {
      if (this.#pending) this.#event(this.#pending);
      this.#pending = '';
    } else if (this.#copied <= MAX_JSON_COPY && this.#copied > 0) {
      try {
        this.#observe(JSON.parse(Buffer.concat(this.#copy).toString('utf8')));
      } catch {
        // Not JSON (audio, files): no usage.
      }
      this.#copy = [];
    }
    // A whole JSON body is final by nature; a stream only once its final usage passed.
    return this.#usage && { ...this.#usage, complete: !this.#sse || this.#final };
  }
}
