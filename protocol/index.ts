/**
 * protocol/ — wire formats and crypto envelopes used by every component. Pure functions over
 * Uint8Array, no I/O; imports no other folder of this project. See SPEC.md for byte layouts.
 */
export * from './bytes.ts';
export * from './errors.ts';
export * from './sealed-record.ts';
export * from './shamir.ts';
export * from './share-envelope.ts';
export * from './share-envelope-seal.ts';
export * from './owner-signature.ts';
export * from './providers/index.ts';
export * from './provider-host-data.ts';
export * from './rpc.ts';
export * from './rpc-encode.ts';
export * from './request-signature.ts';
export * from './allow-list.ts';
export * from './allow-list-canonical.ts';
export * from './audit-chain.ts';
export * from './shareholder-errors.ts';
export * from './shareholder-status.ts';
export * from './cli-exit-codes.ts';
export * from './owner/index.ts';
export * from './connection-policy.ts';
export * from './lease-limits.ts';
export type * from './views.ts';
export * from './http-rules.ts';
export * from './loopback-url.ts';
export * from './usage-receipt.ts';
export * from './usage-receipt-verify.ts';
