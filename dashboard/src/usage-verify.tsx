/**
 * Usage check: the host's recorded requests and tokens per connection and UTC day next to the
 * enclave's signed usage receipts (protocol/SPEC.md §10), with every disagreement said plainly —
 * receipts that do not verify, are replayed or missing (a gap in a connection-day's chain, or
 * past the head the running enclave signs over this page's nonce), or counts the host recorded
 * below what the enclave signed. Signatures are checked here, in the browser. What this page
 * cannot check, it says: it trusts the host that serves it for which receipt keys are attested
 * and it does not read the shareholders' lease logs — `securegate usage --verify` checks both
 * from the owner's machine.
 */
import { useEffect, useState } from 'preact/hooks';
import { checkedHead, describeFinding, usageRows, verifyUsage, type SignedReceiptHead, type SignedUsageReceipt, type UsageFinding, type UsageRow } from '../../protocol/index.ts';
import { admin, type Connection } from './api.ts';
import { Failure } from './pages.tsx';

const DAY_MS = 86_400_000;

interface Evidence {
  receipts: SignedUsageReceipt[];
  attestations: Record<string, string>;
  host: Array<{ connectionId: string; day: number; requests: number; tokens: number }>;
  head: SignedReceiptHead | null;
}

function randomNonce(): string {
  return [...crypto.getRandomValues(new Uint8Array(16))].map((b) => b.toString(16).padStart(2, '0')).join('');
}

/** The comparison the page shows; pure apart from the nonce it was asked with. */
export function usageCheck(evidence: Evidence, nonce: string, named: string[]): { rows: UsageRow[]; findings: UsageFinding[] } {
  // Keys the host holds an attestation document for (this page does not verify documents).
  const attestedKeys = new Set(Object.keys(evidence.attestations));
  // A head that is missing or does not verify is a finding (head_unverified), as in the CLI:
  // otherwise the host alone would decide whether the tail of each chain is checked.
  const { heads, problem } = checkedHead(evidence.head, nonce, named, (key) => attestedKeys.has(key));
  const findings: UsageFinding[] = verifyUsage({ receipts: evidence.receipts, attestedKeys, heads, host: evidence.host });
  if (problem !== undefined) findings.push({ kind: 'head_unverified', reason: problem });
  const rows = usageRows(evidence.host, evidence.receipts);
  return { rows: [...rows.values()].sort((a, b) => b.day - a.day || a.connectionId.localeCompare(b.connectionId)), findings };
}

export function UsageVerify() {
  const [result, setResult] = useState<{ rows: UsageRow[]; findings: UsageFinding[] }>();
  const [error, setError] = useState<unknown>();
  const [tick, setTick] = useState(0);
  useEffect(() => {
    void (async () => {
      try {
        const connections = await admin<Connection[]>('GET', '/connections');
        const named = connections.map((c) => c.id);
        const nonce = randomNonce();
        const to = Math.floor(Date.now() / DAY_MS);
        const q = new URLSearchParams({ from: String(to - 6), to: String(to), nonce, connections: named.join(',') });
        setResult(usageCheck(await admin<Evidence>('GET', `/receipts?${q}`), nonce, named));
        setError(undefined);
      } catch (e) {
        setError(e);
      }
    })();
  }, [tick]);
  return (
    <section>
      <h2>Usage check</h2>
      <p class="muted">
        The host's records beside the enclave's signed receipts for the last 7 UTC days. Receipt signatures are checked in this browser; for a check that
        trusts nothing this server says (attestation documents, the shareholders' lease logs), run <code>securegate usage --verify</code>.
      </p>
      <Failure error={error} />
      {result && (
        <>
          {result.findings.length === 0 ? (
            <p data-testid="usage-verify-ok">✔ The host's records agree with the enclave's signed receipts.</p>
          ) : (
            <ul class="error" data-testid="usage-verify-findings">
              {result.findings.map((f, i) => (
                <li key={i}>{describeFinding(f)}</li>
              ))}
            </ul>
          )}
          <table>
            <thead>
              <tr>
                <th>Day (UTC)</th>
                <th>Connection</th>
                <th>Host requests</th>
                <th>Signed requests</th>
                <th>Host tokens</th>
                <th>Signed tokens</th>
              </tr>
            </thead>
            <tbody>
              {result.rows.map((r) => (
                <tr key={`${r.connectionId}-${r.day}`} class={r.hostRequests < r.receiptRequests || r.hostTokens < r.receiptTokens ? 'error' : ''}>
                  <td>{new Date(r.day * DAY_MS).toISOString().slice(0, 10)}</td>
                  <td>{r.connectionId}</td>
                  <td>{r.hostRequests}</td>
                  <td>{r.receiptRequests}</td>
                  <td>{r.hostTokens}</td>
                  <td>{r.receiptTokens}</td>
                </tr>
              ))}
            </tbody>
          </table>
          <button onClick={() => setTick((t) => t + 1)}>Check again</button>
        </>
      )}
    </section>
  );
}
