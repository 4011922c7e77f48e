/**
 * Memory of long byte streams relayed through a process (uploads through host and enclave).
 *
 * Every socket read is a fresh 64 KB buffer, freed only when V8 collects the small JS object that
 * holds it. A byte stream allocates few JS objects, so the young generation seldom fills and no
 * collection comes; the buffers pile up as external memory until V8's own external-memory trigger
 * (~64 MB over the last collection), which set each process's growth for a 1 GB upload at
 * 60–73 MB (docs/benchmarks.md, "Memory of a large upload"). A minor collection (a scavenge of the
 * young generation, well under a millisecond) after every few megabytes relayed frees them, since
 * the objects holding them are young: the growth then follows the chosen step instead.
 *
 * V8 offers collection to scripts only behind `--expose-gc`; set at run time, the flag installs
 * `gc` in contexts created afterwards, so it is taken from a fresh context and the process's own
 * global never sees it. Without it (a runtime that refuses the flag), streams relay as before.
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

/** Bytes relayed between two minor collections. */
export const RELEASE_STEP_BYTES = 8 * 1024 * 1024;

type Collect = (options: { type: 'minor' }) => void;
let collect: Collect | null | undefined;

function minorCollection(): Collect | null {
  if (collect === undefined) {
    try {
      setFlagsFromString('--expose-gc');
      collect = runInNewContext('gc') as Collect;
    } catch {
      collect = null;
    }
  }
  return collect;
}

/** A counter for one stream: call it with each chunk's length; it collects every `step` bytes. */
export function readBufferRelease(step = RELEASE_STEP_BYTES): (bytes: number) => void {
  let since = 0;
  return (bytes) => {
    since += bytes;
    if (since < step) return;
    since = 0;
    minorCollection()?.({ type: 'minor' });
  };
}
