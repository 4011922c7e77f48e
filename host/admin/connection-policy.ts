/**
 * `GET /admin/v1/connections/:id/policy`: the owner-signed connection policy the connection's
 * record was sealed under (protocol/SPEC.md §9), as the host stores and relays it. The owner's CLI
 * starts a policy update from it (`securegate connections policy`) only after checking the
 * signature with its own key, so this route is a convenience, never a source of trust.
 */
import type { FastifyInstance } from 'fastify';
import type { SignedOwnerMessage } from '../../protocol/index.ts';
import type { AdminDeps } from './deps.ts';
import type { AdminGuard } from './guard.ts';
import { idParam } from './key-options.ts';

export function registerConnectionPolicyRoutes(app: FastifyInstance, _deps: AdminDeps, guard: AdminGuard): void {
  app.get<{ Params: { id: string } }>('/connections/:id/policy', { schema: { params: idParam } }, async (req) => {
    const c = await guard.mustGetConnection(req, req.params.id);
    return { connectionId: c.id, policy: c.policy ? (JSON.parse(c.policy) as SignedOwnerMessage) : null };
  });
}
