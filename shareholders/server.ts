/**
 * The shareholder HTTP service. Releases a share only to an enclave whose attestation document
 * verifies to a pinned root, carries this service's own fresh single-use nonce, and whose PCRs
 * satisfy the owner's signed policy; the share goes back HPKE-sealed (auth mode, sender = this
 * shareholder's identity key) to the document's `public_key`. Every enroll, release and refusal is appended to the hash-chained audit log.
 * Never logs shares, envelopes' plaintext or the identity key.
 */
import { createHash, randomBytes } from 'node:crypto';
import Fastify, { type FastifyInstance, type FastifyReply } from 'fastify';
import {
  AttestationError,
  awsNitroRoot,
  type AttestationErrorCode,
  ChainCache,
  checkPcrPolicy,
  checkPolicyStrength,
  isPolicyWidening,
  parsePcrPolicy,
  policyWidening,
  POLICY_PCR_INDICES,
  verifyAttestation,
  type PcrPolicy,
  type PinnedRoot,
} from '../attestation/index.ts';
import {
  canonicalJson,
  decodeShare,
  fromHex,
  GENESIS_HASH,
  signLogHead,
  openShareEnvelope,
  shareRecipient,
  ProtocolError,
  sealShareEnvelope,
  receiptKeyFromUserData,
  toHex,
  verifyOwnerMessage,
  shareholderStatus,
  type ShareholderErrorCode,
  type SignedOwnerMessage,
} from '../protocol/index.ts';
import { registerConnectionPolicyRoutes } from './connection-policies.ts';
import { logSigningKey, type ShareholderIdentity } from './identity.ts';
import { OutstandingNonces, ReleaseBudget, TokenBuckets, type BucketLimit } from './limits.ts';
import { DEFAULT_WIDENING_DELAY_MS, type ShareStore } from './store.ts';

/** The longest widening delay an owner may choose: a month (longer is indistinguishable from never). */
const MAX_WIDENING_DELAY_MS = 30 * 86_400_000;

export const SHAREHOLDER_VERSION = '0.1.0';

export interface ShareholderConfig {
  identity: ShareholderIdentity;
  store: ShareStore;
  /** `production` pins only the AWS root and refuses debug documents whatever the policy says. */
  mode: 'production' | 'dev';
  /** Extra pinned roots; in production any root other than AWS's is refused at start. */
  extraRoots?: PinnedRoot[];
  clock?: () => Date;
  nonceTtlMs?: number;
  maxDocumentAgeMs?: number;
  /** Accept owner messages issued within this window of now. */
  ownerMessageSkewMs?: number;
  /** Per-caller limits of the public endpoints (defaults: DEFAULT_ADMISSION_LIMITS). */
  limits?: Partial<AdmissionLimits>;
  logger?: boolean | object;
}

/**
 * Who may spend what on the public endpoints. A caller is its socket address (no proxy header is
 * trusted). Generous enough for a fleet of enclaves behind one parent address, tight enough that
 * a stranger's flood costs them more than it costs an enclave: a flood from one address is
 * throttled before it can crowd out another, and nonces a caller hoards count against it alone.
 */
export interface AdmissionLimits {
  challenges: BucketLimit;
  releases: BucketLimit;
  /** Unused, unexpired challenge nonces one caller may hold. */
  outstandingPerSource: number;
  /** … and all callers together. */
  outstandingTotal: number;
}

export const DEFAULT_ADMISSION_LIMITS: AdmissionLimits = {
  challenges: { perMinute: 1200, burst: 600 },
  releases: { perMinute: 1200, burst: 600 },
  outstandingPerSource: 2048,
  outstandingTotal: 100_000,
};

/** A refusal from the registry (protocol/shareholder-errors.ts): its code fixes its status. */
class RefusalError extends Error {
  readonly code: ShareholderErrorCode;
  readonly status: number;
  constructor(code: ShareholderErrorCode, message: string) {
    super(message);
    this.status = shareholderStatus(code);
    this.code = code;
  }
}

// Release refusals pass attestation codes through: each must be a registered shareholder code.
const attestationCodesRegistered: AttestationErrorCode extends ShareholderErrorCode ? true : never = true;
void attestationCodesRegistered;

/** Counted but not limited: connections enrolled without `maxLeasesPerDay` (fits a 32-bit column). */
const UNLIMITED_LEASES = 2_000_000_000;

const signedSchema = {
  type: 'object',
  required: ['message', 'publicKey', 'signature'],
  properties: {
    message: { type: 'object', required: ['type', 'connectionId', 'issuedAt'] },
    publicKey: { type: 'string', pattern: '^[0-9a-f]{64}$' },
    signature: { type: 'string', pattern: '^[0-9a-f]{128}$' },
  },
} as const;

export async function buildShareholderServer(config: ShareholderConfig): Promise<FastifyInstance> {
  const { identity, store } = config;
  const clock = config.clock ?? (() => new Date());
  const nonceTtl = config.nonceTtlMs ?? 60_000;
  const maxAge = config.maxDocumentAgeMs ?? 5 * 60_000;
  const skew = config.ownerMessageSkewMs ?? 10 * 60_000;
  if (config.mode === 'production' && (config.extraRoots?.length ?? 0) > 0) {
    throw new Error('production mode pins only the AWS Nitro root; start in dev mode to pin a dev root');
  }
  const roots: PinnedRoot[] = [awsNitroRoot(), ...(config.extraRoots ?? [])];
  // The same enclave attests on every release: its certificate chain is verified once.
  const chainCache = new ChainCache();
  // The identity key is imported once for HPKE, not on every open.
  const recipient = await shareRecipient(identity.privateKey);
  const logKey = logSigningKey(identity);
  const limits: AdmissionLimits = { ...DEFAULT_ADMISSION_LIMITS, ...config.limits };
  const challengeBuckets = new TokenBuckets(limits.challenges);
  const releaseBuckets = new TokenBuckets(limits.releases);
  const outstanding = new OutstandingNonces();
  const budget = new ReleaseBudget();

  const app = Fastify({
    logger: config.logger ?? false,
    bodyLimit: 256 * 1024,
    // Strict schemas: a number is not silently turned into a string (or the reverse).
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false } },
  });

  const audit = (event: Parameters<ShareStore['appendAudit']>[1]) => store.appendAudit(clock(), event);

  app.setErrorHandler((error: Error & { statusCode?: number; code?: string; validation?: unknown }, _req, reply) => {
    if (error instanceof RefusalError) return reply.status(error.status).send({ error: { code: error.code, message: error.message } });
    const code = (c: ShareholderErrorCode) => c;
    if (error.validation) return reply.status(400).send({ error: { code: code('bad_request'), message: error.message } });
    if (error.statusCode && error.statusCode < 500) {
      return reply.status(error.statusCode).send({ error: { code: code('bad_request'), message: error.message } });
    }
    app.log.error({ err: error }, 'shareholder internal error');
    return reply.status(500).send({ error: { code: code('internal_error'), message: 'internal error' } });
  });

  function checkOwnerMessage(signed: SignedOwnerMessage, type: string, pinned?: string) {
    const msg = signed.message;
    if (msg.type !== type) throw new RefusalError('bad_request', `expected an owner message of type ${type}`);
    if (pinned !== undefined && signed.publicKey !== pinned) {
      throw new RefusalError('owner_signature_invalid', 'message is not signed by the owner pinned at enrollment');
    }
    try {
      verifyOwnerMessage(signed, fromHex(signed.publicKey));
    } catch (e) {
      if (e instanceof ProtocolError) throw new RefusalError('owner_signature_invalid', 'owner signature does not verify');
      throw e;
    }
    if (msg.shareholderId !== identity.id) throw new RefusalError('bad_request', 'message is addressed to another shareholder');
    if (typeof msg.issuedAt !== 'number' || Math.abs(clock().getTime() - msg.issuedAt) > skew) {
      throw new RefusalError('message_stale', 'owner message issuedAt is outside the accepted window');
    }
  }

  /**
   * The owner's policy, refused unless it pins the image (PCR0/1/2) and, in production, an
   * owner-controlled binding (PCR3 and/or PCR8): the image is public, so PCR0–2 alone admit
   * anyone's enclave running it.
   */
  function policyFrom(value: unknown): PcrPolicy {
    let policy: PcrPolicy;
    try {
      policy = parsePcrPolicy(value);
    } catch (e) {
      throw new RefusalError('bad_request', (e as Error).message);
    }
    try {
      checkPolicyStrength(policy, { mode: config.mode });
    } catch (e) {
      if (e instanceof AttestationError) throw new RefusalError('policy_weak', e.message);
      throw e;
    }
    return policy;
  }

  function maxReleases(value: unknown): number {
    if (value === undefined) return 120;
    if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > 100_000) {
      throw new RefusalError('bad_request', 'maxReleasesPerMinute must be an integer 1..100000');
    }
    return value;
  }

  /** The owner-signed delay before a widening takes effect (SPEC.md §8.3): 0..30 days, default 24 h. */
  function wideningDelay(value: unknown): number {
    if (value === undefined) return DEFAULT_WIDENING_DELAY_MS;
    if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value > MAX_WIDENING_DELAY_MS) {
      throw new RefusalError('bad_request', `wideningDelayMs must be an integer 0..${MAX_WIDENING_DELAY_MS}`);
    }
    return value;
  }

  /**
   * The share with its policy as of now: a pending widening whose time has come is applied first
   * (and logged as it takes effect), so every reader — releases included — sees the same policy.
   */
  async function currentShare(connectionId: string) {
    const due = await store.applyDueWidening(connectionId, clock().getTime());
    if (due) {
      await audit({ action: 'policy_update', outcome: 'policy_widened', connectionId, policy: JSON.parse(due.update.policy), wideningSha256: due.sha256, effectiveAt: new Date(due.effectiveAt).toISOString() });
    }
    return store.getShare(connectionId);
  }

  /** The owner-signed lease limit k (SPEC.md §9); absent: no daily lease limit (records before leases). */
  function maxLeases(value: unknown): number | undefined {
    if (value === undefined || value === null) return undefined;
    if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > 1_000_000) {
      throw new RefusalError('bad_request', 'maxLeasesPerDay must be an integer 1..1000000');
    }
    return value;
  }

  // Browsers (the dashboard's in-page enrollment) may call identity and enrollment from another
  // origin: both are authenticated by what they carry (an owner signature), never by cookies, so
  // any origin may send them — and so may a connection's (public) PCR policy with its pending
  // widening, and the owner-signed cancel of that widening, which the dashboard offers. Nothing
  // else is opened to cross-origin callers.
  const CORS_PATHS = new Set(['/v1/identity', '/v1/shares']);
  const CORS_POLICY_PATH = /^\/v1\/shares\/[^/]{1,128}\/policy(?:\/cancel)?$/;
  app.addHook('onRequest', async (req, reply) => {
    const path = req.url.split('?')[0]!;
    if (!CORS_PATHS.has(path) && !CORS_POLICY_PATH.test(path)) return;
    reply.header('access-control-allow-origin', '*');
    if (req.method === 'OPTIONS') {
      reply.header('access-control-allow-methods', 'GET, POST');
      reply.header('access-control-allow-headers', 'content-type');
      reply.header('access-control-max-age', '600');
      return reply.status(204).send();
    }
  });
  app.options('/v1/identity', async (_req, reply) => reply.status(204).send());
  app.options('/v1/shares', async (_req, reply) => reply.status(204).send());
  app.options('/v1/shares/:id/policy', async (_req, reply) => reply.status(204).send());
  app.options('/v1/shares/:id/policy/cancel', async (_req, reply) => reply.status(204).send());

  app.get('/v1/identity', async () => ({
    id: identity.id,
    publicKey: toHex(identity.publicKey),
    kem: 'DHKEM(X25519, HKDF-SHA256)',
    /** Ed25519 key that signs the audit log's heads (GET /v1/audit/head). */
    logPublicKey: toHex(logKey.publicKey),
    version: SHAREHOLDER_VERSION,
    mode: config.mode,
  }));

  app.get('/healthz', async () => ({ ok: true }));

  // The audit log is a transparency log: every enroll, release and refusal, hash-chained. It
  // holds ids, PCRs, module ids and outcomes — never shares — so owners and auditors may read it
  // (`securegate attest audit`). Paged by sequence number.
  app.get<{ Querystring: { after?: string; limit?: string } }>(
    '/v1/audit',
    { schema: { querystring: { type: 'object', properties: { after: { type: 'string', pattern: '^[0-9]{1,12}$' }, limit: { type: 'string', pattern: '^[1-9][0-9]{0,3}$' } } } } },
    async (req) => {
      const entries = await store.readAudit(Number(req.query.after ?? 0), Number(req.query.limit ?? 1000));
      return { shareholderId: identity.id, entries };
    },
  );

  // The newest entry's seq and hash, signed with the log key: owners' CLIs keep the last head
  // they verified, so serving a shorter or different history later contradicts a signed head.
  app.get('/v1/audit/head', async () => {
    const last = await store.lastAudit();
    return signLogHead(logKey.secretKey, { shareholderId: identity.id, seq: last?.seq ?? 0, hash: last?.hash ?? GENESIS_HASH, at: clock().toISOString() });
  });

  // The owner's current PCR policy for a connection (public data: which enclave measurements
  // may receive the share), so the owner's CLI can extend it for a new release.
  app.get<{ Params: { id: string } }>('/v1/shares/:id/policy', async (req) => {
    const share = await currentShare(req.params.id);
    if (!share) throw new RefusalError('share_not_found', 'no share enrolled for this connection');
    const widening = await store.getWidening(share.connectionId);
    const pending = widening.pending
      ? { policy: JSON.parse(widening.pending.update.policy) as PcrPolicy, sha256: widening.pending.sha256, effectiveAt: new Date(widening.pending.effectiveAt).toISOString() }
      : null;
    return { connectionId: share.connectionId, owner: share.ownerPublicKey, policy: JSON.parse(share.policy) as PcrPolicy, maxReleasesPerMinute: share.maxReleasesPerMinute, maxLeasesPerDay: share.maxLeasesPerDay ?? null, wideningDelayMs: widening.delayMs, pending };
  });

  app.post<{ Body: { envelope: string; signed: SignedOwnerMessage } }>(
    '/v1/shares',
    { schema: { body: { type: 'object', required: ['envelope', 'signed'], properties: { envelope: { type: 'string', maxLength: 8192 }, signed: signedSchema } } } },
    async (req, reply) => {
      const { envelope: envelopeB64, signed } = req.body;
      const connectionId = String(signed.message.connectionId);
      checkOwnerMessage(signed, 'enroll');
      const envelope = new Uint8Array(Buffer.from(envelopeB64, 'base64'));
      if (signed.message.envelopeSha256 !== createHash('sha256').update(envelope).digest('hex')) {
        throw new RefusalError('bad_request', 'envelopeSha256 does not match the envelope');
      }
      const policy = policyFrom(signed.message.policy);
      const max = maxReleases(signed.message.maxReleasesPerMinute);
      const leases = maxLeases(signed.message.maxLeasesPerDay);
      const delayMs = wideningDelay(signed.message.wideningDelayMs);
      // Open once now so a share this service cannot open is refused at enrollment, not at release.
      try {
        decodeShare(await openShareEnvelope(recipient, envelope, { purpose: 'enroll', connectionId, shareholderId: identity.id }));
      } catch {
        await audit({ action: 'enroll', outcome: 'refused', connectionId, code: 'envelope_invalid' });
        throw new RefusalError('envelope_invalid', 'the share envelope does not open with this shareholder key');
      }
      const inserted = await store.insertShare({
        connectionId,
        ownerPublicKey: signed.publicKey,
        envelope,
        policy: JSON.stringify(policy),
        maxReleasesPerMinute: max,
        lastIssuedAt: signed.message.issuedAt,
        ...(leases !== undefined ? { maxLeasesPerDay: leases } : {}),
      });
      if (inserted === 'replayed') {
        await audit({ action: 'enroll', outcome: 'refused', connectionId, code: 'message_replayed' });
        throw new RefusalError('message_replayed', 'this connection was deleted by a newer owner message; enroll again with a new message');
      }
      if (inserted === 'exists') {
        await audit({ action: 'enroll', outcome: 'refused', connectionId, code: 'share_exists' });
        throw new RefusalError('share_exists', 'a share for this connection is already enrolled');
      }
      await store.setWideningDelay(connectionId, delayMs);
      await audit({ action: 'enroll', outcome: 'enrolled', connectionId, owner: signed.publicKey, policy: policy as never, wideningDelayMs: delayMs });
      return reply.status(201).send({ connectionId, shareholderId: identity.id });
    },
  );

  /** The share an owner message addresses, after checking it was signed by the pinned owner. */
  async function ownerTarget(connectionId: string, signed: SignedOwnerMessage, type: 'policy_update' | 'widening_cancel' | 'delete') {
    const share = await store.getShare(connectionId);
    if (!share) throw new RefusalError('share_not_found', 'no share enrolled for this connection');
    if (signed.message.connectionId !== connectionId) throw new RefusalError('bad_request', 'connectionId differs from the URL');
    checkOwnerMessage(signed, type, share.ownerPublicKey);
    return share;
  }

  registerConnectionPolicyRoutes(app, { store, audit });

  const replayed = () => new RefusalError('message_replayed', 'a newer owner message was already applied');

  app.put<{ Params: { id: string }; Body: { signed: SignedOwnerMessage } }>(
    '/v1/shares/:id/policy',
    { schema: { body: { type: 'object', required: ['signed'], properties: { signed: signedSchema } } } },
    async (req) => {
      const { signed } = req.body;
      await ownerTarget(req.params.id, signed, 'policy_update');
      // The delay is the enrollment's: no later message (nor whoever relays one) can shorten it.
      if ('wideningDelayMs' in signed.message) throw new RefusalError('bad_request', 'wideningDelayMs is fixed at enrollment; a policy update cannot change it');
      const share = (await currentShare(req.params.id))!;
      const policy = policyFrom(signed.message.policy);
      const max = maxReleases(signed.message.maxReleasesPerMinute ?? share.maxReleasesPerMinute);
      // Named: set (or, with null, lift) the lease limit; not named: it stays as it is.
      const leases = 'maxLeasesPerDay' in signed.message ? (maxLeases(signed.message.maxLeasesPerDay) ?? null) : undefined;
      // Admitting new measurements waits out the owner's delay, in the log at once so the owner
      // (alerted by the host, or reading the log) can cancel it; narrowing applies now.
      const current = JSON.parse(share.policy) as PcrPolicy;
      if (isPolicyWidening(current, policy)) {
        const { delayMs } = await store.getWidening(req.params.id);
        const effectiveAt = clock().getTime() + delayMs;
        const sha256 = createHash('sha256').update(canonicalJson(signed as never)).digest('hex');
        const update = { policy: JSON.stringify(policy), maxReleasesPerMinute: max, ...(leases !== undefined ? { maxLeasesPerDay: leases } : {}) };
        // What the update removes goes now (an empty list admits nobody); only additions wait.
        const removed = policyWidening(policy, current).added;
        const kept = removed.length > 0 ? { ...current, allow: current.allow.filter((s) => !removed.includes(s)) } : undefined;
        if (!(await store.setPendingWidening(req.params.id, { update, sha256, effectiveAt }, signed.message.issuedAt, kept && JSON.stringify(kept)))) throw replayed();
        await audit({ action: 'policy_update', outcome: 'widening_pending', connectionId: req.params.id, policy: policy as never, wideningSha256: sha256, effectiveAt: new Date(effectiveAt).toISOString(), ...(kept ? { narrowedNow: kept as never } : {}) });
        const applied = delayMs === 0 ? await currentShare(req.params.id) : undefined;
        return { connectionId: req.params.id, policy: JSON.parse((applied ?? share).policy) as PcrPolicy, pending: applied ? null : { policy, sha256, effectiveAt: new Date(effectiveAt).toISOString() } };
      }
      if (!(await store.updatePolicy(req.params.id, JSON.stringify(policy), max, signed.message.issuedAt, leases))) throw replayed();
      // A newer owner message supersedes a pending widening (it was signed against an older policy).
      const superseded = await store.clearPendingWidening(req.params.id);
      await audit({ action: 'policy_update', outcome: 'policy_updated', connectionId: req.params.id, policy: policy as never, ...(superseded ? { supersededWidening: true } : {}) });
      return { connectionId: req.params.id, policy, pending: null };
    },
  );

  // The owner cancels a pending widening by its hash (the one `PUT …/policy` answered and the log
  // holds), so a late cancel cannot hit a different widening made since.
  app.post<{ Params: { id: string }; Body: { signed: SignedOwnerMessage } }>(
    '/v1/shares/:id/policy/cancel',
    { schema: { body: { type: 'object', required: ['signed'], properties: { signed: signedSchema } } } },
    async (req) => {
      const { signed } = req.body;
      await ownerTarget(req.params.id, signed, 'widening_cancel');
      const sha256 = signed.message.wideningSha256;
      if (typeof sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(sha256)) throw new RefusalError('bad_request', 'wideningSha256 must be 64 hex digits');
      // Applied first if due: a cancel arriving after the delay finds nothing pending.
      await currentShare(req.params.id);
      const outcome = await store.cancelPendingWidening(req.params.id, sha256, signed.message.issuedAt);
      if (outcome === 'replayed') throw replayed();
      if (outcome === 'not_pending') throw new RefusalError('widening_not_pending', 'no pending widening with this hash (already in effect, cancelled or superseded)');
      await audit({ action: 'policy_update', outcome: 'widening_cancelled', connectionId: req.params.id, wideningSha256: sha256 });
      return { connectionId: req.params.id, cancelled: sha256 };
    },
  );

  app.delete<{ Params: { id: string }; Body: { signed: SignedOwnerMessage } }>(
    '/v1/shares/:id',
    { schema: { body: { type: 'object', required: ['signed'], properties: { signed: signedSchema } } } },
    async (req) => {
      const { signed } = req.body;
      await ownerTarget(req.params.id, signed, 'delete');
      if (!(await store.deleteShare(req.params.id, signed.message.issuedAt))) throw replayed();
      await audit({ action: 'delete', outcome: 'deleted', connectionId: req.params.id });
      return { connectionId: req.params.id, deleted: true };
    },
  );

  const tooMany = (reply: FastifyReply, message: string) =>
    reply.status(shareholderStatus('rate_limited')).header('retry-after', '1').send({ error: { code: 'rate_limited' satisfies ShareholderErrorCode, message } });

  app.post('/v1/challenges', async (req, reply) => {
    const now = clock().getTime();
    if (!challengeBuckets.take(req.ip, now)) return tooMany(reply, 'too many challenges from this address');
    const held = outstanding.counts(req.ip, now);
    if (held.source >= limits.outstandingPerSource) return tooMany(reply, 'this address holds too many unused challenges');
    if (held.total >= limits.outstandingTotal) return tooMany(reply, 'too many unused challenges outstanding');
    const nonce = randomBytes(32).toString('hex');
    const expiresAt = now + nonceTtl;
    await store.addNonce(nonce, expiresAt, now);
    outstanding.add(nonce, req.ip, expiresAt);
    return { nonce, expiresAt: new Date(expiresAt).toISOString() };
  });

  async function refuseRelease(reply: FastifyReply, code: ShareholderErrorCode, message: string, connectionIds: string[], extra = {}) {
    for (const connectionId of connectionIds) await audit({ action: 'release', outcome: 'refused', connectionId, code, ...extra });
    return reply.status(shareholderStatus(code)).send({ error: { code, message } });
  }

  app.post<{ Body: { document: string; connectionIds: string[] } }>(
    '/v1/releases',
    {
      schema: {
        body: {
          type: 'object',
          required: ['document', 'connectionIds'],
          properties: {
            document: { type: 'string', maxLength: 65536 },
            connectionIds: { type: 'array', minItems: 1, maxItems: 64, items: { type: 'string', minLength: 1, maxLength: 128 } },
          },
        },
      },
    },
    async (req, reply) => {
      const { connectionIds } = req.body;
      const now = clock();
      // Checked before any work: a caller's flood is throttled at its own address.
      if (!releaseBuckets.take(req.ip, now.getTime())) return tooMany(reply, 'too many release requests from this address');
      // One document buys at most one release per connection.
      if (new Set(connectionIds).size !== connectionIds.length) {
        return reply.status(shareholderStatus('bad_request')).send({ error: { code: 'bad_request' satisfies ShareholderErrorCode, message: 'connectionIds must not repeat a connection' } });
      }
      let doc;
      try {
        doc = verifyAttestation(new Uint8Array(Buffer.from(req.body.document, 'base64')), { now, roots, maxAgeMs: maxAge, chainCache });
      } catch (e) {
        if (e instanceof AttestationError) return refuseRelease(reply, e.code, e.message, connectionIds);
        throw e;
      }
      // Every PCR a policy may name (POLICY_PCR_INDICES), so an auditor can replay each release
      // against the owner's policy of the moment — owner bindings (PCR3/PCR8) included.
      const pcrs = Object.fromEntries(POLICY_PCR_INDICES.filter((i) => doc.pcrs.has(i)).map((i) => [String(i), toHex(doc.pcrs.get(i)!)]));
      // The enclave's receipt key (its document's user_data), when it names one: lets the owner
      // match each lease with that enclave's signed usage receipts (SPEC.md §10.2).
      let receiptKey: string | undefined;
      try {
        receiptKey = receiptKeyFromUserData(doc.userData);
      } catch {
        receiptKey = undefined;
      }
      const who = { moduleId: doc.moduleId, pcrs, root: doc.root, ...(receiptKey ? { receiptKey } : {}) };
      if (doc.nonce === null || doc.nonce.length !== 32) {
        return refuseRelease(reply, 'nonce_unknown', 'document carries no challenge nonce of this shareholder', connectionIds, who);
      }
      outstanding.settle(toHex(doc.nonce));
      const nonceState = await store.consumeNonce(toHex(doc.nonce), now.getTime());
      if (nonceState !== 'ok') {
        return refuseRelease(reply, `nonce_${nonceState}`, `challenge nonce is ${nonceState}`, connectionIds, who);
      }
      if (doc.publicKey === null || doc.publicKey.length !== 32) {
        return refuseRelease(reply, 'public_key_invalid', 'document public_key must be a 32-byte X25519 key', connectionIds, who);
      }
      const shares: Array<{ connectionId: string; envelope: string; policy?: SignedOwnerMessage }> = [];
      const refused: Array<{ connectionId: string; code: ShareholderErrorCode }> = [];
      for (const connectionId of connectionIds) {
        const share = await currentShare(connectionId);
        if (!share) {
          refused.push({ connectionId, code: 'share_not_found' });
          await audit({ action: 'release', outcome: 'refused', connectionId, code: 'share_not_found', ...who });
          continue;
        }
        const policy = JSON.parse(share.policy) as PcrPolicy;
        try {
          // Every entry removed while the replacement waits out its delay: nobody is admitted.
          if (policy.allow.length === 0) throw new AttestationError('attestation_pcr_mismatch', 'the policy admits no enclave until a pending widening takes effect');
          // A policy stored before the strength rule (or written around it) is not honoured either.
          checkPolicyStrength(policy, { mode: config.mode });
          checkPcrPolicy(doc.pcrs, config.mode === 'production' ? { allow: policy.allow } : policy);
        } catch (e) {
          const code: ShareholderErrorCode = e instanceof AttestationError ? e.code : 'attestation_pcr_mismatch';
          refused.push({ connectionId, code });
          await audit({ action: 'release', outcome: 'refused', connectionId, code, ...who });
          continue;
        }
        // The lease budget counts distinct attested enclave keys per minute (see ReleaseBudget):
        // only documents that verified, with this shareholder's fresh nonce and the owner's PCRs,
        // reach this point, so invalid attestations never spend it.
        if (!budget.admit(connectionId, toHex(doc.publicKey), share.maxReleasesPerMinute, now.getTime())) {
          refused.push({ connectionId, code: 'rate_limited' });
          await audit({ action: 'release', outcome: 'refused', connectionId, code: 'rate_limited', ...who });
          continue;
        }
        // Leases (SPEC.md §9): every release to a verified enclave is one, counted per UTC day
        // and persisted (limited or not, so an auditor sees them), so neither restarting an
        // enclave nor running many gets more than the owner's k.
        if (!(await store.takeLease(connectionId, Math.floor(now.getTime() / 86_400_000), share.maxLeasesPerDay ?? UNLIMITED_LEASES))) {
          refused.push({ connectionId, code: 'lease_limit_reached' });
          await audit({ action: 'release', outcome: 'refused', connectionId, code: 'lease_limit_reached', ...who });
          continue;
        }
        // The newest owner-signed connection-policy update goes with the lease, its hash in the
        // envelope's AAD: the enclave enforces it from this lease on (SPEC.md §9.2).
        const leasePolicy = await store.getConnectionPolicy(connectionId);
        const plaintext = await openShareEnvelope(recipient, share.envelope, { purpose: 'enroll', connectionId, shareholderId: identity.id });
        const sealed = await sealShareEnvelope(doc.publicKey, plaintext, {
          purpose: 'release',
          connectionId,
          shareholderId: identity.id,
          nonce: doc.nonce,
          ...(leasePolicy ? { leasePolicySha256: leasePolicy.sha256 } : {}),
        }, recipient); // auth mode: sealed as this shareholder (its identity key), SPEC.md §3
        plaintext.fill(0);
        shares.push({ connectionId, envelope: Buffer.from(sealed).toString('base64'), ...(leasePolicy ? { policy: JSON.parse(leasePolicy.signed) as SignedOwnerMessage } : {}) });
        await audit({ action: 'release', outcome: 'released', connectionId, ...who, ...(leasePolicy ? { policyVersion: leasePolicy.version } : {}) });
      }
      if (shares.length === 0) {
        const code = refused[0]?.code ?? 'share_not_found';
        return reply.status(shareholderStatus(code)).send({
          error: { code, message: 'no share released' },
          refused,
        });
      }
      return { shareholderId: identity.id, shares, refused };
    },
  );

  return app;
}
