import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { describe, expect, it } from 'vitest';
import { ByteLimiter } from './bodies.ts';

describe('streamed byte limits', () => {
  it('passes bodies up to the limit and fails beyond it', async () => {
    const ok = new ByteLimiter(10);
    expect((await buffer(Readable.from([Buffer.alloc(6), Buffer.alloc(4)]).pipe(ok))).length).toBe(10);
    const over = new ByteLimiter(10);
    await expect(buffer(Readable.from([Buffer.alloc(6), Buffer.alloc(5)]).pipe(over))).rejects.toThrow(/exceeds 10 bytes/);
    expect(over.exceeded).toBe(true);
  });
});
