import { PerformanceObserver, constants } from 'node:perf_hooks';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, expect, it } from 'vitest';
import { releaseReadBuffers } from './read-buffers.ts';

/** Minor collections (scavenges) while `fn` runs, as V8 reports them. */
async function minorCollections(fn: () => Promise<void>): Promise<number> {
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

const pause = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** A byte stream of `bytes` in fresh 64 KB buffers (as socket reads are), drained slowly enough for the watcher to look. */
function stream(bytes: number): Promise<void> {
  let sent = 0;
  const source = new Readable({
    read() {
      if (sent >= bytes) return void this.push(null);
      sent += 64 * 1024;
      this.push(Buffer.allocUnsafe(64 * 1024));
    },
  });
  let seen = 0;
  const sink = new Writable({
    write: (chunk: Buffer, _e, done) => {
      seen += chunk.length;
      // Every 4 MB, a pause: the watcher's timer gets its turns, as on a real socket.
      if (seen % (4 * 1024 * 1024) === 0) setTimeout(done, 5);
      else done();
    },
  });
  return pipeline(source, sink);
}

describe('read buffers of long streams', () => {
  it('runs a minor collection each time external memory grew by a step, and none while it does not', async () => {
    const stop = releaseReadBuffers(8 * 1024 * 1024, 5);
    try {
      expect(await minorCollections(() => pause(100))).toBe(0);
      // 96 MB of buffers that nothing holds: without the watcher V8 would wait for ~64 MB.
      expect(await minorCollections(() => stream(96 * 1024 * 1024))).toBeGreaterThanOrEqual(4);
    } finally {
      stop();
    }
  });

  it('stops when asked', async () => {
    releaseReadBuffers(8 * 1024 * 1024, 5)();
    // Far fewer collections than with the watcher (V8's own may still come).
    expect(await minorCollections(() => stream(96 * 1024 * 1024))).toBeLessThan(4);
  });

  it('takes gc from a context of its own, never the process global', () => {
    releaseReadBuffers()();
    expect((globalThis as { gc?: unknown }).gc).toBeUndefined();
  });
});
