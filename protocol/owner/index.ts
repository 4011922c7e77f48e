/**
 * protocol/owner/ — protocol code the enclave never runs: onboarding on the owner's machine (owner
 * key, seal, split, sign; CLI and dashboard), release manifests (signed by the release engineer,
 * checked by customers and shareholders) and the owner's usage check against the enclave's
 * receipts (`usage --verify`, dashboard). Kept apart so the enclave image, the import closure of
 * enclave/main.ts, cannot contain it (lint rule in eslint.config.js, closure test in
 * infra/enclave/bundle.test.ts). protocol/index.ts re-exports it for the other folders.
 */
export * from './connection-policy-sign.ts';
export * from './onboard.ts';
export * from './owner-keys.ts';
export * from './owner-sign.ts';
export * from './release-manifest.ts';
export * from './seal-upstream-key.ts';
export * from './shamir-split.ts';
export * from './usage-verify.ts';
export * from './wipe.ts';
