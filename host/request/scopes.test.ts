import { describe, expect, it } from 'vitest';
import { DEFAULT_SCOPES, expandScopes, normaliseScopes, requiredScope, ScopeError, scopeGrants } from './scopes.ts';

describe('key scopes', () => {
  it('grants a default key inference and model listing, and nothing else', () => {
    expect(scopeGrants(DEFAULT_SCOPES, requiredScope('inference', 'write'))).toBe(true);
    expect(scopeGrants(DEFAULT_SCOPES, requiredScope('models', 'read'))).toBe(true);
    for (const kind of ['stored', 'files', 'uploads', 'batches', 'fine_tuning', 'vector_stores'] as const) {
      for (const access of ['read', 'write', 'delete'] as const) expect(scopeGrants(DEFAULT_SCOPES, requiredScope(kind, access)), `${kind}:${access}`).toBe(false);
    }
  });

  it('never grants delete through a bare kind', () => {
    expect(scopeGrants(['files'], 'files:read')).toBe(true);
    expect(scopeGrants(['files'], 'files:write')).toBe(true);
    expect(scopeGrants(['files'], 'files:delete')).toBe(false);
    expect(scopeGrants(['files:delete'], 'files:delete')).toBe(true);
  });

  it('separates read from write', () => {
    expect(scopeGrants(['files:read'], 'files:write')).toBe(false);
    expect(scopeGrants(['batches:write'], 'batches:read')).toBe(false);
  });

  it('refuses scopes it does not understand, naming them', () => {
    expect(() => expandScopes(['files:everything'])).toThrow(ScopeError);
    expect(() => expandScopes(['admin'])).toThrow(/admin/);
    expect(() => expandScopes(['any'])).toThrow(ScopeError);
    expect(() => expandScopes(['files:read:extra'])).toThrow(ScopeError);
  });

  it('grants nothing when stored scopes are unreadable', () => {
    expect(scopeGrants(['bogus'], 'inference:write')).toBe(false);
  });

  it('normalises case, spaces and duplicates', () => {
    expect(normaliseScopes([' Files:Read ', 'files:read', 'INFERENCE'])).toEqual(['files:read', 'inference']);
  });

  it('lets any-API calls through the inference scope (the sealed allow-list limits them)', () => {
    expect(scopeGrants(DEFAULT_SCOPES, requiredScope('any', 'delete'))).toBe(true);
  });
});
