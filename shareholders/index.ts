/** shareholders/ — public surface of the shard service. */
export { buildShareholderServer, type ShareholderConfig, SHAREHOLDER_VERSION } from './server.ts';
export { initIdentity, loadIdentity, type ShareholderIdentity } from './identity.ts';
export { openShareStore, type ShareStore } from './store.ts';
export { verifyAuditChain, type AuditEntry } from './audit.ts';
