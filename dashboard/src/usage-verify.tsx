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
import { describeFinding, verifyReceiptHead, verifyUsage, type ReceiptHead, type SignedReceiptHead, type SignedUsageReceipt, type UsageFinding } from '../../protocol/index.ts';
import { admin, type Connection } from './api.ts';
import { Failure } from './pages.tsx';

const DAY_MS = 86_400_000;

interface Evidence {
  receipts: SignedUsageReceipt[];
  attestations: Record<string, string>;
  host: Array<{ connectionId: string; day: number; requests: number; tokens: number }>;
  head: SignedReceiptHead | null;
}

interface Row {
  connectionId: string;
  day: number;
  hostRequests: number;
  hostTokens: number;
  receiptRequests: number;
  receiptTokens: number;
}

function randomNonce(): string {
  return [...crypto.getRandomValues(new Uint8Array(16))].map((b) => b.toString(16).padStart(2, '0')).join('');
}

/** The comparison the page shows; pure apart from the nonce it was asked with. */
export function usageCheck(evidence: Evidence, nonce: string, named: string[]): { rows: Row[]; findings: UsageFinding[] } {
  // Keys the host holds an attestation document for (this page does not verify documents).
  const attestedKeys = new Set(Object.keys(evidence.attestations));
  const heads = new Map<string, ReceiptHead>();
  if (evidence.head && attestedKeys.has(evidence.head.enclaveKey)) {
    try {
      const head = verifyReceiptHead(evidence.head, evidence.head.enclaveKey, nonce);
      if (named.every((id) => Object.hasOwn(head.newest, id))) heads.set(evidence.head.enclaveKey, head);
    } catch {
      // an unverifiable head proves nothing; the chains are still checked
    }
  }
  const findings = verifyUsage({ receipts: evidence.receipts, attestedKeys, heads, host: evidence.host });
  const rows = new Map<string, Row>();
  const row = (connectionId: string, day: number) => {
    const k = `${connectionId}\u0000${day}`;
    let r = rows.get(k);
    if (!r) rows.set(k, (r = { connectionId, day, hostRequests: 0, hostTokens: 0, receiptRequests: 0, receiptTokens: 0 }));
    return r;
  };
  for (const h of evidence.host) Object.assign(row(h.connectionId, h.day), { hostRequests: h.requests, hostTokens: h.tokens });
  const newest = new Map<string, SignedUsageReceipt>();
  for (const s of evidence.receipts) {
    const k = `${s.enclaveKey}\u0000${s.receipt.connectionId}\u0000${s.receipt.day}`;
    if ((newest.get(k)?.receipt.seq ?? -1) < s.receipt.seq) newest.set(k, s);
  }
  for (const s of newest.values()) {
    const r = row(s.receipt.connectionId, s.receipt.day);
    r.receiptRequests += s.receipt.requests;
    r.receiptTokens += s.receipt.tokens;
  }
  return { rows: [...rows.values()].sort((a, b) => b.day - a.day || a.connectionId.localeCompare(b.connectionId)), findings };
}

export function UsageVerify() {
  const [result, setResult] = useState<{ rows: Row[]; findings: UsageFinding[] }>();
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
