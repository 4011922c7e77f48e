// Browser stand-in for Node's `crypto` module, for dependencies that require it at load
// (secrets.js-grempe picks its CSPRNG from what `require("crypto")` returns): WebCrypto only.
export const getRandomValues = <T extends ArrayBufferView | null>(array: T): T => globalThis.crypto.getRandomValues(array as never) as T;
export const webcrypto = globalThis.crypto;
export default { getRandomValues, webcrypto };
