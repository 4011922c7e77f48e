/**
 * Request targets that could reach a different route than the one they appear to name are
 * refused before routing matters: every route — proxy, admin, auth, dashboard, health — sees only
 * plain origin-form paths (RFC 9112 §3.2.1). Routers, static file servers and upstream APIs
 * disagree about dot segments, encoded slashes and backslashes, double encoding and absolute-form
 * targets (LiteLLM's 2026 advisories were of this class), so the host refuses them all instead of
 * normalising them one way and hoping the next hop agrees.
 *
 * Refused, anywhere in the path: `.` / `..` segments, `%2e` (an encoded dot has no use in these
 * APIs), `%2f`, `%5c`, raw `\`, `%25` (double encoding), `%00`, malformed `%` escapes, escapes
 * that are not UTF-8, control characters; a leading `//`; and any target that is not
 * origin-form (`http://host/…`, `host:443`, `*`). The query is left to the route (percent-encoded
 * values such as `?after=2024-01-01T00%3A00` are ordinary), except `%00` and control characters.
 * Pure, plus one Fastify `onRequest` hook; it never reads a body.
 */
import type { FastifyInstance } from 'fastify';
import { HostError } from './errors.ts';

export type RequestTargetProblem =
  | 'not_origin_form'
  | 'dot_segment'
  | 'encoded_dot'
  | 'encoded_separator'
  | 'backslash'
  | 'double_encoding'
  | 'nul'
  | 'bad_escape'
  | 'control_character';

const MESSAGES: Record<RequestTargetProblem, string> = {
  not_origin_form: 'the request target must be a path starting with a single "/" (no scheme, host or "*")',
  dot_segment: 'the request path must not contain "." or ".." segments',
  encoded_dot: 'the request path must not contain percent-encoded dots',
  encoded_separator: 'the request path must not contain percent-encoded "/" or "\\"',
  backslash: 'the request path must not contain "\\"',
  double_encoding: 'the request path must not contain "%25" (double encoding)',
  nul: 'the request target must not contain NUL',
  bad_escape: 'the request path has a malformed percent-escape',
  control_character: 'the request target must not contain control characters',
};

const CONTROL = /[\x00-\x1f\x7f]/;

/** Why `target` (the raw request-target as received) is refused, or `undefined` if it is a plain path. */
export function requestTargetProblem(target: string): RequestTargetProblem | undefined {
  if (!target.startsWith('/') || target.startsWith('//')) return 'not_origin_form';
  if (CONTROL.test(target)) return 'control_character';
  if (target.includes('#')) return 'not_origin_form';
  const q = target.indexOf('?');
  const path = q < 0 ? target : target.slice(0, q);
  const query = q < 0 ? '' : target.slice(q + 1);
  if (/%00/.test(query)) return 'nul';
  if (path.includes('\\')) return 'backslash';
  for (const m of path.matchAll(/%(..)?/gs)) {
    const hex = m[1];
    if (!hex || !/^[0-9A-Fa-f]{2}$/.test(hex)) return 'bad_escape';
    switch (hex.toLowerCase()) {
      case '00': return 'nul';
      case '25': return 'double_encoding';
      case '2e': return 'encoded_dot';
      case '2f':
      case '5c': return 'encoded_separator';
    }
  }
  try {
    decodeURIComponent(path);
  } catch {
    return 'bad_escape';
  }
  if (path.split('/').some((s) => s === '.' || s === '..')) return 'dot_segment';
  return undefined;
}

/** Refuses, on every route, a request whose target is not a plain origin-form path (400 `invalid_request`). */
export function registerRequestTargetGuard(app: FastifyInstance): void {
  app.addHook('onRequest', async (req) => {
    const problem = requestTargetProblem(req.raw.url ?? '');
    if (problem) throw new HostError('invalid_request', MESSAGES[problem]);
  });
}
