/**
 * One reconstruction of a connection's DEK through the shareholders — one lease (SPEC.md §9).
 *
 * Asks exactly t shareholders (in the order given: the resolver rotates it per connection so the
 * releases spread evenly) and asks further ones only when one fails, refuses, times out, or the t
 * shares do not open the record (then one more share at a time, so robust combining can leave a
 * bad share out and name it). If the shares are not all in after `hedgeAfterMs`, as many more are
 * asked as are still outstanding, so one hung shareholder costs that delay, not a full timeout.
 * Each shareholder grants at most k leases a day and a lease costs t releases, so an honest
 * enclave obtains the whole ⌊n·k/t⌋; asking all n would spend up to n releases a lease.
 *
 * Shares arriving after the key is rebuilt (from extra asks) are still checked within
 * `stragglerWindowMs`, so a shareholder serving a bad share is named; then they are aborted.
 */
import { equalBytes } from '../protocol/bytes.ts';
import { ProtocolError } from '../protocol/errors.ts';
import type { SignedOwnerMessage } from '../protocol/owner-signature.ts';
import { openUpstreamKey, type KeyBinding } from '../protocol/sealed-record.ts';
import { combineSharesUnchecked, robustCombine, type Share } from '../protocol/shamir.ts';
import { EnclaveError } from './errors.ts';
import type { EnclaveMetrics } from './metrics.ts';
import { ReleaseRefused, type ShareholderClient } from './shareholder-client.ts';
import type { ShareholderEndpoint } from './shareholders.ts';

export interface FanOut {
  client: ShareholderClient;
  metrics: EnclaveMetrics;
  log: { warn: (o: object, m: string) => void };
  now: () => number;
  stragglerWindowMs: number;
  hedgeAfterMs: number;
  /** A share that opened as its shareholder's but does not fit the rebuilt key. */
  reportBad: (shareholder: string, connectionId: string) => void;
  /** A connection-policy update a shareholder sent with its share (authenticated with it; the server verifies it). */
  onLeasePolicy?: (connectionId: string, policy: SignedOwnerMessage) => void;
}

/**
 * Rebuilds the DEK of `binding`'s connection from shares of the shareholders in `order` (the
 * first `threshold` asked first). Every candidate DEK is checked by opening the record (the GCM
 * tag): a combine is never trusted on its own.
 *
 * `vouched` (version 0x04 records): the shareholders whose record-bound key the enclave's own
 * configuration confirms. Opening a record proves only that whoever sealed it chose its set, and
 * anyone can seal a record under an honest connection id with a set mixing their own keys and an
 * honest shareholder's: then the honest, authentic share "does not fit". So a share that does not
 * fit is named only when the key was rebuilt from vouched shareholders' shares; otherwise it is
 * logged, not attributed (SPEC.md §3). Omitted: every shareholder is vouched (older records).
 */
export function reconstructDek(f: FanOut, order: readonly ShareholderEndpoint[], binding: KeyBinding, record: Uint8Array, threshold: number, vouched?: ReadonlySet<string>): Promise<Uint8Array> {
  const started = f.now();
  const connectionId = binding.connectionId;
  const controller = new AbortController();
  const received: Array<{ shareholder: string; share: Share }> = [];
  const check = (dek: Uint8Array) => {
    if (dek.length !== 32) return false;
    try {
      openUpstreamKey(record, dek, binding).fill(0);
      return true;
    } catch {
      return false;
    }
  };
  return new Promise<Uint8Array>((resolve, reject) => {
    const queue = [...order];
    let pending = 0;
    let leaseRefusals = 0;
    let combineFailed = false;
    let secret: Uint8Array | undefined;
    let basis: Share[] = [];
    /** Whether a share that does not fit the rebuilt key may be named (see `vouched`). */
    let attributable = false;
    let done = false;
    const hedge = setTimeout(() => {
      if (!done) ask(pending);
    }, f.hedgeAfterMs);
    hedge.unref();
    const finish = () => {
      done = true;
      clearTimeout(hedge);
    };

    const settle = () => {
      finish();
      if (received.length >= threshold) {
        // Enough shares arrived but no t of them open the record: the record or its binding
        // (origin, provider, scheme) is not what the owner sealed.
        reject(new EnclaveError('sealed_record_invalid', 'no combination of the released shares opens the sealed record'));
        return;
      }
      // Shareholders that answered but refused because today's leases are spent (SPEC.md §9): the
      // owner's daily limit, not an outage.
      if (leaseRefusals > 0 && received.length + leaseRefusals >= threshold) {
        reject(new EnclaveError('lease_limit_reached', `the shareholders granted this connection's leases for today; ${received.length} of ${threshold} shares obtained`));
        return;
      }
      reject(new EnclaveError('shareholders_unavailable', `only ${received.length} of the ${threshold} shares needed could be obtained`));
    };

    /** After every answer: ask more if what is in hand and in flight cannot be enough; settle when nothing is left. */
    const step = () => {
      if (done) return;
      const wanted = combineFailed ? received.length + 1 : threshold;
      const short = wanted - (received.length + pending);
      if (short > 0) ask(short);
      if (pending === 0) settle();
    };

    const blame = (shareholder: string) => {
      if (attributable) f.reportBad(shareholder, connectionId);
      else f.log.warn({ shareholder, connectionId }, 'a share did not fit the rebuilt key, which came from shareholders the enclave configuration does not confirm; not attributed');
    };

    const onShare = (shareholder: string, share: Share) => {
      if (secret) {
        // Straggler: check it against the rebuilt key to name bad shareholders.
        let same = false;
        try {
          same = equalBytes(combineSharesUnchecked([...basis, share]), secret); // constant-time: this compares rebuilt data keys
        } catch {
          same = false;
        }
        if (!same) blame(shareholder);
        return;
      }
      received.push({ shareholder, share });
      if (received.length < threshold) return;
      try {
        const result = robustCombine(
          received.map((r) => r.share),
          threshold,
          check,
        );
        secret = result.secret;
        const used = new Set(result.usedIndices);
        const rebuiltFrom = received.filter((r) => used.has(r.share.index));
        attributable = vouched === undefined || rebuiltFrom.every((r) => vouched.has(r.shareholder));
        basis = rebuiltFrom.slice(0, threshold - 1).map((r) => r.share);
        for (const p of result.badPositions) blame(received[p]!.shareholder);
        finish();
        f.metrics.reconstructionSeconds.observe((f.now() - started) / 1000);
        resolve(secret);
        setTimeout(() => controller.abort(), f.stragglerWindowMs).unref();
      } catch (e) {
        if (!(e instanceof ProtocolError)) throw e;
        // No t of these open the record: one more share may.
        combineFailed = true;
      }
    };

    function ask(count: number): void {
      for (let i = 0; i < count && queue.length > 0; i++) {
        const sh = queue.shift()!;
        pending++;
        const t0 = f.now();
        f.client
          .fetchShare(sh, connectionId, controller.signal)
          .then((share) => {
            f.metrics.shareFetchSeconds.observe({ shareholder: sh.id }, (f.now() - t0) / 1000);
            if (share.leasePolicy) f.onLeasePolicy?.(connectionId, share.leasePolicy);
            onShare(sh.id, share);
          })
          .catch((error: Error) => {
            if (error instanceof ReleaseRefused && error.code === 'lease_limit_reached') leaseRefusals++;
            if (!controller.signal.aborted) {
              const unauthenticated = error instanceof ProtocolError && error.code === 'envelope_auth_failed';
              f.metrics.shareFetchFailures.inc({ shareholder: sh.id, reason: unauthenticated ? 'unauthenticated' : error.name === 'ProtocolError' ? 'envelope' : 'request' });
              f.log.warn(
                { shareholder: sh.id, connectionId, reason: error.message },
                unauthenticated ? 'a reply did not authenticate as this shareholder (forged or damaged in transit; not the shareholder\'s share)' : 'share retrieval failed',
              );
            }
          })
          .finally(() => {
            pending--;
            step();
          });
      }
    }

    ask(threshold);
    if (pending === 0) settle();
  });
}
