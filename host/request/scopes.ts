/**
 * Key scopes: what an `SG_` key may be used for, as `kind:access` atoms. Deny unless granted:
 * a request needs the atom of its classified endpoint (`files:read` for GET /v1/files,
 * `files:delete` for DELETE /v1/files/{id}, …). New keys get `inference` only — calling models and
 * listing them — so a stolen key cannot read, upload or delete the owner's files, batches,
 * fine-tunes, vector stores or stored responses unless the owner granted that explicitly.
 *
 * Grammar (CLI `--scopes`, admin API `scopes`): a list of
 *   `inference`            inference:write + models:read (the default)
 *   `<kind>:<access>`      one atom; access is read | write | delete
 *   `<kind>`               read + write of that kind (never delete: deleting is always explicit)
 * Pure.
 */
import { ACCESS, ENDPOINT_KINDS, type Access, type EndpointKind } from '../../protocol/index.ts';

export const DEFAULT_SCOPES: readonly string[] = ['inference'];

/** The atom a request of this kind and access needs. Any-API calls are limited by the connection's sealed allow-list and need `inference`. */
export function requiredScope(kind: EndpointKind, access: Access): string {
  if (kind === 'any') return 'inference:write';
  return `${kind}:${access}`;
}

export class ScopeError extends Error {}

/** Expands a scope list into its atoms; throws ScopeError naming the first entry it does not understand. */
export function expandScopes(scopes: readonly string[]): Set<string> {
  const atoms = new Set<string>();
  for (const raw of scopes) {
    const s = raw.trim().toLowerCase();
    if (s === 'inference') {
      atoms.add('inference:write');
      atoms.add('models:read');
      continue;
    }
    const [kind, access, extra] = s.split(':');
    if (extra !== undefined || !(ENDPOINT_KINDS as readonly string[]).includes(kind ?? '') || kind === 'any') {
      throw new ScopeError(`unknown scope "${raw}": use inference, or <kind>[:read|write|delete] with kind one of ${ENDPOINT_KINDS.filter((k) => k !== 'any').join(', ')}`);
    }
    if (access === undefined) {
      atoms.add(`${kind}:read`);
      atoms.add(`${kind}:write`);
    } else if ((ACCESS as readonly string[]).includes(access)) atoms.add(`${kind}:${access}`);
    else throw new ScopeError(`unknown access "${access}" in scope "${raw}": use read, write or delete`);
  }
  return atoms;
}

/** Normalises a scope list as the owner gave it (validated, de-duplicated, sorted): what is stored. */
export function normaliseScopes(scopes: readonly string[]): string[] {
  expandScopes(scopes);
  return [...new Set(scopes.map((s) => s.trim().toLowerCase()))].sort();
}

/** Whether a key with `scopes` may make a request that needs `atom`. Unparseable stored scopes grant nothing. */
export function scopeGrants(scopes: readonly string[], atom: string): boolean {
  try {
    return expandScopes(scopes).has(atom);
  } catch {
    return false;
  }
}
