/**
 * Stage 4 of the request path: reserve. Every request holds a reservation while it runs — capped
 * and uncapped keys take the same path — sized by the pricing engine's upper bound for the
 * classified request. A key with a spend cap never forwards a request whose bound is unknown.
 * When a cap refuses, the answer says whether retrying can help: settled spend at the cap is
 * final (`budget_exceeded`, no retry); only other requests' reservations in the way is
 * `budget_busy` with `retry-after`, so SDKs retry and honest small-budget traffic is not punished
 * for the bound. Per-minute rate limits (requests, tokens) refuse with `rate_limit_exceeded` and a
 * `retry-after` up to the next UTC minute; every refusal names the limit and when it resets.
 */
import { HostError } from '../errors.ts';
import { reservationBound, tokenRates, MICROS } from '../pricing.ts';
import { resetLabel, secondsUntilReset, windowKind } from '../spend-windows.ts';
import type { SpendLedger } from '../spend.ts';
import type { KeyRecord } from '../store.ts';
import type { ClassifiedRequest } from './classified.ts';

export interface Held {
  reservationId: string;
  day: string;
  /** The amount held; null when no bound was known (uncapped key): settle then prices what it sees. */
  boundMicros: number | null;
}

/** A request's upper bounds: its cost, and its tokens (input + output) where the endpoint is priced by tokens. */
export interface RequestBound {
  micros: number;
  /** null: the gateway cannot bound the tokens (a key with a tokens-per-minute limit refuses it). */
  tokens: number | null;
}

export type BudgetRefusalCode = 'budget_exceeded' | 'budget_busy' | 'rate_limit_exceeded' | 'request_over_rate_limit';

export interface BudgetRefusal {
  code: BudgetRefusalCode;
  message: string;
  retryAfter?: number;
  /** Which counter refused, for the alert. */
  window: string;
}

const dollars = (micros: number) => `$${(micros / MICROS).toFixed(micros < 10_000 ? 6 : 4).replace(/0+$/, '').replace(/\.$/, '')}`;

/**
 * The most tokens a request can use, from its cost bound: the bound prices every token at no less
 * than the model's cheapest per-token rate, so bound ÷ that rate is at least input + output.
 * Endpoints not priced by tokens use none; a model without a token price cannot be bounded.
 */
function tokensBound(request: ClassifiedRequest, model: string | undefined, micros: number): number | null {
  const unit = request.endpoint.price.unit;
  if (unit !== 'tokens' && unit !== 'input_tokens') return 0;
  if (!model) return null;
  const rates = tokenRates(request.provider.id, model);
  const cheapest = rates ? (unit === 'input_tokens' ? rates.input : Math.min(rates.input, rates.output)) : 0;
  if (!(cheapest > 0)) return null;
  return Math.min(Math.ceil(micros / cheapest), Number.MAX_SAFE_INTEGER);
}

/** The upper bound for a classified request, or a refusal when a capped key cannot be bounded. */
export function boundFor(request: ClassifiedRequest, model: string | undefined, moneyCapped: boolean): RequestBound | null {
  const body = request.body;
  const bound = reservationBound({
    provider: request.provider.id,
    model,
    rule: request.endpoint.price,
    json: body.format === 'json' ? body.value : undefined,
    bodyBytes: body.format === 'stream' ? (body.declaredLength ?? body.limit) : body.format === 'none' ? 0 : body.bytes.length,
    ...(body.format === 'multipart' ? { fields: body.fields, fileParts: body.fileParts } : {}),
  });
  if (bound.ok) return { micros: bound.micros, tokens: tokensBound(request, model, bound.micros) };
  if (bound.code === 'invalid_request') throw new HostError('invalid_request', bound.message);
  if (moneyCapped) throw new HostError('price_unknown', `${bound.message} This key has a spend cap, so the gateway refuses requests it cannot bound.`);
  return null;
}

/** A key's caps as the ledger takes them. */
function capsOf(key: KeyRecord) {
  return {
    keyDailyCap: key.dailyLimitMicros,
    keyWeeklyCap: key.weeklyLimitMicros,
    keyMonthlyCap: key.monthlyLimitMicros,
    keyLifetimeCap: key.lifetimeLimitMicros,
    keyDailyRequestCap: key.dailyRequestLimit,
    keyRpm: key.rpmLimit,
    keyTpm: key.tpmLimit,
  };
}

const WINDOW_NAMES = { day: 'daily (UTC)', week: 'weekly (UTC, from Monday)', month: 'monthly (UTC)', life: 'lifetime', minute: 'per-minute' } as const;

export async function reserveSpend(
  ledger: SpendLedger,
  key: KeyRecord,
  projectDailyCap: number | null,
  bound: RequestBound | null,
  now: number,
): Promise<{ ok: true; held: Held } | { ok: false; refusal: BudgetRefusal }> {
  // The caller checked the daily, lifetime and project caps; the newer caps fail closed here too.
  if (bound === null && (key.weeklyLimitMicros !== null || key.monthlyLimitMicros !== null)) {
    throw new HostError('price_unknown', 'The gateway cannot bound the cost of this request, and this key has a weekly or monthly spend cap, so it refuses requests it cannot bound.');
  }
  if (key.tpmLimit !== null && (bound === null || bound.tokens === null)) {
    throw new HostError('price_unknown', `The gateway cannot bound how many tokens this request uses, and this key has a limit of ${key.tpmLimit} tokens per minute, so it refuses requests it cannot bound. Name a model with a known price and set max_tokens.`);
  }
  const amount = bound?.micros ?? 0;
  const tokens = bound?.tokens ?? 0;
  const result = await ledger.reserve({ keyId: key.id, projectId: key.projectId, amount, tokens, projectDailyCap, ...capsOf(key), now });
  if (result.ok) return { ok: true, held: { reservationId: result.reservationId, day: result.day, boundMicros: bound?.micros ?? null } };

  const scopeId = result.scope === 'project' ? key.projectId : key.id;
  const counter = await ledger.counter(result.scope, scopeId, result.period);
  const window = `${result.scope}:${result.period}`;
  const kind = windowKind(result.period);
  const resets = resetLabel(result.period);
  const until = resets ? ` It resets at ${resets}.` : '';

  if (kind === 'minute') {
    const retryAfter = secondsUntilReset(result.period, now);
    if (result.scope === 'keytok') {
      const cap = key.tpmLimit ?? 0;
      if (tokens > cap) {
        return { ok: false, refusal: { code: 'request_over_rate_limit', window, message: `This request could use up to ${tokens} tokens, more than this key's limit of ${cap} tokens per minute allows at once; set a lower max_tokens.` } };
      }
      const used = counter.spent + counter.reserved;
      return { ok: false, refusal: { code: 'rate_limit_exceeded', window, retryAfter, message: `This key's limit of ${cap} tokens per minute is reached (${used} used or held this minute; this request could use up to ${tokens}).${until}` } };
    }
    const cap = key.rpmLimit ?? 0;
    return { ok: false, refusal: { code: 'rate_limit_exceeded', window, retryAfter, message: `This key's limit of ${cap} requests per minute is reached.${until}` } };
  }
  if (result.scope === 'keyreq') {
    const cap = key.dailyRequestLimit ?? 0;
    if (counter.spent >= cap) {
      return { ok: false, refusal: { code: 'budget_exceeded', window, message: `This key's daily request cap (${cap}) is used up for ${result.period.slice(2)} (UTC).${until}` } };
    }
    return { ok: false, refusal: { code: 'budget_busy', window, retryAfter: 1, message: `This key's daily request cap is held by requests in flight; retry in a moment.` } };
  }
  const cap =
    (result.scope === 'project' ? projectDailyCap : { life: key.lifetimeLimitMicros, day: key.dailyLimitMicros, week: key.weeklyLimitMicros, month: key.monthlyLimitMicros }[kind]) ?? 0;
  const which = `${result.scope === 'key' ? "this key's" : "the project's"} ${WINDOW_NAMES[kind]} spend cap of ${dollars(cap)}`;
  const held = `This request could cost up to ${dollars(amount)}, the amount held while it runs (setting max_tokens lowers it)`;
  if (counter.spent + amount > cap) {
    return { ok: false, refusal: { code: 'budget_exceeded', window, message: `${held}, which does not fit ${which}: ${dollars(counter.spent)} is already spent.${until}` } };
  }
  return {
    ok: false,
    refusal: { code: 'budget_busy', window, retryAfter: 1, message: `${held}; ${which} is held by requests still running (${dollars(counter.spent)} spent). Retry in a moment.` },
  };
}
