/**
 * What the admin API answers, as the CLI and the dashboard read it: the contract between host/ and
 * its two clients, kept here so neither client imports host/. Types only; no logic, no I/O.
 */

/** What `GET /admin/v1/account` answers (the CLI's `status` and the dashboard read it). */
export interface AccountView {
  id: string;
  name: string;
  role: string;
  plan: { id: string; name: string; limits: Record<string, number | null | undefined>; features: string[] };
  usage: { connections: number; keys: number; members: number };
  projects: string[];
  defaultProject: string;
  createdAt: number;
}

/**
 * What `GET /admin/v1/attestation` answers (the dashboard's attestation page): a fresh document of
 * the enclave, as the host verified it, with the raw document for a client to verify itself.
 */
export interface AttestationReport {
  verified: boolean;
  error: string | null;
  moduleId: string | null;
  timestamp: number | null;
  root: string | null;
  nonce: string;
  pcrs: Record<string, string>;
  release: { name: string; release: string; gitCommit: string; nsm: string; releaseKey: string; signatureValid: boolean; pcrs: Record<string, string> } | null;
  matchesRelease: boolean | null;
  document: string | null;
}

/**
 * The limits a key carries besides its daily and lifetime caps, as `GET /admin/v1/keys` answers
 * them (the CLI's `keys list|show` and the dashboard's Keys page read them): dollars per UTC week
 * (from Monday) and calendar month, requests and tokens per UTC minute, an absolute expiry (ms
 * since the epoch); null where unset. `spentWeek`/`spentMonth` are settled dollars of the current
 * period, null while the key has no such cap (no counter is kept then).
 */
export interface KeyLimitsView {
  weeklyLimit: number | null;
  monthlyLimit: number | null;
  expiresAt: number | null;
  rpm: number | null;
  tpm: number | null;
  spentWeek?: number | null;
  spentMonth?: number | null;
}
