/**
 * Admin API (`/admin/v1`, bearer admin token or dashboard session) used by the CLI and dashboard,
 * one module per resource over one guard (guard.ts): connections, keys and their locks, projects
 * and model aliases, reports (status, usage, audit, events), alerts, accounts. Never returns key
 * hashes, device salts or signing secrets (a signing secret is shown once, when it is created).
 * Cities and models a key is limited to are checked against what the server knows when they are
 * saved; a refused key field is named in `error.param` (key-options.ts).
 */
import type { FastifyInstance } from 'fastify';
import { registerAccountRoutes } from './accounts.ts';
import { registerAlertRoutes } from './alerts.ts';
import { registerConnectionPolicyRoutes } from './connection-policy.ts';
import { registerConnectionRoutes } from './connections.ts';
import type { AdminDeps } from './deps.ts';
import { installAdminGuard } from './guard.ts';
import { installKeyFieldErrors } from './key-options.ts';
import { registerKeyRoutes } from './keys.ts';
import { registerProjectRoutes } from './projects.ts';
import { registerReceiptRoutes } from './receipts.ts';
import { registerReportRoutes } from './reports.ts';

export type { AdminDeps } from './deps.ts';
export { bundledCityDirectory, cityNamesOf } from './city-directory.ts';
export { KeyFieldError } from './key-options.ts';
export { publicKeyView } from './keys.ts';
export type { AccountView } from '../../protocol/index.ts';

/** Every admin route in one encapsulated context: the guard's onRequest hook and the key-field error handler cover them all. */
export async function registerAdmin(app: FastifyInstance, deps: AdminDeps): Promise<void> {
  const guard = installAdminGuard(app, deps);
  installKeyFieldErrors(app);
  registerConnectionRoutes(app, deps, guard);
  registerConnectionPolicyRoutes(app, deps, guard);
  registerKeyRoutes(app, deps, guard);
  registerProjectRoutes(app, deps, guard);
  registerReportRoutes(app, deps, guard);
  registerAlertRoutes(app, deps, guard);
  registerAccountRoutes(app, deps, guard);
  registerReceiptRoutes(app, deps, guard);
}
