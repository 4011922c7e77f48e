/**
 * Stage 4 of the request path: reserve. Every request holds a reservation while it runs — capped
 * and uncapped keys take the same path — sized by the pricing engine's upper bound for the
 * classified request. A key with a spend cap never forwards a request whose bound is unknown.
 * When a cap refuses, the answer says whether retrying can help: settled spend at the cap is
 * final (`budget_exceeded`, no retry); only other requests' reservations in the way is
 * `budget_busy` with `retry-after`, so SDKs retry and honest small-budget traffic is not punished
 * for the bound.
 */
import { HostError } from '../errors.ts';
import { reservationBound, MICROS } from '../pricing.ts';
import { utcDay, type SpendLedger } from '../spend.ts';
import type { KeyRecord } from '../store.ts';
import type { ClassifiedRequest } from './classified.ts';

export interface Held {
  reservationId: string;
  day: string;
  /** The amount held; null when no bound was known (uncapped key): settle then prices what it sees. */
  boundMicros: number | null;
}

export interface BudgetRefusal {
  code: 'budget_exceeded' | 'budget_busy';
  message: string;
  retryAfter?: number;
  /** Which counter refused, for the alert. */
  window: string;
}

const dollars = (micros: number) => `$${(micros / MICROS).toFixed(micros < 10_000 ? 6 : 4).replace(/0+$/, '').replace(/\.$/, '')}`;

/** The upper bound for a classified request, or a refusal when a capped key cannot be bounded. */
export function boundFor(request: ClassifiedRequest, model: string | undefined, moneyCapped: boolean): number | null {
  const body = request.body;
  const bound = reservationBound({
    provider: request.provider.id,
    model,
    rule: request.endpoint.price,
    json: body.format === 'json' ? body.value : undefined,
    bodyBytes: body.format === 'stream' ? (body.declaredLength ?? body.limit) : body.format === 'none' ? 0 : body.bytes.length,
    ...(body.format === 'multipart' ? { fields: body.fields, fileParts: body.fileParts } : {}),
  });
  if (bound.ok) return bound.micros;
  if (bound.code === 'invalid_request') throw new HostError('invalid_request', bound.message);
  if (moneyCapped) throw new HostError('price_unknown', `${bound.message} This key has a spend cap, so the gateway refuses requests it cannot bound.`);
  return null;
}

export async function reserveSpend(
  ledger: SpendLedger,
  key: KeyRecord,
  projectDailyCap: number | null,
  boundMicros: number | null,
  now: number,
): Promise<{ ok: true; held: Held } | { ok: false; refusal: BudgetRefusal }> {
  const amount = boundMicros ?? 0;
  const result = await ledger.reserve({
    keyId: key.id,
    projectId: key.projectId,
    amount,
    keyDailyCap: key.dailyLimitMicros,
    keyLifetimeCap: key.lifetimeLimitMicros,
    projectDailyCap,
    keyDailyRequestCap: key.dailyRequestLimit,
    now,
  });
  if (result.ok) return { ok: true, held: { reservationId: result.reservationId, day: result.day, boundMicros } };

  const day = utcDay(now);
  const scopeId = result.scope === 'project' ? key.projectId : key.id;
  const counter = await ledger.counter(result.scope as 'key' | 'project' | 'keyreq', scopeId, result.period);
  const window = `${result.scope}:${result.period}`;
  if (result.scope === 'keyreq') {
    const cap = key.dailyRequestLimit ?? 0;
    if (counter.spent >= cap) {
      return { ok: false, refusal: { code: 'budget_exceeded', window, message: `This key's daily request cap (${cap}) is used up for ${day} (UTC).` } };
    }
    return { ok: false, refusal: { code: 'budget_busy', window, retryAfter: 1, message: `This key's daily request cap is held by requests in flight; retry in a moment.` } };
  }
  const cap = (result.scope === 'project' ? projectDailyCap : result.period === 'life' ? key.lifetimeLimitMicros : key.dailyLimitMicros) ?? 0;
  const which = `${result.scope === 'key' ? "this key's" : "the project's"} ${result.period === 'life' ? 'lifetime' : 'daily (UTC)'} spend cap of ${dollars(cap)}`;
  const held = `This request could cost up to ${dollars(amount)}, the amount held while it runs (setting max_tokens lowers it)`;
  if (counter.spent + amount > cap) {
    return { ok: false, refusal: { code: 'budget_exceeded', window, message: `${held}, which does not fit ${which}: ${dollars(counter.spent)} is already spent.` } };
  }
  return {
    ok: false,
    refusal: { code: 'budget_busy', window, retryAfter: 1, message: `${held}; ${which} is held by requests still running (${dollars(counter.spent)} spent). Retry in a moment.` },
  };
}
