/** host/ — public surface of the gateway. Never imports enclave/ or shareholders/. */
export { buildHostApp, credentialFrom, type HostConfig } from './app.ts';
export { openSqliteHostStore, type HostStore, type ConnectionRecord, type KeyRecord } from './store.ts';
export { enclavePool, parseEnclaveAddress } from './enclave-client.ts';
export { generateSgKey, isWellFormedSgKey, hashSgKey } from './keys.ts';
