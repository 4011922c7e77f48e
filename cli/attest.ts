/**
 * `securegate attest verify <file>`: verifies a Nitro attestation document offline — chain to a
 * pinned root (the embedded AWS root unless --root), validity at --at (default now), optional
 * nonce and PCR expectations. Runs on the verifier's machine; trusts nothing but its inputs.
 */
import { readFile } from 'node:fs/promises';
import {
  AttestationError,
  awsNitroRoot,
  isDebugMode,
  loadRoot,
  ownerBindings,
  parsePcrPolicy,
  verifyAttestation,
  type PcrSet,
  type VerifiedAttestation,
} from '../attestation/index.ts';
import { EXIT } from './errors.ts';
import { pcr3Value, pcr8Value } from './pcr-policy.ts';
import { green, printJson, red, type Io } from './output.ts';

export interface AttestVerifyOptions {
  at?: string;
  root?: string;
  expectPcr?: string[];
  nonce?: string;
  allowDebug?: boolean;
  /** The owner bindings to check the document against: PCR3 (role ARN or hex), PCR8 (hex). */
  pcr3?: string;
  pcr8?: string;
  json?: boolean;
}

/** Raw CBOR starts with 0x84 (array of 4) or 0xd2 (tag 18); anything else is tried as base64. */
export function decodeDocumentFile(bytes: Uint8Array): Uint8Array {
  if (bytes[0] === 0x84 || bytes[0] === 0xd2) return bytes;
  const text = Buffer.from(bytes).toString('ascii').replace(/\s+/g, '');
  if (!/^[A-Za-z0-9+/_-]+={0,2}$/.test(text)) return bytes;
  return new Uint8Array(Buffer.from(text, text.includes('-') || text.includes('_') ? 'base64url' : 'base64'));
}

class UsageError extends Error {}

function parseAt(at: string | undefined): Date {
  if (at === undefined) return new Date();
  if (!/^\d+$/.test(at)) throw new UsageError('--at takes unix seconds, e.g. --at 1616602241');
  return new Date(Number(at) * 1000);
}

function parseExpectedPcrs(values: string[] | undefined): PcrSet | undefined {
  if (!values || values.length === 0) return undefined;
  const set: Record<string, string> = {};
  for (const v of values) {
    const m = /^(\d+)=([0-9a-fA-F]+)$/.exec(v);
    if (!m) throw new UsageError(`--expect-pcr takes <index>=<hex>, got ${JSON.stringify(v)}`);
    set[m[1]!] = m[2]!.toLowerCase();
  }
  return set as PcrSet;
}

/**
 * Which owner-controlled bindings the document carries: PCR3 (the parent instance's IAM role) and
 * PCR8 (the EIF signing certificate), each null when all zeros. PCR0–2 say which code runs; only
 * these say whose enclave it is, so a production share policy must pin one of them.
 */
function bindingsOf(result: VerifiedAttestation, expected: ExpectedBindings = {}) {
  const b = ownerBindings(result.pcrs);
  const satisfied = {
    ...(expected.pcr3 !== undefined ? { pcr3: b.pcr3 === expected.pcr3 } : {}),
    ...(expected.pcr8 !== undefined ? { pcr8: b.pcr8 === expected.pcr8 } : {}),
  };
  return { ...b, ownerBound: b.pcr3 !== null || b.pcr8 !== null, ...(Object.keys(satisfied).length ? { satisfied } : {}) };
}

/** The owner bindings named with --pcr3/--pcr8 (as `connect` pins them), lower-case hex. */
type ExpectedBindings = { pcr3?: string; pcr8?: string };

function expectedBindings(options: AttestVerifyOptions): ExpectedBindings {
  try {
    return { ...(options.pcr3 !== undefined ? { pcr3: pcr3Value(options.pcr3) } : {}), ...(options.pcr8 !== undefined ? { pcr8: pcr8Value(options.pcr8) } : {}) };
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

function bindingLines(result: VerifiedAttestation, expected: ExpectedBindings): string[] {
  const b = bindingsOf(result, expected);
  const verdict = (k: 'pcr3' | 'pcr8') => (b.satisfied?.[k] === undefined ? '' : b.satisfied[k] ? ' — matches yours ✔' : ' — NOT yours ✘');
  return [
    `  binding:    PCR3 (parent IAM role) ${b.pcr3 ? 'present' : 'none'}${verdict('pcr3')}, PCR8 (EIF signing certificate) ${b.pcr8 ? 'present' : 'none (unsigned image)'}${verdict('pcr8')}`,
    ...(b.ownerBound ? [] : ['  warning:    no owner-controlled binding: a share policy for this enclave must pin PCR3 or PCR8']),
  ];
}

function toJson(result: VerifiedAttestation, expected: ExpectedBindings) {
  const hex = (b: Uint8Array | null) => (b === null ? null : Buffer.from(b).toString('hex'));
  return {
    valid: true,
    moduleId: result.moduleId,
    timestamp: result.timestamp,
    digest: result.digest,
    pcrs: Object.fromEntries([...result.pcrs].sort((a, b) => a[0] - b[0]).map(([k, v]) => [String(k), hex(v)])),
    publicKey: hex(result.publicKey),
    userData: hex(result.userData),
    nonce: hex(result.nonce),
    root: result.root,
    bindings: bindingsOf(result, expected),
  };
}

export async function attestVerify(file: string, options: AttestVerifyOptions, io: Io): Promise<number> {
  let bytes: Uint8Array;
  let now: Date;
  let expected: PcrSet | undefined;
  let roots;
  let bindings: ExpectedBindings;
  try {
    now = parseAt(options.at);
    bindings = expectedBindings(options);
    expected = parseExpectedPcrs(options.expectPcr);
    if (options.nonce !== undefined && !/^(?:[0-9a-fA-F]{2})+$/.test(options.nonce)) {
      throw new UsageError('--nonce takes an even-length hex string');
    }
    bytes = decodeDocumentFile(new Uint8Array(await readFile(file)));
    roots = options.root ? [loadRoot(options.root, await readFile(options.root))] : [awsNitroRoot()];
  } catch (e) {
    if (e instanceof UsageError) {
      io.err(`securegate attest verify: ${e.message}\n`);
      return EXIT.usage;
    }
    const message = e instanceof AttestationError ? e.message : `cannot read input: ${(e as Error).message}`;
    if (options.json) printJson(io, { valid: false, code: e instanceof AttestationError ? e.code : 'input_unreadable', message });
    else io.err(`securegate attest verify: ${message}\n`);
    return e instanceof AttestationError ? EXIT.invalid : EXIT.io;
  }
  try {
    const policy =
      expected || options.allowDebug ? parsePcrPolicy({ allow: expected ? [expected] : [], allowDebug: options.allowDebug ?? false }) : undefined;
    // With --allow-debug and no --expect-pcr there is nothing to match: only the debug check applies.
    const result = verifyAttestation(bytes, {
      now,
      roots,
      ...(options.nonce ? { expectedNonce: new Uint8Array(Buffer.from(options.nonce, 'hex')) } : {}),
      ...(policy && policy.allow.length > 0 ? { policy } : {}),
    });
    if (!options.allowDebug && isDebugMode(result.pcrs)) {
      throw new AttestationError('attestation_debug_mode', 'document comes from a debug-mode enclave (PCR0 is all zeros); pass --allow-debug to accept it');
    }
    // An enclave carrying another owner's binding is not yours, whatever image it runs.
    const unmet = Object.entries(bindingsOf(result, bindings).satisfied ?? {}).filter(([, ok]) => !ok).map(([k]) => k.toUpperCase());
    if (unmet.length) throw new AttestationError('attestation_pcr_mismatch', `${unmet.join(' and ')} differ from the owner binding you named: this enclave is not bound to you`);
    if (options.json) {
      printJson(io, toJson(result, bindings));
    } else {
      const lines = [
        `${green(io, '✔ valid')} Nitro attestation document`,
        `  module:     ${result.moduleId}`,
        `  signed at:  ${new Date(result.timestamp).toISOString()}`,
        `  verified:   at ${now.toISOString()} against root ${result.root}`,
        ...[...result.pcrs]
          .filter(([i]) => [0, 1, 2, 3, 4, 8].includes(i))
          .map(([i, v]) => `  PCR${String(i).padEnd(2)}      ${Buffer.from(v).toString('hex')}`),
        `  public key: ${result.publicKey ? `${result.publicKey.length} bytes` : 'none'}`,
        `  user data:  ${result.userData ? `${result.userData.length} bytes` : 'none'}`,
        `  nonce:      ${result.nonce ? Buffer.from(result.nonce).toString('hex') : 'none'}`,
        ...bindingLines(result, bindings),
      ];
      io.out(`${lines.join('\n')}\n`);
    }
    return EXIT.ok;
  } catch (e) {
    if (!(e instanceof AttestationError)) throw e;
    if (options.json) printJson(io, { valid: false, code: e.code, message: e.message });
    else io.err(`${red(io, '✘ invalid')} ${e.code}: ${e.message}\n`);
    return EXIT.invalid;
  }
}

export interface AttestServerOptions {
  server: string;
  manifest: string;
  releaseKey: string;
  root?: string;
  json?: boolean;
}

async function readManifest(source: string): Promise<unknown> {
  if (/^https?:\/\//.test(source)) {
    const res = await fetch(source, { signal: AbortSignal.timeout(15_000) });
    if (!res.ok) throw new UsageError(`cannot fetch manifest ${source}: HTTP ${res.status}`);
    return res.json();
  }
  return JSON.parse(await readFile(source, 'utf8'));
}

/**
 * Verifies a live gateway: our own random nonce → the server's fresh attestation document →
 * chain to the pinned root, nonce, and PCR0/1/2 equal to a release manifest signed by the pinned
 * release key. The manifest the server itself offers is only compared, never trusted.
 */
export async function attestVerifyServer(options: AttestServerOptions, io: Io): Promise<number> {
  const { randomBytes } = await import('node:crypto');
  const { verifyReleaseManifest, ProtocolError, fromHex, canonicalJson } = await import('../protocol/index.ts');
  const report: Record<string, unknown> = { server: options.server };
  const fail = (code: string, message: string) => {
    if (options.json) printJson(io, { valid: false, code, message, ...report });
    else io.err(`${red(io, '✘ invalid')} ${code}: ${message}\n`);
    return EXIT.invalid;
  };
  let manifest;
  let roots;
  try {
    if (!/^[0-9a-fA-F]{64}$/.test(options.releaseKey)) throw new UsageError('--release-key takes the 64-hex-digit Ed25519 release public key');
    manifest = verifyReleaseManifest(await readManifest(options.manifest), fromHex(options.releaseKey.toLowerCase()));
    roots = options.root ? [loadRoot(options.root, await readFile(options.root))] : [awsNitroRoot()];
  } catch (e) {
    if (e instanceof UsageError) {
      io.err(`securegate attest verify: ${e.message}\n`);
      return EXIT.usage;
    }
    if (e instanceof ProtocolError) return fail(e.code === 'signature_invalid' ? 'manifest_signature_invalid' : 'manifest_malformed', e.message);
    if (e instanceof AttestationError) return fail(e.code, e.message);
    throw e;
  }
  report.release = manifest.release;
  report.gitCommit = manifest.gitCommit;
  if (manifest.nsm === 'dev' && !options.root) return fail('manifest_dev_release', 'this manifest is a development release; production verification never accepts it');
  const nonce = randomBytes(32);
  let served: { document?: string; manifest?: unknown };
  try {
    const res = await fetch(`${options.server.replace(/\/$/, '')}/v1/attestation?nonce=${nonce.toString('hex')}`, { signal: AbortSignal.timeout(15_000) });
    served = (await res.json()) as typeof served;
    if (!res.ok || !served.document) return fail('attestation_unavailable', `server answered HTTP ${res.status}`);
  } catch (e) {
    io.err(`securegate attest verify: cannot reach ${options.server}: ${(e as Error).message}\n`);
    return EXIT.unavailable;
  }
  try {
    const doc = verifyAttestation(new Uint8Array(Buffer.from(served.document, 'base64')), {
      now: new Date(),
      roots,
      expectedNonce: new Uint8Array(nonce),
      maxAgeMs: 5 * 60_000,
      policy: parsePcrPolicy({ allow: [manifest.pcrs], allowDebug: false }),
    });
    const offered = served.manifest ? canonicalJson((served.manifest as { manifest?: unknown }).manifest as never) === canonicalJson(manifest as never) : null;
    const result = {
      valid: true,
      ...report,
      moduleId: doc.moduleId,
      timestamp: doc.timestamp,
      root: doc.root,
      nonce: nonce.toString('hex'),
      pcrs: Object.fromEntries(['0', '1', '2'].map((i) => [i, Buffer.from(doc.pcrs.get(Number(i))!).toString('hex')])),
      enclavePublicKey: doc.publicKey ? Buffer.from(doc.publicKey).toString('hex') : null,
      bindings: bindingsOf(doc),
      serverManifestMatches: offered,
    };
    if (options.json) printJson(io, result);
    else {
      io.out(
        [
          `${green(io, '✔ verified')} ${options.server} runs release ${manifest.release} (${manifest.gitCommit.slice(0, 12)})`,
          `  enclave module:   ${doc.moduleId}, attested ${new Date(doc.timestamp).toISOString()} to ${doc.root}`,
          `  fresh nonce:      ${nonce.toString('hex').slice(0, 16)}… (ours, echoed)`,
          ...['0', '1', '2'].map((i) => `  PCR${i} = manifest: ${(result.pcrs as Record<string, string>)[i]}`),
          ...bindingLines(doc, {}),
          `  server's own manifest ${offered === null ? 'not offered' : offered ? 'matches' : red(io, 'DIFFERS from the one you pinned')}`,
        ].join('\n') + '\n',
      );
    }
    return offered === false ? EXIT.invalid : EXIT.ok;
  } catch (e) {
    if (e instanceof AttestationError) return fail(e.code, e.message);
    throw e;
  }
}
