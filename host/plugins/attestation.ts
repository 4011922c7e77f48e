/**
 * `GET /v1/attestation` (public): a fresh attestation document from the enclave over the client's
 * nonce, with the release manifest this host serves (served, not trusted), for customers to verify
 * themselves (`securegate attest verify`). The host checks nothing here; it only relays.
 */
import type { FastifyInstance } from 'fastify';
import type { Pool } from 'undici';
import { enclaveAttestation, EnclaveUnreachableError } from '../enclave-client.ts';
import { HostError } from '../errors.ts';

export interface AttestationOptions {
  enclave: Pool;
  /** The signed release manifest of the enclave image this host runs. */
  releaseManifest: unknown;
}

export async function attestationPlugin(app: FastifyInstance, options: AttestationOptions): Promise<void> {
  app.get<{ Querystring: { nonce?: string } }>('/v1/attestation', async (req, reply) => {
    const nonce = req.query.nonce ?? '';
    // The NSM signs nonces up to 1024 bytes (attestation/nsm.ts); the host accepts what it signs.
    if (nonce && !/^(?:[0-9a-fA-F]{2}){1,1024}$/.test(nonce)) throw new HostError('invalid_request', 'nonce must be hex, at most 1024 bytes');
    let answer;
    try {
      answer = await enclaveAttestation(options.enclave, nonce);
    } catch (e) {
      if (!(e instanceof EnclaveUnreachableError)) throw e;
      req.log.error({ err: e.message }, 'enclave unreachable');
      throw new HostError('enclave_unavailable', 'the enclave is unavailable');
    }
    if (answer.statusCode !== 200 || !answer.document) throw new HostError('enclave_unavailable', 'the enclave could not attest');
    return reply.send({ document: answer.document, nsm: answer.nsm, manifest: options.releaseManifest ?? null });
  });
}
