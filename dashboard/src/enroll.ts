/**
 * In-browser onboarding with the same protocol/ code the CLI runs: the key is sealed, the data key
 * split and each share HPKE-sealed to its shareholder in this page; only the sealed record goes to
 * the host. The shareholder list comes from the host (GET /admin/v1/enrollment) — the page, too —
 * so this path trusts the host's page; `securegate connect` pins shareholders itself and does not.
 */
import { canonicalOrigin, generateOwnerKeyPair, prepareConnection, providerSpec, toBase64, toHex, fromHex, utf8, type KeyBinding } from '../../protocol/index.ts';
import { admin } from './api.ts';

interface Enrollment {
  threshold: number;
  shareholders: Array<{ id: string; url: string; publicKey: string }>;
  pcrPolicy: { allow: Array<Record<string, string>>; allowDebug?: boolean };
}

const OWNER_KEY = 'securegate.ownerSecretKey';

/** The owner signing key of this browser (kept in its storage; the CLI keeps its own). */
function ownerKey(): Uint8Array {
  const saved = localStorage.getItem(OWNER_KEY);
  if (saved) return fromHex(saved);
  const pair = generateOwnerKeyPair();
  localStorage.setItem(OWNER_KEY, toHex(pair.secretKey));
  return pair.secretKey;
}

export async function connectInBrowser(input: { provider: string; apiKey: string; baseUrl?: string; name?: string; onProgress: (s: string) => void }): Promise<{ id: string }> {
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
  const binding: KeyBinding = { connectionId, provider: input.provider, origin, authScheme: spec.authScheme };
  input.onProgress(`sealing and splitting in this page (${enrollment.threshold}-of-${enrollment.shareholders.length})`);
  const prepared = await prepareConnection({
    apiKey: utf8(input.apiKey.trim()),
    binding,
    shareholders: enrollment.shareholders,
    threshold: enrollment.threshold,
    ownerSecretKey: ownerKey(),
    pcrPolicy: enrollment.pcrPolicy,
  });
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
  });
  return { id: connectionId };
}
