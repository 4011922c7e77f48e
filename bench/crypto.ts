/**
 * Micro-benchmarks of the crypto core, each reported as a ratio to a baseline measured in the
 * same run (this machine is shared and noisy, so absolute figures drift between runs).
 */
import { createHash, createSign, createVerify, generateKeyPairSync, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { ChainCache, verifyAttestation } from '../attestation/index.ts';
import { openUpstreamKey, robustCombine, sealUpstreamKey, splitSecret, type KeyBinding } from '../protocol/index.ts';

export interface BenchFigure {
  name: string;
  medianUs: number;
  baseline: string;
  ratio: number;
}

/** Median of per-iteration times over `rounds` rounds of `iterations`, in microseconds. */
export function measure(fn: () => unknown, iterations = 200, rounds = 7): number {
  for (let i = 0; i < Math.min(iterations, 50); i++) fn();
  const samples: number[] = [];
  for (let r = 0; r < rounds; r++) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < iterations; i++) fn();
    samples.push(Number(process.hrtime.bigint() - t0) / 1000 / iterations);
  }
  samples.sort((a, b) => a - b);
  return samples[Math.floor(samples.length / 2)]!;
}

export function cryptoBenchmarks(smoke = false): BenchFigure[] {
  const k = smoke ? 0.05 : 1;
  const doc = new Uint8Array(readFileSync(new URL('../test/fixtures/nitro/anjuna-prod-pubkey-2021-03-24.cbor', import.meta.url)));
  const now = new Date(1616602241 * 1000);

  // Baseline 1: one raw ES384 signature verification (the irreducible core of attestation).
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'secp384r1' });
  const data = randomBytes(4096);
  const sig = createSign('sha384').update(data).sign(privateKey);
  const es384 = measure(() => createVerify('sha384').update(data).verify(publicKey, sig), Math.ceil(300 * k));
  const attest = measure(() => verifyAttestation(doc, { now }), Math.ceil(100 * k));
  // What a shareholder pays per release once it has seen the enclave's chain.
  const chainCache = new ChainCache();
  const attestWarm = measure(() => verifyAttestation(doc, { now, chainCache }), Math.ceil(100 * k));

  // Baseline 2: SHA-256 of 32 bytes ×1000 — a fixed unit of CPU work to scale Shamir against.
  const small = randomBytes(32);
  const sha = measure(() => {
    for (let i = 0; i < 1000; i++) createHash('sha256').update(small).digest();
  }, Math.ceil(20 * k));
  const dek = new Uint8Array(randomBytes(32));
  const split = measure(() => splitSecret(dek, 3, 5), Math.ceil(100 * k));
  const shares = splitSecret(dek, 3, 5);
  const binding: KeyBinding = { connectionId: 'c', provider: 'openai', origin: 'https://api.openai.com', authScheme: 'bearer' };
  const record = sealUpstreamKey(new TextEncoder().encode('sk-bench'), dek, binding, (n) => new Uint8Array(randomBytes(n)));
  const check = (secret: Uint8Array) => {
    try {
      openUpstreamKey(record, secret, binding);
      return true;
    } catch {
      return false;
    }
  };
  const combine = measure(() => robustCombine(shares.slice(0, 3), 3, check), Math.ceil(100 * k));

  return [
    { name: 'attestation verify (real AWS document, chain of 5)', medianUs: attest, baseline: 'one ES384 verify', ratio: attest / es384 },
    { name: 'attestation verify, chain links cached (same enclave again)', medianUs: attestWarm, baseline: 'one ES384 verify', ratio: attestWarm / es384 },
    { name: 'baseline: one ES384 verify', medianUs: es384, baseline: '-', ratio: 1 },
    { name: 'shamir split 3-of-5 (256-bit DEK)', medianUs: split, baseline: '1000× SHA-256(32 B)', ratio: split / sha },
    { name: 'shamir combine 3 + GCM check', medianUs: combine, baseline: '1000× SHA-256(32 B)', ratio: combine / sha },
    { name: 'baseline: 1000× SHA-256(32 B)', medianUs: sha, baseline: '-', ratio: 1 },
  ];
}
