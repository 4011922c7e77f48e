/**
 * `GET /admin/v1/receipts`: what `securegate usage --verify` and the dashboard's usage-verify view
 * compare (protocol/SPEC.md §10.2) — the enclave's signed receipts the host stored, the attestation
 * documents binding their keys, the host's own recorded totals per connection and UTC day, and,
 * given the verifier's `nonce`, the running enclave's head signed over it. Unverified here on
 * purpose: the verifier trusts none of it until the signatures check on its own machine.
 */
import type { FastifyInstance } from 'fastify';
import { HostError } from '../errors.ts';
import type { ReceiptCollector } from '../receipts.ts';
import type { AdminDeps } from './deps.ts';
import type { AdminGuard } from './guard.ts';

const DAY_MS = 86_400_000;

export function registerReceiptRoutes(app: FastifyInstance, deps: AdminDeps & { receipts?: ReceiptCollector }, guard: AdminGuard): void {
  app.get<{ Querystring: { from?: string; to?: string; connection?: string; nonce?: string; connections?: string } }>(
    '/receipts',
    {
      schema: {
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: {
            from: { type: 'string', pattern: '^[0-9]{1,6}$' },
            to: { type: 'string', pattern: '^[0-9]{1,6}$' },
            connection: { type: 'string', maxLength: 64 },
            nonce: { type: 'string', pattern: '^[0-9a-f]{32,128}$' },
            /** The connections the verifier wants the enclave's signed head to cover. */
            connections: { type: 'string', maxLength: 65_000 },
          },
        },
      },
    },
    async (req) => {
      const receipts = deps.receipts;
      if (!receipts) throw new HostError('invalid_request', 'this host does not collect usage receipts');
      const today = Math.floor(Date.now() / DAY_MS);
      const to = req.query.to !== undefined ? Number(req.query.to) : today;
      const from = req.query.from !== undefined ? Number(req.query.from) : to;
      if (from > to || to - from > 92) throw new HostError('invalid_request', 'from..to must be at most 93 UTC days, from ≤ to');
      if (req.query.connection) await guard.mustGetConnection(req, req.query.connection);
      // Collect first, so what the enclave signed until now is in the evidence.
      await receipts.collect().catch(() => undefined);
      const evidence = await receipts.evidence(from, to, req.query.connection);
      const visible = await guard.visibleProjects(req);
      let allowed: (id: string) => boolean = () => true;
      if (visible) {
        const ids = new Set((await deps.store.listConnections()).filter((c) => visible.includes(c.projectId)).map((c) => c.id));
        allowed = (id) => ids.has(id);
      }
      const named = (req.query.connections ?? '').split(',').filter((id) => id && allowed(id));
      const head = req.query.nonce ? await receipts.head(req.query.nonce, named).catch(() => null) : null;
      // The head's key needs its document too, even when none of its receipts are in the window.
      const attestations = { ...evidence.attestations };
      if (head && !attestations[head.enclaveKey]) {
        const doc = await receipts.attestationOf(head.enclaveKey);
        if (doc) attestations[head.enclaveKey] = doc;
      }
      return {
        ...evidence,
        attestations,
        receipts: evidence.receipts.filter((r) => allowed(r.receipt.connectionId)),
        host: evidence.host.filter((h) => allowed(h.connectionId)),
        head,
      };
    },
  );
}
