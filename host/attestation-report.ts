/**
 * The dashboard's attestation page: the host asks the enclave for a fresh document (its own random
 * nonce), verifies the chain to the pinned roots and the nonce, and compares the PCRs with the
 * release manifest it serves. The page says plainly that this check ran on the host; customers
 * who do not trust the host run `securegate attest verify --server … --manifest … --release-key …`,
 * which repeats every step on their machine. The raw document is returned for that purpose.
 */
import { randomBytes } from 'node:crypto';
import type { Pool } from 'undici';
import { AttestationError, verifyAttestation, type PinnedRoot } from '../attestation/index.ts';
import { fromHex, verifyReleaseManifest, type AttestationReport, type SignedReleaseManifest } from '../protocol/index.ts';
import { enclaveAttestation } from './enclave-client.ts';
import { HostError } from './errors.ts';

export type { AttestationReport } from '../protocol/index.ts';

export async function attestationReport(enclave: Pool, manifest: unknown, roots: readonly PinnedRoot[], now = () => new Date()): Promise<AttestationReport> {
  const nonce = randomBytes(32);
  let document: string;
  try {
    const res = await enclaveAttestation(enclave, nonce.toString('hex'));
    if (res.statusCode !== 200 || !res.document) throw new Error(`enclave answered ${res.statusCode}`);
    document = res.document;
  } catch {
    throw new HostError('enclave_unavailable', 'the enclave could not attest');
  }
  let release: AttestationReport['release'] = null;
  if (manifest) {
    const signed = manifest as SignedReleaseManifest;
    let signatureValid = false;
    try {
      verifyReleaseManifest(signed, fromHex(signed.publicKey));
      signatureValid = true;
    } catch {
      signatureValid = false;
    }
    const m = signed.manifest;
    release = { name: m.name, release: m.release, gitCommit: m.gitCommit, nsm: m.nsm, releaseKey: signed.publicKey, signatureValid, pcrs: { ...m.pcrs } };
  }
  const report: AttestationReport = { verified: false, error: null, moduleId: null, timestamp: null, root: null, nonce: nonce.toString('hex'), pcrs: {}, release, matchesRelease: null, document };
  try {
    const doc = verifyAttestation(new Uint8Array(Buffer.from(document, 'base64')), { now: now(), roots, expectedNonce: new Uint8Array(nonce), maxAgeMs: 5 * 60_000 });
    report.verified = true;
    report.moduleId = doc.moduleId;
    report.timestamp = doc.timestamp;
    report.root = doc.root;
    report.pcrs = Object.fromEntries(['0', '1', '2'].map((i) => [i, Buffer.from(doc.pcrs.get(Number(i)) ?? new Uint8Array()).toString('hex')]));
    if (release) report.matchesRelease = release.signatureValid && ['0', '1', '2'].every((i) => report.pcrs[i] === release.pcrs[i]);
  } catch (e) {
    report.error = e instanceof AttestationError ? `${e.code}: ${e.message}` : 'the document could not be verified';
  }
  return report;
}
