/**
 * Development NSM: signs attestation documents of exactly the Nitro structure (COSE_Sign1, ES384,
 * the nine payload keys in NSM order with CBOR null for absent fields, 16 PCRs of 48 bytes, a
 * cabundle of root → regional → zonal → instance, then the leaf) with a locally generated P-384
 * dev root. PCR0 is the SHA-384 of the enclave bundle, so a shareholder policy pins real code.
 *
 * A test double: exported from this entry only, never from attestation/index.ts. Its root is
 * never one of the production roots, so a dev document can only verify where the dev root was
 * pinned on purpose (shareholders started in explicit dev mode).
 */
import { webcrypto, randomBytes } from 'node:crypto';
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import { Encoder } from 'cbor-x';
import { checkAttestationRequest, type AttestationRequest, type Nsm } from './nsm.ts';
import { sigStructure, COSE_ALG_ES384 } from './cose.ts';
import { loadRoot, type PinnedRoot } from './roots.ts';
import { pcr3ForRoleArn } from './policy.ts';
import { DEV_PCR1, DEV_PCR2, DEV_PCR3, DEV_PCR8 } from './dev-pcrs.ts';

export { pcr3ForRoleArn };
export { DEV_PARENT_ROLE_ARN, DEV_PCR1, DEV_PCR2, DEV_PCR3, DEV_PCR8, devPcrPolicy } from './dev-pcrs.ts';

x509.cryptoProvider.set(webcrypto as unknown as Crypto);

const ALG = { name: 'ECDSA', namedCurve: 'P-384', hash: 'SHA-384' } as const;
const LEAF_LIFETIME_MS = 3 * 3600_000;
const LEAF_RENEW_BEFORE_MS = 15 * 60_000;

export interface DevRootMaterial {
  certificatePem: string;
  /** PKCS#8 PEM of the root's private key. Lives only in the dev data directory. */
  privateKeyPem: string;
}

export type Clock = () => Date;

function serial(): string {
  // Positive 16-byte serial.
  const b = randomBytes(16);
  b[0] = b[0]! & 0x7f | 0x01;
  return b.toString('hex');
}

async function generateKeys(): Promise<CryptoKeyPair> {
  return (await webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify'])) as CryptoKeyPair;
}

/** Generates a self-signed P-384 dev root CA, valid 10 years from `now`. */
export async function createDevRoot(now: Date = new Date()): Promise<DevRootMaterial> {
  const keys = await generateKeys();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name: 'CN=securegate-dev-nitro-root, O=SecureGate development (NOT AWS)',
    notBefore: new Date(now.getTime() - 3600_000),
    notAfter: new Date(now.getTime() + 10 * 365 * 86400_000),
    signingAlgorithm: ALG,
    keys,
    extensions: [
      new x509.BasicConstraintsExtension(true, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign | x509.KeyUsageFlags.digitalSignature, true),
    ],
  });
  const pkcs8 = await webcrypto.subtle.exportKey('pkcs8', keys.privateKey);
  return { certificatePem: cert.toString('pem'), privateKeyPem: x509.PemConverter.encode(pkcs8, 'PRIVATE KEY') };
}

interface Issuer {
  cert: x509.X509Certificate;
  key: CryptoKey;
}

async function issue(issuer: Issuer, name: string, notBefore: Date, notAfter: Date, ca: boolean): Promise<Issuer> {
  const keys = await generateKeys();
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serial(),
    subject: name,
    issuer: issuer.cert.subject,
    notBefore,
    notAfter,
    signingAlgorithm: ALG,
    publicKey: keys.publicKey,
    signingKey: issuer.key,
    extensions: ca
      ? [
          new x509.BasicConstraintsExtension(true, undefined, true),
          new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign | x509.KeyUsageFlags.digitalSignature, true),
        ]
      : [new x509.BasicConstraintsExtension(false, undefined, true), new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true)],
  });
  return { cert, key: keys.privateKey };
}

export interface DevNsmOptions {
  root: DevRootMaterial;
  /** SHA-384 of the enclave bundle: becomes PCR0. */
  pcr0: Uint8Array;
  /** Optional PCR1/PCR2 (default: SHA-384 of fixed labels). */
  pcr1?: Uint8Array;
  pcr2?: Uint8Array;
  /** PCR3, the parent instance's IAM role (default: `pcr3ForRoleArn(DEV_PARENT_ROLE_ARN)`). */
  pcr3?: Uint8Array;
  /** PCR8, the EIF signing certificate (default: DEV_PCR8). */
  pcr8?: Uint8Array;
  moduleId?: string;
  clock?: Clock;
}

const encoder = new Encoder({ useRecords: false, mapsAsObjects: false, tagUint8Array: false, variableMapSize: true } as never);

export class DevNsm implements Nsm {
  readonly kind = 'dev' as const;
  readonly moduleId: string;
  readonly pcrs: Map<number, Uint8Array>;
  readonly #clock: Clock;
  readonly #chain: Issuer[];
  #leaf: Issuer | undefined;

  private constructor(chain: Issuer[], pcrs: Map<number, Uint8Array>, moduleId: string, clock: Clock) {
    this.#chain = chain;
    this.pcrs = pcrs;
    this.moduleId = moduleId;
    this.#clock = clock;
  }

  /** Builds root → regional → zonal → instance CAs below the given dev root, like AWS's chain. */
  static async create(options: DevNsmOptions): Promise<DevNsm> {
    const clock = options.clock ?? (() => new Date());
    const now = clock();
    const rootCert = new x509.X509Certificate(options.root.certificatePem);
    const rootKey = await webcrypto.subtle.importKey(
      'pkcs8',
      x509.PemConverter.decodeFirst(options.root.privateKeyPem),
      ALG,
      false,
      ['sign'],
    );
    const chain: Issuer[] = [{ cert: rootCert, key: rootKey as CryptoKey }];
    const notBefore = new Date(now.getTime() - 3600_000);
    const notAfter = new Date(now.getTime() + 30 * 86400_000);
    for (const name of ['CN=dev-regional.securegate', 'CN=dev-zonal.securegate', 'CN=dev-instance.securegate']) {
      chain.push(await issue(chain[chain.length - 1]!, name, notBefore, notAfter, true));
    }
    const pcrs = new Map<number, Uint8Array>();
    for (let i = 0; i < 16; i++) pcrs.set(i, new Uint8Array(48));
    if (options.pcr0.length !== 48) throw new TypeError('pcr0 must be 48 bytes (SHA-384)');
    pcrs.set(0, options.pcr0);
    pcrs.set(1, options.pcr1 ?? DEV_PCR1);
    pcrs.set(2, options.pcr2 ?? DEV_PCR2);
    pcrs.set(3, options.pcr3 ?? DEV_PCR3);
    pcrs.set(8, options.pcr8 ?? DEV_PCR8);
    for (const i of [1, 2, 3, 8]) if (pcrs.get(i)!.length !== 48) throw new TypeError(`pcr${i} must be 48 bytes (SHA-384)`);
    const moduleId = options.moduleId ?? `i-dev${randomBytes(6).toString('hex')}-enc${randomBytes(8).toString('hex')}`;
    return new DevNsm(chain, pcrs, moduleId, clock);
  }

  async #currentLeaf(now: Date): Promise<Issuer> {
    const leaf = this.#leaf;
    if (leaf && leaf.cert.notAfter.getTime() - now.getTime() > LEAF_RENEW_BEFORE_MS && leaf.cert.notBefore <= now) return leaf;
    const notBefore = new Date(Math.floor(now.getTime() / 1000) * 1000 - 60_000);
    this.#leaf = await issue(this.#chain[this.#chain.length - 1]!, `CN=${this.moduleId}.dev.securegate`, notBefore, new Date(notBefore.getTime() + LEAF_LIFETIME_MS), false);
    return this.#leaf;
  }

  async getAttestationDocument(request: AttestationRequest): Promise<Uint8Array> {
    checkAttestationRequest(request);
    const now = this.#clock();
    const leaf = await this.#currentLeaf(now);
    const b = (u: Uint8Array) => Buffer.from(u);
    const payload = new Map<string, unknown>([
      ['module_id', this.moduleId],
      ['digest', 'SHA384'],
      ['timestamp', now.getTime()],
      ['pcrs', new Map([...this.pcrs].map(([k, v]) => [k, b(v)]))],
      ['certificate', b(new Uint8Array(leaf.cert.rawData))],
      ['cabundle', this.#chain.map((c) => b(new Uint8Array(c.cert.rawData)))],
      ['public_key', request.publicKey ? b(request.publicKey) : null],
      ['user_data', request.userData ? b(request.userData) : null],
      ['nonce', request.nonce ? b(request.nonce) : null],
    ]);
    const payloadBytes = new Uint8Array(encoder.encode(payload));
    const protectedBytes = new Uint8Array(encoder.encode(new Map([[1, COSE_ALG_ES384]])));
    const signature = new Uint8Array(
      await webcrypto.subtle.sign({ name: 'ECDSA', hash: 'SHA-384' }, leaf.key, sigStructure(protectedBytes, payloadBytes)),
    );
    // COSE_Sign1 = [protected, unprotected {}, payload, signature], untagged as Nitro emits it.
    return new Uint8Array(encoder.encode([b(protectedBytes), new Map(), b(payloadBytes), b(signature)]));
  }

  /** The dev root as a pinned root (for dev-mode shareholders and tests). */
  static pinnedRoot(root: DevRootMaterial): PinnedRoot {
    return loadRoot('securegate-dev-root', root.certificatePem);
  }
}
