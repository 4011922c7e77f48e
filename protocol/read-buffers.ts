/**
 * Memory of long byte streams relayed through a process (uploads and downloads through host and
 * enclave).
 *
 * Every socket read is a fresh 64 KB buffer, freed only when V8 collects the small JS object that
 * holds it. A byte stream allocates few JS objects, so the young generation seldom fills and no
 * collection comes; the buffers pile up as external memory until V8's own external-memory trigger
 * (~64 MB over the last collection), which set each process's growth for a 1 GB upload at
 * 60–81 MB (docs/benchmarks.md, "Memory of a large upload"). A watcher reads the external memory
 * a few times a second (a heap-statistics call, ~8 µs) and, once it has grown by `stepBytes`,
 * runs a minor collection (a scavenge of the young generation, well under a millisecond), which
 * frees them: the objects holding them are young. Whatever stream carries the bytes, the growth
 * then follows the step instead.
 *
 * V8 offers collection to scripts only behind `--expose-gc`; set at run time, the flag installs
 * `gc` in contexts created afterwards, so it is taken from a fresh context and the process's own
 * global never sees it. A runtime where the flag does not take gets no watcher.
 */
import { getHeapStatistics, setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

/** Starts the watcher (its timer does not hold the process open); returns its stop. */
export function releaseReadBuffers(stepBytes = 16 * 1024 * 1024, everyMs = 50): () => void {
  setFlagsFromString('--expose-gc');
  const collect = runInNewContext('typeof gc === "function" ? gc : undefined') as ((options: { type: 'minor' }) => void) | undefined;
  if (!collect) return () => {};
  let base = getHeapStatistics().external_memory;
  const timer = setInterval(() => {
    const grown = getHeapStatistics().external_memory - base >= stepBytes;
    if (grown) collect({ type: 'minor' });
    // After a collection, what is left is the new base; otherwise the lowest level seen.
    const now = getHeapStatistics().external_memory;
    base = grown ? now : Math.min(base, now);
  }, everyMs).unref();
  return () => clearInterval(timer);
}
