/**
 * The enclave's RPC server: HTTP/1.1 on a stream transport (unix socket or TCP here, vsock in
 * production). Explicit lifecycle phases, like a state machine: `booting` (only /healthz) →
 * `serving` (all routes) or `failed` (only /healthz). The host is not trusted: every forward is
 * checked here. Node's http server is used directly to keep this small and streaming.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { NSM_LIMITS, type Nsm } from '../attestation/nsm.ts';
import { fromHex, fromUtf8, toHex } from '../protocol/bytes.ts';
import { utcDay, verifyConnectionPolicy, type ConnectionPolicy } from '../protocol/connection-policy.ts';
import type { SignedOwnerMessage } from '../protocol/owner-signature.ts';
import { decodeConnectionDescriptor, RPC_CONNECTION_HEADER, RPC_EVICT_PATH, RPC_FORWARD_PREFIX } from '../protocol/rpc.ts';
import { canonicalOrigin, shareholderSetSha256, type KeyBinding } from '../protocol/sealed-record.ts';
import { generateX25519KeyPair, type X25519KeyPair } from '../protocol/share-envelope.ts';
import { receiptKeyUserData, signReceiptHead, signUsageReceipt, type SignedUsageReceipt, type UsageReceipt } from '../protocol/usage-receipt.ts';
import { EnclaveError } from './errors.ts';
import { generateReceiptSigner } from './receipt-signer.ts';
import { Forwarder, resolveTarget, type EgressRoute, type ForwarderOptions } from './forward.ts';
import { KeyResolver } from './key-resolver.ts';
import type { ShareholderEndpoint } from './shareholders.ts';
import { createEnclaveMetrics } from './metrics.ts';
import { checkPolicy, classifyForPolicy, DailyUsageLedger, LeaseMeter, MAX_POLICY_BODY, policyNeedsModel, PolicyVersions, requestModel } from './policy.ts';

export type EnclavePhase = 'booting' | 'serving' | 'failed';

/** Receipts kept for the host to collect (SPEC.md §10): about 300 bytes each. */
const RECEIPT_LOG_LIMIT = 50_000;

/** A receipt's fields before it is signed (it gets its `seq` and `prevSeq` when signed). */
type Unsigned = Omit<UsageReceipt, 'seq' | 'prevSeq'>;
type Descriptor = ReturnType<typeof decodeConnectionDescriptor>;
type VerifiedPolicy = { signed: SignedOwnerMessage; policy: ConnectionPolicy; sha256: string };
/**
 * Descriptors already decoded, their policies verified and their origins checked, by the
 * header's exact bytes: the host sends the same descriptor for every request of a connection, and
 * an Ed25519 verify (~1 ms in JS) per request would cost more than the rest of the request. Same
 * bytes, same result: what was refused is not kept, so it is checked (and refused) again.
 */
const DESCRIPTOR_MEMO_SIZE = 4096;
type CheckedDescriptor = { descriptor: Descriptor; base: VerifiedPolicy | undefined; setSha256: string | undefined; origin: string };
const descriptorMemo = new Map<string, CheckedDescriptor>();

function decodeAndVerify(header: string | string[] | undefined): CheckedDescriptor {
  if (typeof header === 'string') {
    const hit = descriptorMemo.get(header);
    if (hit) return hit;
  }
  let descriptor: Descriptor;
  try {
    descriptor = decodeConnectionDescriptor(header);
  } catch (e) {
    throw new EnclaveError('bad_request', (e as Error).message);
  }
  let base: VerifiedPolicy | undefined;
  if (descriptor.policy !== undefined) {
    try {
      base = { signed: descriptor.policy, ...verifyConnectionPolicy(descriptor.policy, descriptor.connectionId) };
    } catch (e) {
      throw new EnclaveError('policy_invalid', `connection policy does not verify: ${(e as Error).message}`);
    }
  }
  // A record sealed with its shareholder set (0x04): the set's hash goes into the binding, so the
  // record opens only if this is the set the owner sealed with (SPEC.md §1, §3).
  let setSha256: string | undefined;
  if (descriptor.shareholders !== undefined) {
    try {
      setSha256 = shareholderSetSha256(descriptor.shareholders, descriptor.threshold);
    } catch (e) {
      throw new EnclaveError('bad_request', `connection shareholders: ${(e as Error).message}`);
    }
  }
  let origin: string;
  try {
    origin = canonicalOrigin(descriptor.origin);
  } catch {
    throw new EnclaveError('origin_not_allowed', 'connection origin is not a canonical origin');
  }
  const entry = { descriptor, base, setSha256, origin };
  if (typeof header === 'string') {
    if (descriptorMemo.size >= DESCRIPTOR_MEMO_SIZE) descriptorMemo.delete(descriptorMemo.keys().next().value!);
    descriptorMemo.set(header, entry);
  }
  return entry;
}

export interface EnclaveConfig {
  nsm: Nsm;
  shareholders: ShareholderEndpoint[];
  /** Shareholder id → local stream (production: unix sockets bridged to vsock); see KeyResolver. */
  shareholderRoutes?: Map<string, EgressRoute>;
  /** Development only: permit http://127.0.0.1 upstream origins (mock upstreams). */
  allowLoopbackHttp?: boolean;
  cacheTtlMs?: number;
  /** Clock for the daily ceiling's UTC day (tests). */
  now?: () => number;
  /** Upstream transport: egress routes, CA bundle, timeouts. */
  forwarder?: ForwarderOptions;
  log?: { warn: (o: object, m: string) => void; info: (o: object, m: string) => void; error: (o: object, m: string) => void };
}

const silent = { warn() {}, info() {}, error() {} };

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

function sendError(res: ServerResponse, error: EnclaveError): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  res.setHeader('x-sg-enclave-error', error.code);
  sendJson(res, error.status, { error: { code: error.code, message: error.message } });
}

/** Reads a request body whole up to `limit`; `undefined` beyond it (a model that cannot be told, an oversized RPC). */
async function readBoundedBody(req: IncomingMessage, limit: number): Promise<Buffer | undefined> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    // Keep draining, so the refusal can still be answered on this connection.
    if (size <= limit) chunks.push(chunk as Buffer);
  }
  return size > limit ? undefined : Buffer.concat(chunks);
}

export class Enclave {
  phase: EnclavePhase = 'booting';
  readonly server: Server;
  readonly metrics = createEnclaveMetrics();
  readonly #config: EnclaveConfig;
  readonly #log: NonNullable<EnclaveConfig['log']>;
  readonly #forwarder: Forwarder;
  #ephemeral: X25519KeyPair | undefined;
  #resolver: KeyResolver | undefined;
  readonly usage: DailyUsageLedger;
  readonly leases: LeaseMeter;
  /** The newest owner-signed policy version per connection, learnt from leases (SPEC.md §9.2). */
  readonly policyVersions = new PolicyVersions();
  /** Signs usage receipts; its public key is the `user_data` of every attestation document. */
  readonly #receiptKey = generateReceiptSigner();
  readonly #receipts = new Map<string, SignedUsageReceipt>();
  /**
   * Every receipt signed, oldest first, for the host to collect in order (`GET /receipts?after=`):
   * the host stores the whole chain, so a receipt it later drops shows as a gap. Bounded: a host
   * that stops collecting loses the oldest, which then show as missing too.
   */
  readonly #receiptLog: SignedUsageReceipt[] = [];
  #receiptSeq = 0;
  /**
   * Per connection, its running count since its last signed receipt. Counts only grow within a
   * connection-day, so the answers between two collections are signed as one receipt: when the
   * host collects (`GET /receipts`), or first when the connection's lease, day or policy changes
   * (SPEC.md §10) — a signature per collection instead of per answer.
   */
  readonly #unsigned = new Map<string, Unsigned>();

  constructor(config: EnclaveConfig) {
    this.#config = config;
    this.#log = config.log ?? silent;
    this.#forwarder = new Forwarder(config.forwarder);
    this.usage = new DailyUsageLedger(config.now);
    this.leases = new LeaseMeter(config.now);
    this.server = createServer({ keepAliveTimeout: 65_000, requestTimeout: 0 }, (req, res) => {
      this.#handle(req, res).catch((error: unknown) => {
        if (error instanceof EnclaveError) return sendError(res, error);
        this.#log.error({ err: error instanceof Error ? error.name : 'unknown' }, 'enclave request failed');
        sendError(res, new EnclaveError('upstream_unreachable', 'request failed inside the enclave'));
      });
    });
  }

  /** booting → serving: make the ephemeral key pair and check the NSM answers. */
  async boot(): Promise<void> {
    try {
      this.#ephemeral = generateX25519KeyPair();
      await this.#config.nsm.getAttestationDocument({ publicKey: this.#ephemeral.publicKey, userData: this.#receiptUserData() });
      this.#resolver = new KeyResolver({
        shareholders: this.#config.shareholders,
        // In a real enclave with egress-only there is no way out but a route: refuse to boot
        // without one per shareholder. (Dev stacks run egress-only tests with loopback shareholders.)
        ...(this.#config.shareholderRoutes ? { routes: this.#config.shareholderRoutes } : {}),
        routesOnly: (this.#config.forwarder?.egressOnly ?? false) && this.#config.nsm.kind === 'nitro',
        ...(this.#config.forwarder?.ca ? { ca: this.#config.forwarder.ca } : {}),
        nsm: this.#config.nsm,
        ephemeral: this.#ephemeral,
        // Shareholders log the receipt key with each release, so leases match receipts (SPEC.md §10.2).
        userData: this.#receiptUserData(),
        metrics: this.metrics,
        log: this.#log,
        ...(this.#config.cacheTtlMs !== undefined ? { cacheTtlMs: this.#config.cacheTtlMs } : {}),
      });
      this.phase = 'serving';
    } catch (error) {
      this.phase = 'failed';
      this.#log.error({ err: (error as Error).message }, 'enclave boot failed');
      throw error;
    }
  }

  #receiptUserData(): Uint8Array {
    return receiptKeyUserData(this.#receiptKey.publicKey);
  }

  /**
   * The running count of a connection, after an answer settled or (`signNow`) as a lease starts —
   * signed at once then, so every lease appears in the receipts (SPEC.md §10.2).
   */
  #issueReceipt(connectionId: string, policySha256: string, lease: number, signNow = false): void {
    const at = (this.#config.now ?? Date.now)();
    const count: Unsigned = { connectionId, policySha256, day: utcDay(at), ...this.usage.used(connectionId), lease, at };
    const pending = this.#unsigned.get(connectionId);
    if (pending && (pending.day !== count.day || pending.lease !== lease || pending.policySha256 !== policySha256)) this.#sign(pending);
    if (signNow) {
      this.#unsigned.delete(connectionId);
      this.#sign(count);
    } else this.#unsigned.set(connectionId, count);
  }

  #sign(count: Unsigned): void {
    const previous = this.#receipts.get(count.connectionId)?.receipt;
    const prevSeq = previous && previous.day === count.day ? previous.seq : 0;
    const signed = signUsageReceipt(this.#receiptKey, { ...count, seq: ++this.#receiptSeq, prevSeq });
    this.#receipts.set(count.connectionId, signed);
    this.#receiptLog.push(signed);
    if (this.#receiptLog.length > RECEIPT_LOG_LIMIT) this.#receiptLog.shift();
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeAllConnections();
    await this.#resolver?.close();
    await this.#forwarder.close();
    this.#ephemeral?.privateKey.fill(0);
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = req.url ?? '/';
    if (url === '/healthz') return sendJson(res, this.phase === 'serving' ? 200 : 503, { phase: this.phase });
    if (this.phase !== 'serving') throw new EnclaveError('enclave_not_ready', `enclave is ${this.phase}`);
    if (url.startsWith(`${RPC_FORWARD_PREFIX}/`)) return this.#forward(req, res, url.slice(RPC_FORWARD_PREFIX.length));
    if (req.method === 'GET' && url.startsWith('/attestation')) return this.#attestation(res, url);
    if (req.method === 'GET' && url === '/metrics') {
      const text = await this.metrics.registry.metrics();
      res.writeHead(200, { 'content-type': this.metrics.registry.contentType });
      res.end(text);
      return;
    }
    if (req.method === 'GET' && (url === '/receipts' || url.startsWith('/receipts?'))) return this.#receiptChain(res, url);
    if (req.method === 'GET' && url.startsWith('/anomalies')) {
      const after = Number(new URL(url, 'http://enclave').searchParams.get('after') ?? 0);
      return sendJson(res, 200, { anomalies: this.#resolver!.anomalies.filter((a) => a.seq > after) });
    }
    if (req.method === 'POST' && url === RPC_EVICT_PATH) {
      // Unsigned on purpose (SPEC.md §5): only the host reaches this socket, and dropping a key is a
      // denial the host can cause anyway; the next use needs a new lease from the shareholders.
      const body = await readBoundedBody(req, 16 * 1024);
      let connectionId: unknown;
      try {
        connectionId = (JSON.parse(body?.toString('utf8') ?? '') as { connectionId?: unknown } | null)?.connectionId;
      } catch {
        // Not JSON: refused below.
      }
      if (typeof connectionId !== 'string') throw new EnclaveError('bad_request', 'body must be JSON { connectionId } (at most 16 KiB)');
      this.#resolver!.evict(connectionId);
      return sendJson(res, 200, { evicted: connectionId });
    }
    throw new EnclaveError('bad_request', 'unknown RPC route');
  }

  /**
   * `GET /receipts?after=<seq>&limit=<n>[&nonce=<hex>&connections=<id,…>]`: the receipts signed
   * after `seq`, in order; with a nonce, the head signed over it — the newest seq overall and per
   * named connection — so a verifier can tell a tail the host hid.
   */
  #receiptChain(res: ServerResponse, url: string): void {
    for (const count of this.#unsigned.values()) this.#sign(count);
    this.#unsigned.clear();
    const q = new URL(url, 'http://enclave').searchParams;
    const after = Number(q.get('after') ?? 0);
    const limit = Math.min(Number(q.get('limit') ?? 1000), 10_000);
    const nonce = q.get('nonce');
    if (!Number.isSafeInteger(after) || after < 0 || !Number.isSafeInteger(limit) || limit < 1) throw new EnclaveError('bad_request', 'after and limit must be whole numbers');
    if (nonce !== null && !/^[0-9a-f]{32,128}$/.test(nonce)) throw new EnclaveError('bad_request', 'nonce must be 16..64 bytes of hex');
    const named = (q.get('connections') ?? '').split(',').filter(Boolean).slice(0, 1000);
    const newest = Object.fromEntries(named.map((id) => [id, this.#receipts.get(id)?.receipt.seq ?? 0]));
    const receipts = this.#receiptLog.filter((r) => r.receipt.seq > after).slice(0, limit);
    const now = (this.#config.now ?? Date.now)();
    sendJson(res, 200, {
      enclaveKey: toHex(this.#receiptKey.publicKey),
      receipts,
      seq: this.#receiptSeq,
      ...(nonce !== null ? { head: signReceiptHead(this.#receiptKey, { seq: this.#receiptSeq, nonce, at: now, newest }) } : {}),
    });
  }

  async #attestation(res: ServerResponse, url: string): Promise<void> {
    const nonceHex = new URL(url, 'http://enclave').searchParams.get('nonce') ?? '';
    let nonce: Uint8Array | undefined;
    if (nonceHex) {
      try {
        nonce = fromHex(nonceHex, 'nonce');
      } catch {
        throw new EnclaveError('bad_request', 'nonce must be hex');
      }
      if (nonce.length > NSM_LIMITS.nonce) throw new EnclaveError('bad_request', `nonce must be at most ${NSM_LIMITS.nonce} bytes`);
    }
    const document = await this.#config.nsm.getAttestationDocument({ publicKey: this.#ephemeral!.publicKey, userData: this.#receiptUserData(), ...(nonce ? { nonce } : {}) });
    sendJson(res, 200, { document: Buffer.from(document).toString('base64'), nsm: this.#config.nsm.kind });
  }

  async #forward(req: IncomingMessage, res: ServerResponse, clientPath: string): Promise<void> {
    const { descriptor, base, setSha256, origin } = decodeAndVerify(req.headers[RPC_CONNECTION_HEADER]);
    // Policy, path and origin checks happen before any share is requested (the policy was verified above).
    // The record binds the policy it was sealed with; a newer version the owner relayed through the
    // shareholders, once a lease brought it, is what is enforced (SPEC.md §9.2).
    let policy = base ? this.policyVersions.effective(descriptor.connectionId, base) : undefined;
    const method = req.method ?? 'GET';
    const target = resolveTarget(descriptor.provider, origin, method, clientPath, descriptor.allow, this.#config.allowLoopbackHttp ?? false);
    let body: Buffer | undefined;
    let bodyRead = false;
    let refusedUnder: EnclaveError | undefined;
    let classification;
    let model: string | null | undefined;
    if (policy) {
      classification = classifyForPolicy(descriptor.provider, method, clientPath);
      if (policyNeedsModel(policy.policy) && classification.model.in === 'json') {
        body = await readBoundedBody(req, MAX_POLICY_BODY);
        bodyRead = true;
      }
      model = requestModel(classification, body ?? undefined);
      try {
        checkPolicy(policy.policy, classification, model);
      } catch (e) {
        // Refused under the version this enclave knows. With no lease in hand, the lease the request
        // would need anyway may bring a newer version that allows it (a widening this enclave has not
        // seen since it started): obtain it and decide under that version. With a lease in hand,
        // refuse now (a refused request never spends a lease when one is held).
        if (!(e instanceof EnclaveError) || this.#resolver!.leaseOf(descriptor.connectionId) !== undefined) throw e;
        refusedUnder = e;
      }
    }
    const binding: KeyBinding = {
      connectionId: descriptor.connectionId,
      provider: descriptor.provider,
      origin,
      authScheme: descriptor.authScheme,
      ...(descriptor.allow !== undefined ? { allow: descriptor.allow } : {}),
      // The record's tag proves this is the policy the owner sealed with the key (version 0x03).
      ...(base ? { policySha256: base.sha256 } : {}),
      // Version 0x04: the set releases are authenticated against; the tag proves it is the owner's.
      ...(setSha256 !== undefined ? { shareholderSetSha256: setSha256 } : {}),
    };
    const recordSet = descriptor.shareholders;
    const record = new Uint8Array(Buffer.from(descriptor.sealedRecord, 'base64'));
    const connectionId = descriptor.connectionId;
    // A lease whose quota or TTL ran out is dropped before use: the next key needs a new lease.
    if (policy && this.leases.exhausted(connectionId, this.#resolver!.leaseOf(connectionId), policy.policy)) this.#resolver!.evict(connectionId);
    let keyBytes = await this.#resolver!.upstreamKey(binding, record, descriptor.threshold, recordSet).catch((e: unknown) => {
      // A request already refused by the policy answers with that refusal, whatever the lease did.
      throw refusedUnder ?? e;
    });
    let lease = this.#resolver!.leaseOf(connectionId) ?? 0;
    // Concurrent requests may have used the lease up while this one waited for its key.
    if (policy && this.leases.exhausted(connectionId, lease, policy.policy)) {
      keyBytes.fill(0);
      this.#resolver!.evict(connectionId);
      keyBytes = await this.#resolver!.upstreamKey(binding, record, descriptor.threshold, recordSet);
      lease = this.#resolver!.leaseOf(connectionId) ?? 0;
    }
    if (base && classification) {
      // A new lease may have brought a newer policy: this request already answers to it.
      try {
        const next = this.policyVersions.adopt(connectionId, base, this.#resolver!.takeLeasePolicies(connectionId));
        // Every lease this enclave uses appears in its receipts — refused requests' leases too —
        // so each release in the shareholders' logs can be matched with a receipt (SPEC.md §10.2).
        const newest = this.#unsigned.get(connectionId) ?? this.#receipts.get(connectionId)?.receipt;
        if (!newest || newest.lease !== lease || newest.day !== utcDay((this.#config.now ?? Date.now)())) this.#issueReceipt(connectionId, next.sha256, lease, true);
        if (next.sha256 !== policy!.sha256) {
          policy = next;
          if (policyNeedsModel(policy.policy) && classification.model.in === 'json' && !bodyRead) {
            body = await readBoundedBody(req, MAX_POLICY_BODY);
            bodyRead = true;
          }
          model = requestModel(classification, body ?? undefined);
          checkPolicy(policy.policy, classification, model);
        } else if (refusedUnder) {
          throw refusedUnder;
        }
      } catch (e) {
        keyBytes.fill(0);
        // A lease whose update is not the owner's is not used (fail closed): the next request asks again.
        if (e instanceof EnclaveError && e.code === 'policy_invalid') this.#resolver!.evict(connectionId);
        throw e;
      }
    }
    const key = fromUtf8(keyBytes);
    keyBytes.fill(0);
    const active = policy;
    const day = active ? this.usage.admit(connectionId, active.policy) : 0;
    if (active) this.leases.use(connectionId, lease);
    const status = await this.#forwarder.forward(
      target,
      descriptor.authScheme,
      key,
      req,
      res,
      (seconds) => this.metrics.upstreamSeconds.observe({ provider: descriptor.provider }, seconds),
      {
        ...(body ? { body } : {}),
        ...(active && classification
          ? {
              onUsage: (usage) => {
                const tokens = this.usage.settle(connectionId, day, active.policy, classification, model ?? undefined, usage);
                this.leases.settle(connectionId, lease, tokens);
                this.#issueReceipt(connectionId, active.sha256, lease);
              },
            }
          : {}),
      },
    );
    this.metrics.upstreamRequests.inc({ provider: descriptor.provider, status: `${Math.floor(status / 100)}xx` });
  }
}
