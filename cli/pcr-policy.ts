/**
 * The PCR policy `connect` has the shareholders pin: which image (PCR0/1/2, from the release
 * manifest signed by the pinned release key) *and* whose enclave (PCR8, the certificate the EIF is
 * signed with, and/or PCR3, the parent instance's IAM role). The image is public — anyone can run
 * it in their own account — so a policy without an owner binding is refused here, before the key
 * is asked for, as the shareholders would refuse it at enrollment. Pure: inputs in, policy out.
 */
import { checkPolicyStrength, AttestationError, pcr3ForRoleArn, type PcrPolicy } from '../attestation/index.ts';
import { toHex, type ReleaseManifest } from '../protocol/index.ts';
import { CliError, EXIT } from './errors.ts';

const PCR_HEX = /^[0-9a-fA-F]{96}$/;
const ROLE_ARN = /^arn:aws[a-z-]*:iam::\d{12}:role\/[\w+=,.@/-]{1,512}$/;

/** The owner bindings as the config saves them (hex), and as flags give them. */
export interface OwnerBindings {
  /** PCR3: a role ARN (hashed as Nitro does) or the 96-hex-digit value. */
  pcr3?: string;
  /** PCR8: the 96-hex-digit value (`nitro-cli describe-eif` of the signed EIF). */
  pcr8?: string;
}

/** `--pcr3`: an IAM role ARN (PCR3 computed as Nitro measures it) or 96 hex digits. */
export function pcr3Value(value: string): string {
  if (PCR_HEX.test(value)) return value.toLowerCase();
  if (ROLE_ARN.test(value)) return toHex(pcr3ForRoleArn(value));
  throw new CliError('--pcr3 takes the parent instance\'s IAM role ARN (arn:aws:iam::<account>:role/<name>) or 96 hex digits', EXIT.usage);
}

export function pcr8Value(value: string): string {
  if (PCR_HEX.test(value) && !/^0+$/.test(value)) return value.toLowerCase();
  throw new CliError('--pcr8 takes the 96 hex digits of the EIF signing certificate measurement (`nitro-cli describe-eif`), not all zeros', EXIT.usage);
}

/** PCR8 a release manifest may carry (the release was signed with the operator's EIF key). */
function manifestPcr8(manifest: ReleaseManifest | undefined): string | undefined {
  const v = (manifest?.pcrs as Record<string, unknown> | undefined)?.['8'];
  return typeof v === 'string' && PCR_HEX.test(v) ? v.toLowerCase() : undefined;
}

export interface PolicySources {
  /** A manifest verified with the pinned release key: its PCR0/1/2 are the image. */
  manifest?: ReleaseManifest;
  /** Otherwise: the image sets from the config (`pcrPolicy`, or a dev stack's defaults). */
  configured?: { allow: Array<Record<string, string>> };
  /** Flags first, then the config's saved bindings. */
  flags: OwnerBindings;
  saved?: OwnerBindings;
  /** Dev stacks: their dev NSM's PCR8 stands in for a signed EIF (attestation/dev-pcrs.ts). */
  dev: boolean;
}

/**
 * One allowed set per image, each with the owner bindings: PCR8 from --pcr8, the config, the
 * manifest or (only when no flag or saved binding names any) the configured sets; PCR3 likewise
 * without the manifest. Refuses (usage) when neither binding can be had, and checks the result
 * with the shareholders' own strength rule (production) so a refusal happens here, with a fix.
 */
export function ownerPcrPolicy(src: PolicySources): { policy: PcrPolicy; bindings: { pcr3: string | null; pcr8: string | null }; image: 'manifest' | 'config' } {
  const images = src.manifest
    ? [{ '0': src.manifest.pcrs['0'], '1': src.manifest.pcrs['1'], '2': src.manifest.pcrs['2'] }]
    : (src.configured?.allow ?? []).map((s) => Object.fromEntries(Object.entries(s).filter(([i]) => ['0', '1', '2'].includes(i))));
  if (images.length === 0 || images.some((s) => Object.keys(s).length === 0)) {
    throw new CliError('no enclave image to pin: pass --release-manifest <file> with --release-key <hex> (the signed release manifest), or set `pcrPolicy` in the config', EXIT.usage);
  }
  const named = src.flags.pcr3 ?? src.flags.pcr8 ?? src.saved?.pcr3 ?? src.saved?.pcr8;
  const fromConfigured = (i: '3' | '8') => (named === undefined ? src.configured?.allow.find((s) => s[i] !== undefined)?.[i] : undefined);
  const pcr3 = src.flags.pcr3 !== undefined ? pcr3Value(src.flags.pcr3) : src.saved?.pcr3 !== undefined ? pcr3Value(src.saved.pcr3) : (fromConfigured('3') ?? null);
  const pcr8 =
    src.flags.pcr8 !== undefined ? pcr8Value(src.flags.pcr8) : src.saved?.pcr8 !== undefined ? pcr8Value(src.saved.pcr8) : (manifestPcr8(src.manifest) ?? fromConfigured('8') ?? null);
  if (pcr3 === null && pcr8 === null) {
    throw new CliError(
      'refusing to connect without an owner-controlled binding: the enclave image is public, so PCR0–2 alone would let anyone running it in their own AWS account receive your shares. ' +
        'Pass --pcr8 <hex> (the measurement of the certificate your EIF is signed with) and/or --pcr3 <role ARN> (the IAM role of your parent instances); docs/deploy.md "Owner-controlled bindings"',
      EXIT.usage,
    );
  }
  const policy: PcrPolicy = {
    allow: images.map((s) => ({ ...s, ...(pcr3 !== null ? { '3': pcr3 } : {}), ...(pcr8 !== null ? { '8': pcr8 } : {}) })),
  };
  if (!src.dev) {
    try {
      checkPolicyStrength(policy, { mode: 'production' });
    } catch (e) {
      if (e instanceof AttestationError) throw new CliError(`${e.message} (docs/deploy.md "Owner-controlled bindings")`, EXIT.usage);
      throw e;
    }
  }
  return { policy, bindings: { pcr3, pcr8 }, image: src.manifest ? 'manifest' : 'config' };
}
