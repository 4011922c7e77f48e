/** `securegate providers`: the upstream providers a connection can pin (protocol/providers). */
import { PROVIDERS } from '../protocol/index.ts';
import { printJson, type Io } from './output.ts';

export function providersCommand(options: { json?: boolean }, io: Io): number {
  const list = Object.values(PROVIDERS).map((p) => ({ id: p.id, name: p.name, origin: p.origin ?? null, auth: p.authScheme, upstreamBase: p.upstreamBase }));
  if (options.json) printJson(io, list);
  else for (const p of list) io.out(`${p.id.padEnd(15)}${p.name.padEnd(38)}${p.origin ?? '(your --base-url)'}\n`);
  return 0;
}
