/** host/ — public surface of the gateway. Never imports enclave/ or shareholders/. */
export { buildHostApp, credentialFrom, type HostConfig } from './app.ts';
export { HostStore, DEFAULT_PROJECT, type ConnectionRecord, type KeyRecord } from './store.ts';
export { openPostgres, openSqlite, type SqlDb } from '../storage/db.ts';
export { enclavePool, parseEnclaveAddress } from './enclave-client.ts';
export { generateSgKey, isWellFormedSgKey, hashSgKey } from './keys.ts';
