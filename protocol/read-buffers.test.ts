import { PerformanceObserver, constants } from 'node:perf_hooks';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, expect, it } from 'vitest';
import { ByteLimiter } from '../host/bodies.ts';
import { RELEASE_STEP_BYTES, readBufferRelease } from './read-buffers.ts';

/** Minor collections (scavenges) while `fn` runs, as V8 reports them. */
async function minorCollections(fn: () => Promise<void> | void): Promise<number> {
  let minor = 0;
  const observer = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) if (((e as { detail?: unknown }).detail as { kind?: number } | undefined)?.kind === constants.NODE_PERFORMANCE_GC_MINOR) minor++;
  });
  observer.observe({ entryTypes: ['gc'] });
  await fn();
  // GC entries are delivered asynchronously.
  await new Promise((r) => setTimeout(r, 50));
  observer.disconnect();
  return minor;
}

describe('read buffers of long streams', () => {
  it('runs a minor collection once every step of bytes, none before', async () => {
    const release = readBufferRelease(1024 * 1024);
    expect(await minorCollections(() => release(1024 * 1024 - 1))).toBe(0);
    // Counting lengths allocates nothing, so every collection seen here is one it asked for.
    const seen = await minorCollections(() => {
      release(1);
      for (let i = 0; i < 4; i++) release(1024 * 1024);
    });
    expect(seen).toBeGreaterThanOrEqual(5);
  });

  it('takes gc from a context of its own, never the process global', () => {
    readBufferRelease(1)(1);
    expect((globalThis as { gc?: unknown }).gc).toBeUndefined();
  });

  it('frees the read buffers of an upload streaming through the host byte limiter as it passes', async () => {
    const chunk = Buffer.alloc(64 * 1024);
    const steps = 3;
    let sent = 0;
    const source = new Readable({
      read() {
        if (sent >= steps * RELEASE_STEP_BYTES) return this.push(null);
        sent += chunk.length;
        this.push(chunk);
      },
    });
    const sink = new Writable({ write: (_c, _e, done) => done() });
    const seen = await minorCollections(() => pipeline(source, new ByteLimiter(Number.MAX_SAFE_INTEGER), sink));
    expect(seen).toBeGreaterThanOrEqual(steps);
  });
});
