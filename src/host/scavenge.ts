import { createRequire } from 'node:module';

/**
 * Buffers of a stream of blob bytes (a deflate job's output, which zlib allocates: node:zlib
 * takes no output buffer; a file read's chunk; a downloaded chunk) are dead once written on, but V8 frees them only
 * at a GC, and with few JS objects allocated meanwhile it scavenges when 64 MB of them have piled
 * up: on top of the CLI's 50 MB that alone broke 100 MB of RSS on a push or an export. So the
 * streams that make such buffers note their bytes here, and after every 4 MiB the process asks
 * for a scavenge (young generation only: 0.3-0.8 ms here, the buffers of the last few MiB). A
 * push of 168 MB of layers peaked at 120 MB of RSS before, 94-97 MB with this (103 MB scavenging
 * every 8 MiB). A pull of 228 MB of layers kept compressed: 103 -> 81 MB of RSS, and 0.75 ->
 * 0.55 s of user CPU (fewer full GCs, which V8 starts as external memory grows).
 *
 * A buffer still queued when two scavenges pass (a 1 MiB read waiting in a socket's write queue
 * while the compressor's outputs flow) is promoted to the old generation, and then only a full
 * GC frees it, which V8 starts once external memory has grown by 64 MB. So after a scavenge
 * that leaves more than MAJOR_AT bytes of external memory a full GC runs, at most one per
 * MAJOR_SPACING bytes noted: a process whose live buffers are more than that bar pays one full
 * GC per 32 MiB (~5 ms each here), not one per scavenge. A push of big-run's image that also
 * uploads the pulled base's 51 MB blob peaked at 96.5-98.5 MiB of RSS, 89-97 with this (3-6 full
 * GCs in the whole push; a 16 MiB bar ran ~170 and cost a second of CPU).
 *
 * `gc` is V8's, reached as `--expose-gc` would: the flag is set, a context made (which has
 * `gc`), and the flag reset, so the flags V8 hashes into its code cache stay the launcher's.
 */
const SCAVENGE_EVERY = 4 * 1024 * 1024;
const MAJOR_AT = 24 * 1024 * 1024;
const MAJOR_SPACING = 32 * 1024 * 1024;
let noted = 0;
let sinceMajor = MAJOR_SPACING;
let scavenge: (() => void) | null | undefined;

/** `bytes` of buffers made that will be dead soon; may scavenge now. */
export function noteDeadBuffers(bytes: number): void {
  noted += bytes;
  if (noted < SCAVENGE_EVERY) return;
  noted = 0;
  if (scavenge === undefined) scavenge = collector();
  scavenge?.();
}

function collector(): (() => void) | null {
  // node:v8 loads on first use (1.5-2 ms at start-up, for a cached build that never scavenges).
  const load = createRequire(import.meta.url);
  const v8 = load('node:v8') as typeof import('node:v8');
  const vm = load('node:vm') as typeof import('node:vm');
  try {
    v8.setFlagsFromString('--expose-gc');
    const gc: unknown = vm.runInNewContext('gc');
    if (typeof gc !== 'function') return null;
    // gc() is a full GC; V8 11 (Node 20) takes { type: 'minor' } but not 'major' (a scavenge).
    const collect = gc as (opts?: { type: 'minor' }) => void;
    return () => {
      collect({ type: 'minor' });
      sinceMajor += SCAVENGE_EVERY;
      if (sinceMajor < MAJOR_SPACING || v8.getHeapStatistics().external_memory <= MAJOR_AT) return;
      sinceMajor = 0;
      collect();
    };
  } catch {
    return null; // a V8 without it: buffers are freed when V8 decides
  } finally {
    v8.setFlagsFromString('--no-expose-gc');
  }
}
