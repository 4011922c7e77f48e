/**
 * Every command has --help with at least one example, and the help exits 0.
 */
import type { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import { buildProgram, main } from './main.ts';
import type { Io } from './output.ts';

function leaves(c: Command, path: string[] = []): string[][] {
  return c.commands.length === 0 ? [path] : c.commands.flatMap((s) => leaves(s, [...path, s.name()]));
}

describe('securegate --help', () => {
  const silent: Io = { out: () => undefined, err: () => undefined, isTTY: false } as unknown as Io;
  const all = leaves(buildProgram(silent));

  it('covers every command', () => {
    expect(all.length).toBeGreaterThanOrEqual(40);
  });

  it('shows usage and an example for every command', async () => {
    const missing: string[] = [];
    for (const path of all) {
      let text = '';
      const io = { ...silent, out: (t: string) => void (text += t), err: (t: string) => void (text += t) } as Io;
      const code = await main(['node', 'securegate', ...path, '--help'], io);
      expect(code, path.join(' ')).toBe(0);
      expect(text, path.join(' ')).toContain(`Usage: securegate ${path.join(' ')}`);
      if (!/Examples?:\n\s+\$ .*securegate /.test(text)) missing.push(path.join(' '));
    }
    expect(missing).toEqual([]);
  });
});
