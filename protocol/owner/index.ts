/**
 * protocol/owner/ — the owner-side half of the protocol: what the owner's machine (CLI, dashboard)
 * computes and the enclave never runs (onboarding: seal, split, sign; release manifests). The
 * enclave image must not contain these modules (lint rule and closure test, enclave/README.md).
 */
export * from './onboard.ts';
