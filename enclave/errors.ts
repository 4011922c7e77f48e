/** Enclave error registry: stable codes returned to the host; messages never hold key material. */
import type { EnclaveErrorCode } from '../protocol/rpc.ts';

const STATUS: Record<EnclaveErrorCode, number> = {
  shareholders_unavailable: 503,
  sealed_record_invalid: 403,
  path_not_allowed: 403,
  origin_not_allowed: 403,
  provider_unknown: 400,
  upstream_unreachable: 502,
  enclave_not_ready: 503,
  bad_request: 400,
  policy_invalid: 403,
  policy_operation_denied: 403,
  policy_model_denied: 403,
  policy_ceiling_reached: 429,
  lease_limit_reached: 429,
};

export class EnclaveError extends Error {
  readonly code: EnclaveErrorCode;
  readonly status: number;
  constructor(code: EnclaveErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'EnclaveError';
    this.code = code;
    this.status = STATUS[code];
  }
}
