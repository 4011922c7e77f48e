/**
 * Whether a URL names a loopback host (protocol/http-rules.ts `isLoopbackHost`) — for the CLI, which
 * checks configured URLs. The enclave checks only parsed hostnames, so its image does not contain this.
 */
import { isLoopbackHost } from './http-rules.ts';

/** Whether `url` parses and names a loopback host; false for anything that is not a URL. */
export function isLoopbackUrl(url: string): boolean {
  try {
    return isLoopbackHost(new URL(url).hostname);
  } catch {
    return false;
  }
}
