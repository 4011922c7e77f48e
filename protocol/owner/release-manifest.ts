/**
 * Release manifests: what an enclave release is (PCR0/1/2 from `nitro-cli build-enclave`, the
 * bundle's SHA-384, the git commit), signed with the release key (Ed25519 over a domain label
 * and the canonical JSON). Customers pin the release key and compare a live attestation
 * document's PCRs with a manifest they verified. Pure.
 */
import { ed25519 } from '@noble/curves/ed25519.js';
import { concatBytes, fromHex, toHex, utf8 } from '../bytes.ts';
import { ProtocolError } from '../errors.ts';
import { canonicalJson } from '../owner-signature.ts';

export const RELEASE_MANIFEST_DOMAIN = 'securegate/release-manifest/v1\n';

export interface ReleaseManifest {
  version: 1;
  name: string;
  release: string;
  gitCommit: string;
  bundleSha384: string;
  /** PCR index → 96 hex digits (SHA-384). */
  pcrs: { '0': string; '1': string; '2': string };
  /** `nitro` for real images; `dev` for the development NSM (never accepted in production). */
  nsm: 'nitro' | 'dev';
}

export interface SignedReleaseManifest {
  manifest: ReleaseManifest;
  publicKey: string;
  signature: string;
}

const PCR = /^[0-9a-f]{96}$/;

export function checkManifest(m: unknown): ReleaseManifest {
  const bad = (why: string) => new ProtocolError('envelope_malformed', `release manifest: ${why}`);
  if (!m || typeof m !== 'object') throw bad('not an object');
  const r = m as Record<string, unknown>;
  if (r.version !== 1) throw bad('version must be 1');
  for (const f of ['name', 'release', 'gitCommit']) if (typeof r[f] !== 'string' || !(r[f] as string).length) throw bad(`${f} missing`);
  if (typeof r.bundleSha384 !== 'string' || !PCR.test(r.bundleSha384)) throw bad('bundleSha384 must be 96 hex digits');
  const pcrs = r.pcrs as Record<string, unknown> | undefined;
  for (const i of ['0', '1', '2']) if (typeof pcrs?.[i] !== 'string' || !PCR.test(pcrs[i] as string)) throw bad(`pcrs.${i} must be 96 hex digits`);
  if (r.nsm !== 'nitro' && r.nsm !== 'dev') throw bad('nsm must be nitro or dev');
  return m as ReleaseManifest;
}

const signed = (m: ReleaseManifest) => concatBytes(utf8(RELEASE_MANIFEST_DOMAIN), utf8(canonicalJson(m as never)));

export function signReleaseManifest(secretKey: Uint8Array, manifest: ReleaseManifest): SignedReleaseManifest {
  checkManifest(manifest);
  return { manifest, publicKey: toHex(ed25519.getPublicKey(secretKey)), signature: toHex(ed25519.sign(signed(manifest), secretKey)) };
}

/** Verifies the signature by the pinned release key; returns the manifest. */
export function verifyReleaseManifest(value: unknown, releaseKey: Uint8Array): ReleaseManifest {
  const s = value as SignedReleaseManifest;
  const manifest = checkManifest(s?.manifest);
  let ok = false;
  try {
    ok = s.publicKey === toHex(releaseKey) && ed25519.verify(fromHex(s.signature, 'signature'), signed(manifest), releaseKey);
  } catch {
    ok = false;
  }
  if (!ok) throw new ProtocolError('signature_invalid', 'release manifest is not signed by the pinned release key');
  return manifest;
}
