/**
 * The enclave image's own code (not its npm dependencies), counted from the import closure of
 * enclave/main.ts and grouped into the parts enclave/README.md describes. The README's table is
 * generated from this (`node infra/enclave/release.ts lines --write`) and a test keeps it current.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { enclaveImageLines, REPO_ROOT } from './bundle.ts';

/** The budget issue 21 set: a security reviewer reads the image in an afternoon. */
export const IMAGE_LINE_BUDGET = 3_000;

/** The parts of the image, in README order; a module is counted in the first part that matches. */
export const IMAGE_PARTS: Array<{ part: string; purpose: string; match: RegExp }> = [
  { part: 'start', purpose: 'production entry, command line checked at start, listening, freeing large bodies\' read buffers (`main.ts`, `config.ts`, `start.ts`, `protocol/read-buffers.ts`)', match: /^(enclave\/(main|config|start)|protocol\/read-buffers)\.ts$/ },
  { part: 'RPC server', purpose: 'lifecycle phases, routes, usage receipts and their key, errors and metrics (`server.ts`, `receipt-signer.ts`, `errors.ts`, `metrics.ts`)', match: /^enclave\/(server|receipt-signer|errors|metrics)\.ts$/ },
  { part: 'key resolution', purpose: 'DEK cache and single flight, t-of-n fan-out, shareholder requests and prepared tickets, shareholder configuration', match: /^enclave\/(key-resolver|share-fanout|shareholder-client|shareholders)\.ts$/ },
  { part: 'forwarding', purpose: 'pinned-origin egress with TLS inside, credential injection, key scrubbing, usage read from answers (`forward.ts`, `scrub.ts`, `usage-meter.ts`)', match: /^enclave\/(forward|scrub|usage-meter)\.ts$/ },
  { part: 'policy', purpose: 'the owner-signed connection policy: operations, models, daily ceiling, leases (`policy.ts`)', match: /^enclave\/policy\.ts$/ },
  { part: 'other enclave/', purpose: 'enclave modules not yet described here', match: /^enclave\// },
  { part: 'protocol: keys and shares', purpose: 'opening sealed records, Shamir combine, opening HPKE share envelopes, bytes and errors', match: /^protocol\/(sealed-record|shamir|share-envelope|bytes|errors)\.ts$/ },
  { part: 'protocol: RPC and owner policy', purpose: 'connection descriptor and error codes, the shareholders\' error codes, owner signatures, connection policy, signing usage receipts', match: /^protocol\/(rpc|shareholder-errors|owner-signature|connection-policy|usage-receipt)\.ts$/ },
  { part: 'protocol: providers', purpose: 'each provider’s origin, auth scheme and endpoint table, any-API allow-list matching, loopback and hop-by-hop rules', match: /^protocol\/(providers\/.*|allow-list|http-rules)\.ts$/ },
  { part: 'other protocol/', purpose: 'protocol modules not yet described here', match: /^protocol\// },
  { part: 'attestation', purpose: 'the Nitro NSM device binding (`/dev/nsm` through the static helper), the CBOR decoding of its answers (`cbor.ts`)', match: /^attestation\// },
];

export interface ImagePartLines {
  part: string;
  purpose: string;
  modules: number;
  code: number;
  lines: number;
}

export function imageParts(root = REPO_ROOT): { parts: ImagePartLines[]; code: number; lines: number } {
  const image = enclaveImageLines(root);
  const parts = IMAGE_PARTS.map(({ part, purpose }) => ({ part, purpose, modules: 0, code: 0, lines: 0 }));
  for (const f of image.files) {
    const i = IMAGE_PARTS.findIndex((p) => p.match.test(f.path));
    if (i < 0) throw new Error(`image module ${f.path} belongs to no part of infra/enclave/image-lines.ts`);
    parts[i]!.modules++;
    parts[i]!.code += f.code;
    parts[i]!.lines += f.lines;
  }
  return { parts: parts.filter((p) => p.modules > 0), code: image.code, lines: image.lines };
}

export const README_BEGIN = '<!-- image-lines:begin (generated: node infra/enclave/release.ts lines --write) -->';
export const README_END = '<!-- image-lines:end -->';

/** The README section between the markers. */
export function imageLinesMarkdown(root = REPO_ROOT): string {
  const { parts, code, lines } = imageParts(root);
  const over = code >= IMAGE_LINE_BUDGET;
  return [
    README_BEGIN,
    `**${code} lines of code** (${lines} with comments and blank lines) in ${parts.reduce((n, p) => n + p.modules, 0)} modules — ${over ? `**over** the ${IMAGE_LINE_BUDGET}-line budget` : `under the ${IMAGE_LINE_BUDGET}-line budget`}; npm dependencies not counted.`,
    '',
    '| part | what it is for | modules | code | lines |',
    '| --- | --- | ---: | ---: | ---: |',
    ...parts.map((p) => `| ${p.part} | ${p.purpose} | ${p.modules} | ${p.code} | ${p.lines} |`),
    README_END,
  ].join('\n');
}

export function readmeWithImageLines(readme: string, root = REPO_ROOT): string {
  const begin = readme.indexOf(README_BEGIN);
  const end = readme.indexOf(README_END);
  if (begin < 0 || end < begin) throw new Error('enclave/README.md has no image-lines markers');
  return `${readme.slice(0, begin)}${imageLinesMarkdown(root)}${readme.slice(end + README_END.length)}`;
}

/** Rewrites the table in enclave/README.md; returns whether it changed. */
export function writeReadmeImageLines(root = REPO_ROOT): boolean {
  const path = join(root, 'enclave/README.md');
  const before = readFileSync(path, 'utf8');
  const after = readmeWithImageLines(before, root);
  if (after !== before) writeFileSync(path, after);
  return after !== before;
}
