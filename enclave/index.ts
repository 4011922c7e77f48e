/** enclave/ — public surface: the RPC server and its pieces (for the image entry and tests). */
export { Enclave, type EnclaveConfig, type EnclavePhase } from './server.ts';
export { KeyResolver } from './key-resolver.ts';
export type { ShareholderEndpoint } from './shareholders.ts';
export { EnclaveError } from './errors.ts';
export { parseListenAddress } from './config.ts';
