/**
 * Wiping the owner's secrets (upstream key, owner key) after onboarding. The enclave wipes its own
 * buffers in place where it holds them, so its image does not contain this.
 */

/** Overwrites a secret buffer in place. Best effort: JS cannot guarantee no copies exist. */
export function wipe(bytes: Uint8Array | undefined): void {
  if (bytes) bytes.fill(0);
}
