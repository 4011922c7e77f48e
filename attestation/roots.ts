/**
 * Pinned roots of trust. The AWS Nitro Enclaves Root-G1 is embedded (the same bytes AWS publishes
 * in AWS_NitroEnclaves_Root-G1.zip) and its SHA-256 DER fingerprint is checked at load, so an
 * edit of this file that swaps the certificate cannot go unnoticed.
 */
import { X509Certificate, createHash } from 'node:crypto';
import { AttestationError } from './errors.ts';

export const AWS_NITRO_ROOT_G1_PEM = `-----BEGIN CERTIFICATE-----
MIICETCCAZagAwIBAgIRAPkxdWgbkK/hHUbMtOTn+FYwCgYIKoZIzj0EAwMwSTEL
MAkGA1UEBhMCVVMxDzANBgNVBAoMBkFtYXpvbjEMMAoGA1UECwwDQVdTMRswGQYD
VQQDDBJhd3Mubml0cm8tZW5jbGF2ZXMwHhcNMTkxMDI4MTMyODA1WhcNNDkxMDI4
MTQyODA1WjBJMQswCQYDVQQGEwJVUzEPMA0GA1UECgwGQW1hem9uMQwwCgYDVQQL
DANBV1MxGzAZBgNVBAMMEmF3cy5uaXRyby1lbmNsYXZlczB2MBAGByqGSM49AgEG
BSuBBAAiA2IABPwCVOumCMHzaHDimtqQvkY4MpJzbolL//Zy2YlES1BR5TSksfbb
48C8WBoyt7F2Bw7eEtaaP+ohG2bnUs990d0JX28TcPQXCEPZ3BABIeTPYwEoCWZE
h8l5YoQwTcU/9KNCMEAwDwYDVR0TAQH/BAUwAwEB/zAdBgNVHQ4EFgQUkCW1DdkF
R+eWw5b6cp3PmanfS5YwDgYDVR0PAQH/BAQDAgGGMAoGCCqGSM49BAMDA2kAMGYC
MQCjfy+Rocm9Xue4YnwWmNJVA44fA0P5W2OpYow9OYCVRaEevL8uO1XYru5xtMPW
rfMCMQCi85sWBbJwKKXdS6BptQFuZbT73o/gBh1qUxl/nNr12UO8Yfwr6wPLb+6N
IwLz3/Y=
-----END CERTIFICATE-----
`;

/** From AWS's verify-root documentation; see test/fixtures/nitro/README.md. */
export const AWS_NITRO_ROOT_G1_SHA256 = '641a0321a3e244efe456463195d606317ed7cdcc3c1756e09893f3c68f79bb5b';

export interface PinnedRoot {
  name: string;
  certificate: X509Certificate;
}

export function certificateSha256(cert: X509Certificate): string {
  return createHash('sha256').update(cert.raw).digest('hex');
}

/** Parses a PEM root and, when given, checks its DER SHA-256 fingerprint. */
export function loadRoot(name: string, pem: string | Uint8Array, expectedSha256?: string): PinnedRoot {
  let certificate: X509Certificate;
  try {
    certificate = new X509Certificate(pem);
  } catch (cause) {
    throw new AttestationError('attestation_chain_invalid', `root ${name} is not a certificate`, { cause });
  }
  if (expectedSha256 !== undefined && certificateSha256(certificate) !== expectedSha256.toLowerCase()) {
    throw new AttestationError('attestation_chain_invalid', `root ${name} does not have the pinned fingerprint`);
  }
  if (!certificate.ca) throw new AttestationError('attestation_chain_invalid', `root ${name} is not a CA certificate`);
  return { name, certificate };
}

let awsRoot: PinnedRoot | undefined;
export function awsNitroRoot(): PinnedRoot {
  awsRoot ??= loadRoot('aws-nitro-enclaves-root-g1', AWS_NITRO_ROOT_G1_PEM, AWS_NITRO_ROOT_G1_SHA256);
  return awsRoot;
}
