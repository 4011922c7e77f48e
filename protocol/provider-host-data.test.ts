import { describe, expect, it } from 'vitest';
import { PROVIDER_HOST_DATA, providerHostData } from './provider-host-data.ts';
import { PROVIDERS } from './providers/index.ts';

describe('provider host data', () => {
  it('has exactly one row per provider of the registry', () => {
    expect(Object.keys(PROVIDER_HOST_DATA).sort()).toEqual(Object.keys(PROVIDERS).sort());
  });

  it('answers undefined for an unknown or inherited id', () => {
    expect(providerHostData('nope')).toBeUndefined();
    expect(providerHostData('toString')).toBeUndefined();
    expect(providerHostData('anthropic')).toEqual({ errorShape: 'anthropic', priceProvider: 'anthropic' });
  });
});
