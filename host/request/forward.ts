/**
 * Stages 5 and 6 of the request path: forward the inspected bytes to the enclave (which injects
 * the credential and calls the pinned upstream), relay the answer while reading its usage, then
 * settle the reservation with the real cost, write the audit row and raise budget alerts — once.
 * Streamed uploads pass through a byte limiter and, for multipart file uploads, the strict
 * upload inspector (batch JSONL checked line by line against the key's model allow-list).
 */
import type { FastifyBaseLogger, FastifyReply, FastifyRequest } from 'fastify';
import { Readable } from 'node:stream';
import type { Pool } from 'undici';
import {
  encodeConnectionDescriptor,
  matchEndpoint,
  providerHostData,
  RPC_CONNECTION_HEADER,
  RPC_ENCLAVE_ERROR_HEADER,
  type SignedOwnerMessage,
} from '../../protocol/index.ts';
import type { AuditRow, AuditWriter } from '../audit.ts';
import { forwardToEnclave } from '../enclave-client.ts';
import { ByteLimiter } from '../bodies.ts';
import { HostError } from '../errors.ts';
import type { HostMetrics } from '../metrics.ts';
import { settledCost, type TokenUsage } from '../pricing.ts';
import type { SpendLedger } from '../spend.ts';
import type { ConnectionRecord, KeyRecord } from '../store.ts';
import { jsonUsage, UsageReader, type StreamKind, type UsageTapResult } from '../usage.ts';
import { settleBindings, type AdmitDeps, type Bindings } from './admit.ts';
import type { ClassifiedRequest } from './classified.ts';
import { clientResponseHeaders, upstreamRequestHeaders } from './headers.ts';
import { RequestFormatError } from './json-body.ts';
import { replaceField } from './multipart.ts';
import type { Held } from './reserve.ts';
import { referencedScopes, toolModels } from './references.ts';
import { scopeGrants } from './scopes.ts';
import { UploadInspector } from './upload-inspector.ts';

/** A JSON body as undici's `body.json()` read it (UTF-8, a byte order mark skipped); throws when it is not JSON. */
const utf8 = new TextDecoder();
function parseJson(data: Buffer): unknown {
  return JSON.parse(utf8.decode(data));
}

/** Non-streamed answers up to this size with a Content-Length are read whole and sent at once. */
const SMALL_RESPONSE = 256 * 1024;

export interface Accounting {
  held: Held;
  provider: string;
  requested: string | undefined;
  model: string | undefined;
  ip: string;
  location: { city: string | null } | null;
  deviceMatch: boolean | null;
  aliases: Record<string, string>;
  bindings: Bindings;
  /**
   * Multiplier on the usage's standard price: the priority tier bills above the price data's
   * standard rates (PRIORITY_TIER_FACTOR, as the bound holds).
   */
  priceFactor: number;
}

export interface ForwardDeps {
  enclave: Pool;
  ledger: SpendLedger;
  audit: AuditWriter;
  metrics: HostMetrics;
  timeouts: { headersMs: number; idleMs: number };
  admit: AdmitDeps;
  log: FastifyBaseLogger;
  auditRow(req: FastifyRequest, key: KeyRecord | undefined, fields: Partial<AuditRow>): AuditRow;
  event(key: KeyRecord, type: string, detail: Record<string, unknown>): void;
}

/** The enclave-bound connection descriptor, encoded once per cached connection record. */
const descriptors = new WeakMap<ConnectionRecord, string>();
function descriptorOf(connection: ConnectionRecord): string {
  let encoded = descriptors.get(connection);
  if (encoded === undefined) {
    encoded = encodeConnectionDescriptor({
      connectionId: connection.id,
      provider: connection.provider,
      origin: connection.origin,
      authScheme: connection.authScheme,
      sealedRecord: connection.sealedRecord,
      threshold: connection.threshold,
      ...(connection.allow !== null ? { allow: connection.allow } : {}),
      ...(connection.policy ? { policy: JSON.parse(connection.policy) as SignedOwnerMessage } : {}),
      ...(connection.shareholderSet ? { shareholders: JSON.parse(connection.shareholderSet) as Array<{ id: string; publicKey: string }> } : {}),
    });
    descriptors.set(connection, encoded);
  }
  return encoded;
}

/**
 * A batch input line on a model-locked key: an inference endpoint of this provider, with a model
 * the key may call. (Aliases cannot be rewritten inside an upload: the line must name the model.)
 */
export function batchLineCheck(request: ClassifiedRequest, key: KeyRecord) {
  return (line: Record<string, unknown>, lineNo: number): RequestFormatError | undefined => {
    const url = typeof line.url === 'string' ? line.url.split('?')[0]! : '';
    const hit = typeof line.method === 'string' ? matchEndpoint(request.provider, line.method.toUpperCase(), url) : undefined;
    if (!hit || hit.endpoint.kind !== 'inference') {
      return new RequestFormatError('invalid_request', `Batch input line ${lineNo} calls ${String(line.method)} ${url}, which is not an inference endpoint this key can call.`);
    }
    const body = line.body !== null && typeof line.body === 'object' && !Array.isArray(line.body) ? (line.body as Record<string, unknown>) : undefined;
    const model = body?.model;
    if (typeof model !== 'string' || !key.allowedModels.includes(model)) {
      return new RequestFormatError('model_not_allowed', `Batch input line ${lineNo} uses model ${typeof model === 'string' ? model : '(none)'}; this key may call only ${key.allowedModels.join(', ')}.`);
    }
    for (const m of body ? toolModels(body) : []) {
      if (typeof m !== 'string' || !key.allowedModels.includes(m)) {
        return new RequestFormatError('model_not_allowed', `Batch input line ${lineNo} has a tool that runs ${typeof m === 'string' ? m : 'a model it does not name'}; this key may call only ${key.allowedModels.join(', ')}.`);
      }
    }
    for (const atom of body ? referencedScopes(body) : []) {
      if (!scopeGrants(key.scopes, atom)) return new RequestFormatError('scope_not_granted', `Batch input line ${lineNo} reads stored data that needs the scope ${atom}.`);
    }
    return undefined;
  };
}

interface OutgoingBody {
  body: Buffer | Readable | null;
  /** Set for streamed bodies: why the stream failed, when it was the client's body that was refused. */
  refused?: () => HostError | undefined;
  stripInjectedUsage: boolean;
}

function outgoingBody(req: FastifyRequest, request: ClassifiedRequest, key: KeyRecord, model: string | undefined): OutgoingBody {
  const body = request.body;
  switch (body.format) {
    case 'none':
      return { body: null, stripInjectedUsage: false };
    case 'bytes':
      return { body: body.bytes, stripInjectedUsage: false };
    case 'multipart': {
      const source = request.endpoint.model;
      const current = source.in === 'multipart' ? body.fields.get(source.field) : undefined;
      if (source.in === 'multipart' && model !== undefined && current !== model) {
        return { body: replaceField(body.bytes, body.boundary, source.field, model), stripInjectedUsage: false };
      }
      return { body: body.bytes, stripInjectedUsage: false };
    }
    case 'json': {
      const value = body.value;
      const source = request.endpoint.model;
      let rewrite = false;
      if (source.in === 'json' && model !== undefined && value[source.field] !== model) {
        value[source.field] = model;
        rewrite = true;
      }
      // Usage for OpenAI-style streams: asked for on the client's behalf, the extra chunk removed again.
      let stripInjectedUsage = false;
      if (request.endpoint.stream === 'openai' && value.stream === true && providerHostData(request.provider.id)?.errorShape === 'openai') {
        const options = value.stream_options;
        if (options === undefined || options === null || (typeof options === 'object' && !Array.isArray(options))) {
          const given = (options ?? {}) as Record<string, unknown>;
          if (given.include_usage !== true) {
            value.stream_options = { ...given, include_usage: true };
            stripInjectedUsage = true;
            rewrite = true;
          }
        }
      }
      // The value was parsed strictly (no duplicate keys, bounded depth), so its serialisation
      // says exactly what was checked.
      return { body: rewrite ? Buffer.from(JSON.stringify(value)) : body.bytes, stripInjectedUsage };
    }
    case 'stream': {
      const limiter = new ByteLimiter(body.limit);
      let refusal: HostError | undefined;
      let stream: Readable = req.raw.pipe(limiter);
      limiter.once('error', () => {
        refusal ??= new HostError('request_too_large', `The request body exceeds ${body.limit} bytes.`);
      });
      if (body.boundary !== undefined) {
        const checkBatch = key.allowedModels.length > 0;
        const inspector = new UploadInspector({ boundary: body.boundary, requireBatchCheck: checkBatch, ...(checkBatch ? { checkLine: batchLineCheck(request, key) } : {}) });
        inspector.once('error', (e: Error) => {
          if (e instanceof RequestFormatError) refusal ??= new HostError(e.code as never, e.message);
        });
        limiter.once('error', (e) => inspector.destroy(e));
        stream = limiter.pipe(inspector);
      }
      return { body: stream, refused: () => refusal, stripInjectedUsage: false };
    }
  }
}

export async function forward(
  deps: ForwardDeps,
  req: FastifyRequest,
  reply: FastifyReply,
  connection: ConnectionRecord,
  key: KeyRecord,
  request: ClassifiedRequest,
  acc: Accounting,
): Promise<FastifyReply> {
  const finish = finisher(deps, req, key, acc);
  let outgoing: OutgoingBody;
  try {
    outgoing = outgoingBody(req, request, key, acc.model);
  } catch (e) {
    finish(400, undefined, 'invalid_request');
    throw e;
  }
  const headers = upstreamRequestHeaders(request.provider, req.headers);
  if (Buffer.isBuffer(outgoing.body)) headers['content-length'] = String(outgoing.body.length);
  else if (outgoing.body && request.body.format === 'stream' && request.body.declaredLength !== undefined) {
    headers['content-length'] = String(request.body.declaredLength);
  } else delete headers['content-length'];
  if (outgoing.body === null) delete headers['content-type'];
  headers[RPC_CONNECTION_HEADER] = descriptorOf(connection);

  const call = forwardToEnclave(deps.enclave, request.path + request.query, {
    method: request.method as 'POST',
    headers,
    body: outgoing.body,
    headersTimeout: deps.timeouts.headersMs,
    bodyTimeout: deps.timeouts.idleMs,
  });
  // A client that goes away cancels the enclave call (and so the upstream call).
  reply.raw.on('close', () => {
    if (!reply.raw.writableFinished) call.abort();
  });
  let res;
  try {
    res = await call.answer;
  } catch (e) {
    const refused = outgoing.refused?.();
    if (refused) {
      finish(refused.status, undefined, refused.code);
      throw refused;
    }
    if (req.raw.errored || req.raw.aborted || reply.raw.destroyed) {
      // The client went away while its body streamed: not a gateway failure.
      req.log.info({ err: (e as Error).message }, 'client went away mid-request');
      finish(400, undefined, 'client_disconnected');
      throw new HostError('request_aborted', 'The request body ended before it was complete.');
    }
    req.log.error({ err: (e as Error).message }, 'enclave unreachable');
    finish(503, undefined, 'enclave_unavailable');
    throw new HostError('enclave_unavailable', 'the gateway could not reach its enclave');
  }
  // The body was refused while it streamed, but the enclave answered anyway: the client is told why.
  const refusedLate = outgoing.refused?.();
  if (refusedLate) {
    await res.discard();
    finish(refusedLate.status, undefined, refusedLate.code);
    throw refusedLate;
  }
  deps.metrics.enclaveSeconds.observe((performance.now() - (req as unknown as { startedAt: number }).startedAt) / 1000);
  const enclaveError = res.headers[RPC_ENCLAVE_ERROR_HEADER];
  if (typeof enclaveError === 'string') {
    finish(res.statusCode, undefined, enclaveError);
    const detail = (await res.whole().then(parseJson).catch(() => ({}))) as { error?: { message?: string } };
    req.log.warn({ enclaveError, detail: detail.error?.message }, 'enclave refused');
    if (enclaveError === 'shareholders_unavailable') {
      throw new HostError('shareholders_unavailable', 'Not enough key shareholders are reachable to use this key right now.');
    }
    if (enclaveError === 'path_not_allowed') throw new HostError('endpoint_not_allowed', `${request.path} is not an allowed endpoint`);
    // The owner's signed connection policy, enforced by the enclave whatever this host decided.
    if (enclaveError === 'policy_operation_denied' || enclaveError === 'policy_model_denied' || enclaveError === 'policy_invalid') {
      throw new HostError('connection_policy_denied', "This request is outside the connection owner's signed policy.");
    }
    if (enclaveError === 'policy_ceiling_reached' || enclaveError === 'lease_limit_reached') {
      throw new HostError('connection_ceiling_reached', "The connection owner's daily limit is used up until 00:00 UTC.");
    }
    throw new HostError('gateway_error', 'the gateway could not complete the request');
  }
  const responseHeaders = clientResponseHeaders(res.headers);
  // /v1/models lists only what the key may call.
  if (request.endpoint.id === 'models.list' && key.allowedModels.length > 0 && res.statusCode === 200) {
    let list: { data?: Array<{ id: string }> };
    try {
      list = parseJson(await res.whole()) as { data?: Array<{ id: string }> };
    } catch {
      finish(502, undefined, 'upstream_broken');
      throw new HostError('gateway_error', 'the upstream model list could not be read');
    }
    const aliases = acc.aliases;
    const callable = new Set([...key.allowedModels, ...Object.keys(aliases).filter((a) => key.allowedModels.includes(aliases[a]!))]);
    const filtered = { ...list, data: (Array.isArray(list.data) ? list.data : []).filter((m) => m && callable.has(m.id)) };
    delete responseHeaders['content-length'];
    delete responseHeaders['content-encoding'];
    finish(200, undefined, null);
    return reply.status(200).headers(responseHeaders).send(filtered);
  }
  const contentType = String(res.headers['content-type'] ?? '');
  const sse = contentType.toLowerCase().includes('text/event-stream');
  const status = res.statusCode;
  // A small JSON answer of known length is read whole and sent in one write (no stream plumbing).
  const length = Number(res.headers['content-length']);
  if (!sse && !outgoing.stripInjectedUsage && Number.isInteger(length) && length <= SMALL_RESPONSE) {
    let data: Buffer;
    try {
      data = await res.whole();
    } catch {
      finish(status, undefined, 'upstream_broken');
      throw new HostError('gateway_error', 'the upstream response broke off');
    }
    // The answer goes out first; pricing, the spend update and the audit row follow it.
    reply.status(status).headers(responseHeaders).send(data);
    finish(status, { result: jsonUsage(data) }, status >= 400 ? 'upstream_error' : null);
    return reply;
  }
  const kind: StreamKind = request.endpoint.stream ?? (request.path.startsWith('/v1/messages') ? 'anthropic' : 'openai');
  const tap = new UsageReader({ sse, kind, stripInjectedUsage: outgoing.stripInjectedUsage });
  if (sse || outgoing.stripInjectedUsage) delete responseHeaders['content-length'];
  // The answer's chunks go through the usage reader straight onto the client's socket, the
  // enclave paused while it is full. The reply is hijacked: Fastify's stream plumbing (a body
  // stream, two end-of-stream watchers and a pipe per answer) kept each streamed answer's objects
  // alive long enough to be promoted, ~85 µs of host CPU per streamed request, most of it garbage
  // collection. Its onResponse hook (metrics, access line) still runs when the response finishes.
  const client = reply.raw;
  reply.hijack();
  client.once('close', () => finish(status, tap, client.writableFinished ? null : 'client_disconnected'));
  client.writeHead(status, responseHeaders);
  res.stream({
    data(chunk) {
      const out = tap.push(chunk);
      if (out !== undefined && out.length > 0 && !client.write(out)) {
        res.pause();
        client.once('drain', () => res.resume());
      }
    },
    end() {
      client.end(tap.end());
      finish(status, tap, status >= 400 ? 'upstream_error' : null);
    },
    // If the enclave (or upstream) dies mid-stream, end the client's response with an error
    // instead of leaving it hanging; the reservation's bound is charged (usage never arrived).
    // A call this host cancelled because its client went away is settled as that.
    error(e) {
      if (res.aborted) return void client.destroy();
      finish(status, tap, 'upstream_broken');
      req.log.warn({ err: e.message }, 'the answer broke off mid-stream');
      client.destroy(e);
    },
  });
  return reply;
}

/** The usage as if each token were billed `factor` times (a tier priced above the standard rates). */
function scaleUsage(u: TokenUsage, factor: number): TokenUsage {
  return {
    inputTokens: u.inputTokens * factor,
    outputTokens: u.outputTokens * factor,
    ...(u.cacheReadTokens !== undefined ? { cacheReadTokens: u.cacheReadTokens * factor } : {}),
    ...(u.cacheWriteTokens !== undefined ? { cacheWriteTokens: u.cacheWriteTokens * factor } : {}),
    ...(u.audioSeconds !== undefined ? { audioSeconds: u.audioSeconds * factor } : {}),
  };
}

/** Settles the reservation with the real cost, writes the audit row, fires budget alerts. Once. */
function finisher(deps: ForwardDeps, req: FastifyRequest, key: KeyRecord, acc: Accounting) {
  let done = false;
  return (status: number, tap: { result: UsageTapResult } | undefined, code: string | null) => {
    if (done) return;
    done = true;
    deps.metrics.reservationsInFlight.dec();
    const result = tap?.result;
    const reported = result?.usage;
    const usage = reported && acc.priceFactor !== 1 ? scaleUsage(reported, acc.priceFactor) : reported;
    const model = result?.model ?? acc.model;
    // An answer that failed before producing anything costs nothing unless it reported usage; any
    // other answer whose final usage never arrived is charged the reservation's bound.
    const producedNothing = tap === undefined || (status >= 400 && !result?.complete && (result?.contentEvents ?? 0) === 0);
    const complete = result?.complete === true && code !== 'upstream_broken' && code !== 'client_disconnected';
    const nothing = producedNothing && !usage;
    const cost = nothing ? 0 : settledCost({ provider: acc.provider, model, usage, complete, boundMicros: acc.held.boundMicros });
    // Tokens used, for the per-minute token counter — only from a complete answer's final usage,
    // as money is: a stream abandoned before it (Anthropic's message_start says 1 output token)
    // keeps the request's token bound charged (undefined); an answer that produced nothing used none.
    const tokensUsed = nothing ? 0 : reported && complete ? Math.ceil(reported.inputTokens + (reported.cacheReadTokens ?? 0) + (reported.cacheWriteTokens ?? 0) + reported.outputTokens) : undefined;
    deps.ledger
      .settle(acc.held.reservationId, cost, tokensUsed)
      .then((settled) => {
        const cap = key.dailyLimitMicros;
        if (cap === null || cap === 0) return;
        for (const pct of [50, 80, 100]) {
          const line = (cap * pct) / 100;
          if (settled.keyDay.before < line && settled.keyDay.after >= line) {
            deps.event(key, `budget_${pct}`, { spentMicros: settled.keyDay.after, capMicros: cap });
          }
        }
      })
      .catch((e: Error) => req.log.error({ err: e.message }, 'settle failed'));
    const succeeded = status < 400 && code === null;
    settleBindings(deps.admit, key, acc.bindings, succeeded).catch((e: Error) => req.log.warn({ err: e.message }, 'could not settle the first-use binding'));
    if (cost > 0) deps.metrics.spend.inc({ provider: acc.provider }, cost / 1e6);
    deps.audit.write(
      deps.auditRow(req, key, {
        provider: acc.provider, modelRequested: acc.requested ?? null, modelResolved: model ?? null, tokensIn: reported?.inputTokens ?? 0,
        tokensOut: reported?.outputTokens ?? (result?.contentEvents ?? 0), tokensCached: reported?.cacheReadTokens ?? 0, costMicros: cost, status, code,
        clientIp: acc.ip, city: acc.location?.city ?? null, deviceMatch: acc.deviceMatch,
      }),
    );
  };
}
