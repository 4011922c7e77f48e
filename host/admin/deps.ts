/**
 * What the admin API is built from (host/app.ts supplies it). Shared by every resource module of
 * host/admin/; holds no logic.
 */
import type { Dispatcher } from 'undici';
import type { AccountStore } from '../accounts.ts';
import type { AttestationReport } from '../../protocol/index.ts';
import type { AuditWriter } from '../audit.ts';
import type { EnrollmentConfig } from '../dashboard.ts';
import type { PlanBook } from '../plans.ts';
import type { ReceiptCollector } from '../receipts.ts';
import type { SpendLedger } from '../spend.ts';
import type { HostStore } from '../store.ts';

export interface AdminDeps {
  store: HostStore;
  ledger: SpendLedger;
  audit: AuditWriter;
  pepper: Uint8Array;
  adminTokenHash: string;
  dev: boolean;
  accounts: AccountStore;
  plans: PlanBook;
  /** A fresh attestation of the enclave, checked by the host (the dashboard's attestation page). */
  attest: () => Promise<AttestationReport>;
  /** Shareholders the dashboard enrolls to, when the operator published them. */
  enrollment: EnrollmentConfig | null;
  /**
   * Whether a city entry ("City" or "City, CC") names a place the city lock can ever match.
   * Default: the bundled GeoLite2-City database's names (see `bundledCityDirectory`).
   */
  knownCity?: (entry: string) => Promise<boolean>;
  /** Webhook targets on loopback/private/link-local addresses are accepted (operators' own networks; dev). */
  allowPrivateWebhooks?: boolean;
  /** The enclave RPC, for the admin actions that tell the enclave something (a rotation's eviction). */
  enclave?: Dispatcher;
  /** The enclave's signed usage receipts this host collects (receipts.ts; `GET /admin/v1/receipts`). */
  receipts?: ReceiptCollector;
}
