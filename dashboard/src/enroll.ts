/**
 * In-browser onboarding with the same protocol/ code the CLI runs: the key is sealed, the data key
 * split and each share HPKE-sealed to its shareholder in this page; only the sealed record goes to
 * the host. The shareholder list comes from the host (GET /admin/v1/enrollment) — the page, too —
 * so this path trusts the host's page; `securegate connect` pins shareholders itself and does not.
 *
 * The owner's signing key is a non-extractable WebCrypto Ed25519 key kept in IndexedDB: page code
 * can ask it for signatures while the page is open, but no code — including code a compromised
 * host serves later — can read its bytes. It is never in localStorage (see dashboard/README.md).
 */
import {
  canonicalJson,
  canonicalOrigin,
  concatBytes,
  connectionPolicySha256,
  DEFAULT_POLICY_OPERATIONS,
  DEFAULT_UNMETERED_TOKENS,
  defaultLeaseTerms,
  leaseLimitFor,
  parseConnectionPolicy,
  policyPrices,
  fromHex,
  generateOwnerKeyPair,
  OWNER_SIGNATURE_DOMAIN,
  ownerPublicKey,
  prepareConnection,
  providerHostData,
  providerSpec,
  toBase64,
  toHex,
  utf8,
  wipe,
  type KeyBinding,
  type ModelPrice,
  type PriceLookup,
  type OwnerMessage,
  type SignedOwnerMessage,
} from '../../protocol/index.ts';
import { admin } from './api.ts';

interface Enrollment {
  threshold: number;
  shareholders: Array<{ id: string; url: string; publicKey: string }>;
  pcrPolicy: { allow: Array<Record<string, string>>; allowDebug?: boolean };
}

/** Where earlier versions kept the owner key in clear; moved into a non-extractable key on first use. */
const LEGACY_OWNER_KEY = 'securegate.ownerSecretKey';
const DB_NAME = 'securegate';
const STORE = 'owner-keys';
const OWNER_RECORD = 'owner';

/** PKCS#8 wrapping of a raw Ed25519 seed (RFC 8410 §7): a fixed prefix and the 32 bytes. */
const PKCS8_ED25519_PREFIX = fromHex('302e020100300506032b657004220420');

function request<T>(r: IDBRequest<T>): Promise<T> {
  return new Promise((resolve, reject) => {
    r.onsuccess = () => resolve(r.result);
    r.onerror = () => reject(r.error ?? new Error('IndexedDB request failed'));
  });
}

async function openKeyStore(): Promise<IDBDatabase> {
  const open = indexedDB.open(DB_NAME, 1);
  open.onupgradeneeded = () => open.result.createObjectStore(STORE);
  return request(open);
}

/**
 * This browser's owner signing key (the CLI keeps its own): generated non-extractable, or the
 * legacy localStorage key imported non-extractable and then deleted from localStorage, so the
 * connections it enrolled can still be managed from here.
 */
export async function ownerSigningKey(): Promise<CryptoKeyPair> {
  const db = await openKeyStore();
  try {
    const saved = (await request(db.transaction(STORE).objectStore(STORE).get(OWNER_RECORD))) as CryptoKeyPair | undefined;
    if (saved) return saved;
    let pair: CryptoKeyPair;
    const legacy = localStorage.getItem(LEGACY_OWNER_KEY);
    if (legacy) {
      const seed = fromHex(legacy);
      const pkcs8 = concatBytes(PKCS8_ED25519_PREFIX, seed);
      pair = {
        privateKey: await crypto.subtle.importKey('pkcs8', pkcs8 as BufferSource, { name: 'Ed25519' }, false, ['sign']),
        publicKey: await crypto.subtle.importKey('raw', ownerPublicKey(seed) as BufferSource, { name: 'Ed25519' }, true, ['verify']),
      };
      wipe(seed);
      wipe(pkcs8);
    } else {
      pair = (await crypto.subtle.generateKey({ name: 'Ed25519' }, false, ['sign', 'verify'])) as CryptoKeyPair;
    }
    const tx = db.transaction(STORE, 'readwrite');
    await request(tx.objectStore(STORE).put(pair, OWNER_RECORD));
    localStorage.removeItem(LEGACY_OWNER_KEY);
    return pair;
  } finally {
    db.close();
  }
}

/** Signs an owner message (protocol/owner-signature.ts: Ed25519 over the domain and canonical JSON) with the non-extractable key. */
async function signAsOwner(pair: CryptoKeyPair, message: OwnerMessage): Promise<SignedOwnerMessage> {
  const bytes = concatBytes(utf8(OWNER_SIGNATURE_DOMAIN), utf8(canonicalJson(message)));
  const signature = new Uint8Array(await crypto.subtle.sign({ name: 'Ed25519' }, pair.privateKey, bytes as BufferSource));
  const publicKey = new Uint8Array(await crypto.subtle.exportKey('raw', pair.publicKey));
  return { message, publicKey: toHex(publicKey), signature: toHex(signature) };
}

/** What the connect form lets the owner sign into the connection policy (issue 19). */
export interface ConnectPolicyFields {
  operations: string[];
  models?: string[];
  dailyRequests?: number;
  dailyTokens?: number;
  /** Needs `models`: their prices (the host's price table, loaded only then) are signed in. */
  dailyDollars?: number;
}

/**
 * Signs the connection policy with the non-extractable owner key; its hash goes into the record
 * (0x03) as `policySha256`, exactly as prepareConnection would bind it (SPEC.md §9).
 */
async function signConnectionPolicyInBrowser(pair: CryptoKeyPair, connectionId: string, provider: string, fields: ConnectPolicyFields): Promise<SignedOwnerMessage> {
  const ceiling = {
    ...(fields.dailyRequests !== undefined ? { requests: fields.dailyRequests } : {}),
    ...(fields.dailyTokens !== undefined ? { tokens: fields.dailyTokens } : {}),
    ...(fields.dailyDollars !== undefined ? { microUsd: Math.round(fields.dailyDollars * 1e6) } : {}),
  };
  const lease = defaultLeaseTerms(ceiling);
  let prices: Record<string, ModelPrice> | undefined;
  if (fields.dailyDollars !== undefined) {
    if (!fields.models?.length) throw new Error('a daily dollar cap needs Models: the enclave prices only the models the policy names and refuses others');
    // The price table is large: fetched only for a dollar cap (its own chunk).
    const { calcPrice } = await import('@pydantic/genai-prices');
    const priced = policyPrices(fields.models, providerHostData(provider)?.priceProvider ?? provider, calcPrice as PriceLookup);
    if (priced.unpriced.length) throw new Error(`no known price for ${priced.unpriced.join(', ')}: name priced models, or cap requests or tokens instead`);
    prices = priced.prices;
  }
  const message = {
    type: 'connection_policy' as const,
    connectionId,
    issuedAt: Date.now(),
    operations: fields.operations.length ? fields.operations : [...DEFAULT_POLICY_OPERATIONS],
    ...(fields.models?.length ? { models: fields.models } : {}),
    ceiling,
    ...(prices ? { prices } : {}),
    // A request or token ceiling split into leases the shareholders count (as `securegate connect`
    // does), so it holds across enclave restarts and many enclaves.
    ...(lease ? { lease } : {}),
    unmeteredTokens: DEFAULT_UNMETERED_TOKENS,
  };
  parseConnectionPolicy(message); // the same checks the enclave makes, before anything is signed
  return signAsOwner(pair, message as unknown as OwnerMessage);
}

export async function connectInBrowser(input: {
  provider: string;
  apiKey: string;
  baseUrl?: string;
  name?: string;
  /** The connection policy the enclave enforces (default: inference only, no ceiling). */
  policy?: ConnectPolicyFields;
  /** How long a PCR policy widening waits before it takes effect (default 24 h), signed into each enrollment. */
  wideningDelayMs?: number;
  onProgress: (s: string) => void;
}): Promise<{ id: string }> {
  const spec = providerSpec(input.provider);
  if (!spec || input.provider === 'any') throw new Error('choose a provider (any-API connections are made with the CLI)');
  let origin = spec.origin;
  if (input.baseUrl) {
    try {
      origin = canonicalOrigin(new URL(input.baseUrl).origin);
    } catch {
      throw new Error('the base URL must be an http(s) URL');
    }
  }
  if (!origin) throw new Error(`${spec.name} needs a base URL`);
  if (!input.apiKey.trim()) throw new Error('paste the API key');

  input.onProgress('fetching the published shareholders');
  const enrollment = await admin<Enrollment>('GET', '/enrollment');
  input.onProgress(`checking ${enrollment.shareholders.length} shareholders`);
  await Promise.all(
    enrollment.shareholders.map(async (sh) => {
      const id = (await (await fetch(`${sh.url}/v1/identity`)).json()) as { id: string; publicKey: string };
      if (id.id !== sh.id || id.publicKey !== sh.publicKey) throw new Error(`shareholder ${sh.id} presents another key than the published one; refusing`);
    }),
  );
  const connectionId = `conn_${toHex(crypto.getRandomValues(new Uint8Array(12)))}`;
  const owner = await ownerSigningKey();
  const policy = await signConnectionPolicyInBrowser(owner, connectionId, input.provider, input.policy ?? { operations: [] });
  const binding: KeyBinding = { connectionId, provider: input.provider, origin, authScheme: spec.authScheme, policySha256: connectionPolicySha256(policy) };
  input.onProgress(`sealing and splitting in this page (${enrollment.threshold}-of-${enrollment.shareholders.length})`);
  // prepareConnection signs with raw key bytes; it gets a throwaway key here and every message is
  // signed again with the owner's non-extractable key before it leaves the page.
  const throwaway = generateOwnerKeyPair().secretKey;
  const prepared = await prepareConnection({
    apiKey: utf8(input.apiKey.trim()),
    binding,
    shareholders: enrollment.shareholders,
    threshold: enrollment.threshold,
    ownerSecretKey: throwaway,
    pcrPolicy: enrollment.pcrPolicy,
  });
  wipe(throwaway);
  // k per shareholder so that ⌊n·k/t⌋ leases cannot serve more than the ceiling (SPEC.md §9).
  const maxLeasesPerDay = leaseLimitFor(parseConnectionPolicy(policy.message as Record<string, unknown>), enrollment.shareholders.length, enrollment.threshold);
  if (maxLeasesPerDay === 0) throw new Error(`a daily ceiling this small cannot be split into leases over ${enrollment.shareholders.length} shareholders: raise it`);
  // The widening delay and the lease limit are signed into each enrollment: the host relaying this page cannot change them.
  for (const e of prepared.enrollments) {
    e.body.signed = await signAsOwner(owner, {
      ...e.body.signed.message,
      ...(input.wideningDelayMs !== undefined ? { wideningDelayMs: input.wideningDelayMs } : {}),
      ...(maxLeasesPerDay !== undefined ? { maxLeasesPerDay } : {}),
    });
  }
  input.onProgress('enrolling shares with each shareholder');
  await Promise.all(
    prepared.enrollments.map(async ({ shareholder, body }) => {
      const res = await fetch(`${shareholder.url}/v1/shares`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
      if (res.status !== 201) throw new Error(`shareholder ${shareholder.id} refused the enrollment (${res.status})`);
    }),
  );
  input.onProgress('registering the sealed record with the gateway');
  await admin('POST', '/connections', {
    id: connectionId,
    name: input.name || spec.name,
    provider: input.provider,
    origin,
    authScheme: spec.authScheme,
    sealedRecord: toBase64(prepared.sealedRecord),
    threshold: enrollment.threshold,
    shareholders: enrollment.shareholders.map((s) => s.id),
    // The set the record binds (0x04), as checked above against each shareholder's identity.
    shareholderSet: prepared.shareholderSet,
    policy,
  });
  return { id: connectionId };
}

/** A PCR policy widening waiting out the owner's delay at one shareholder (SPEC.md §8.3). */
export interface PendingWidening {
  connectionId: string;
  shareholder: { id: string; url: string };
  effectiveAt: string;
  sha256: string;
  /** PCR0 of each enclave image the widening would admit. */
  admits: string[];
}

/** Every pending widening of these connections at the published shareholders (their public policy view). */
export async function pendingWidenings(connectionIds: string[]): Promise<PendingWidening[]> {
  const enrollment = await admin<Enrollment>('GET', '/enrollment');
  const out: PendingWidening[] = [];
  await Promise.all(
    connectionIds.flatMap((connectionId) =>
      enrollment.shareholders.map(async (sh) => {
        const res = await fetch(`${sh.url}/v1/shares/${encodeURIComponent(connectionId)}/policy`).catch(() => undefined);
        if (!res?.ok) return;
        const view = (await res.json()) as { policy: { allow: Array<Record<string, string>> }; pending: { policy: { allow: Array<Record<string, string>> }; effectiveAt: string; sha256: string } | null };
        if (!view.pending) return;
        const have = new Set(view.policy.allow.map((s) => canonicalJson(s)));
        const admits = view.pending.policy.allow.filter((s) => !have.has(canonicalJson(s))).map((s) => s['0'] ?? '?');
        out.push({ connectionId, shareholder: { id: sh.id, url: sh.url }, effectiveAt: view.pending.effectiveAt, sha256: view.pending.sha256, admits });
      }),
    ),
  );
  return out.sort((a, b) => a.connectionId.localeCompare(b.connectionId) || a.shareholder.id.localeCompare(b.shareholder.id));
}

/**
 * Cancels the pending widenings given (one per shareholder) with this browser's owner key: only
 * connections this browser enrolled can be cancelled from here (the CLI cancels its own).
 */
export async function cancelWidenings(pending: PendingWidening[]): Promise<void> {
  const owner = await ownerSigningKey();
  await Promise.all(
    pending.map(async (p) => {
      const signed = await signAsOwner(owner, { type: 'widening_cancel', connectionId: p.connectionId, shareholderId: p.shareholder.id, issuedAt: Date.now(), wideningSha256: p.sha256 });
      const res = await fetch(`${p.shareholder.url}/v1/shares/${encodeURIComponent(p.connectionId)}/policy/cancel`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ signed }) });
      if (res.status !== 200) {
        const body = (await res.json().catch(() => ({}))) as { error?: { code?: string; message?: string } };
        throw new Error(`shareholder ${p.shareholder.id} refused the cancel: ${body.error?.code ?? res.status} ${body.error?.message ?? ''}`);
      }
    }),
  );
}
