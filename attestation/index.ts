/**
 * attestation/ — AWS Nitro attestation: COSE_Sign1 ES384 verification, X.509 chain to pinned
 * roots at an injected time, PCR policies, and the NSM device binding. The dev NSM is a test
 * double and lives in `./dev.ts`, not here.
 */
export * from './errors.ts';
export { decodeCoseSign1, sigStructure } from './cose.ts';
export * from './policy.ts';
export * from './roots.ts';
export * from './verify.ts';
export * from './nsm.ts';
