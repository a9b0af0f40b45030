import os from 'node:os';
import { Transform, type TransformCallback } from 'node:stream';
import zlib from 'node:zlib';

/**
 * gzip on every core, as pigz and Go's pgzip (skopeo's) do: the input is cut into blocks of
 * `blockSize` bytes, each block is deflated as a job on libuv's thread pool with the last 32 KiB
 * of the block before it as the dictionary (so the ratio stays that of one stream), ended with
 * a sync flush (byte-aligned, not final), and the results are written in order between one gzip
 * header and trailer (CRC-32 of the whole input, chained block by block on the way in, and its
 * size). The result is one ordinary gzip member that any gunzip reads.
 *
 * Deterministic: the same input, level and block size give the same bytes (with a given zlib,
 * as for zlib's own gzip); the header has no name and mtime 0, and the OS byte 3 (unix), as
 * zlib's gzip wrapper writes it.
 *
 * At most `jobs` blocks are in flight per stream (memory stays at about jobs x (block + its
 * output)), and at most as many deflate jobs run at once in the whole process. A block whose
 * samples do not compress is stored, not deflated, 64 KiB piece by piece (see compressibleRuns()).
 */
export interface ParallelGzipOptions {
  /** 1..9; 6 by default. */
  readonly level?: number;
  /** 1 MiB by default (pigz: 128 KiB; bigger blocks, fewer jobs and flush markers). */
  readonly blockSize?: number;
  /**
   * Blocks compressed at once: one more than the cores (the main thread's hand-offs leave a
   * core idle otherwise), at most 4, libuv's default pool, which file reads share.
   */
  readonly jobs?: number;
}

const DICT = 32 * 1024;
/** A final, empty deflate block (fixed Huffman, end-of-block only): what ends pigz's streams. */
const FINAL_BLOCK = Buffer.from([0x03, 0x00]);

export class ParallelGzip extends Transform {
  readonly #level: number;
  readonly #blockSize: number;
  readonly #jobs: number;
  #block: Buffer;
  #filled = 0;
  #previousTail: Buffer | undefined;
  #crc = 0;
  #size = 0;
  /** Deflated blocks in input order, oldest first. */
  #pending: Array<Promise<Buffer>> = [];
  /** Block buffers whose jobs are done, for the next blocks. */
  #spare: Buffer[] = [];
  #headerSent = false;

  constructor(opts: ParallelGzipOptions = {}) {
    super({ highWaterMark: 1024 * 1024 });
    this.#level = opts.level ?? 6;
    this.#blockSize = opts.blockSize ?? 1024 * 1024;
    this.#jobs = Math.max(1, Math.min(opts.jobs ?? os.availableParallelism() + 1, 4));
    this.#block = Buffer.allocUnsafe(this.#blockSize);
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    void this.#take(chunk).then(() => cb(), (e: unknown) => cb(e as Error));
  }

  override _flush(cb: TransformCallback): void {
    void (async () => {
      if (this.#filled > 0 || !this.#headerSent) await this.#submit(this.#block, true);
      while (this.#pending.length > 0) await this.#emitOldest();
      const trailer = Buffer.alloc(8);
      trailer.writeUInt32LE(this.#crc >>> 0, 0);
      trailer.writeUInt32LE(this.#size % 0x100000000, 4);
      this.push(Buffer.concat([FINAL_BLOCK, trailer]));
    })().then(() => cb(), (e: unknown) => cb(e as Error));
  }

  async #take(chunk: Buffer): Promise<void> {
    let off = 0;
    while (off < chunk.length) {
      if (this.#filled === 0 && chunk.length - off >= this.#blockSize) {
        // A whole block in the chunk (1 MiB file reads): deflated where it is, not copied.
        await this.#submit(chunk.subarray(off, off + this.#blockSize), false);
        off += this.#blockSize;
        continue;
      }
      const n = Math.min(this.#blockSize - this.#filled, chunk.length - off);
      chunk.copy(this.#block, this.#filled, off, off + n);
      this.#filled += n;
      off += n;
      if (this.#filled === this.#blockSize) await this.#submit(this.#block, true);
    }
  }

  /**
   * Starts deflating `block` (possibly empty, for empty input) once a deflate slot is free, and
   * waits while this stream has `jobs` blocks in flight. `own`: the block is this stream's
   * buffer, reused for a later block once its job is done (a push or export then allocates a
   * few buffers, not one per MiB: garbage buffers are what V8 lets pile up to tens of MB).
   */
  async #submit(full: Buffer, own: boolean): Promise<void> {
    const block = own ? full.subarray(0, this.#filled) : full;
    if (own) {
      this.#block = this.#spare.pop() ?? Buffer.allocUnsafe(this.#blockSize);
      this.#filled = 0;
    }
    this.#crc = zlib.crc32(block, this.#crc);
    this.#size += block.length;
    const before = this.#previousTail;
    this.#previousTail = Buffer.from(block.subarray(Math.max(0, block.length - DICT)));
    if (!this.#headerSent) {
      this.#headerSent = true;
      this.push(gzipHeader(this.#level));
    }
    // Incompressible data (random bytes, files compressed already) costs deflate its slowest
    // path for nothing: such runs of a block are stored as they are (level 0), 25x faster here,
    // and the rest deflated, each run a job of its own (ended byte-aligned, so they concatenate).
    const runs = compressibleRuns(block, this.#level);
    let left = runs.length;
    for (const run of runs) {
      const data = block.subarray(run.start, run.end);
      // The 32 KiB before the run: from the block, or the previous block's tail and this one's head.
      const dictionary = run.start >= DICT ? block.subarray(run.start - DICT, run.start) : before ? Buffer.concat([before, block.subarray(0, run.start)]).subarray(-DICT) : run.start > 0 ? block.subarray(0, run.start) : undefined;
      // The slot first: blocks wait here, in the stream that cut them, not queued in memory.
      const release = await deflateSlot();
      const job = new Promise<Buffer>((resolve, reject) => {
        // chunkSize: one output buffer for the run's output (stored: the whole run; else half,
        // as deflated text is; a bigger one takes two), so the job runs in one pass on the pool;
        // at zlib's 16 KiB default it came back to the main thread per 16 KiB.
        const chunkSize = run.level === 0 ? data.length + (data.length >> 8) + 1024 : Math.max(64 * 1024, data.length >> 1);
        zlib.deflateRaw(data, { level: run.level, chunkSize, finishFlush: zlib.constants.Z_SYNC_FLUSH, ...(dictionary ? { dictionary } : {}) }, (err, out) => {
          release();
          // The block's buffer is free once its last run is deflated.
          if (--left === 0 && own && full.length === this.#blockSize && this.#spare.length === 0) this.#spare.push(full);
          if (err) reject(err);
          else resolve(out);
        });
      });
      job.catch(() => undefined); // awaited in order by #emitOldest
      this.#pending.push(job);
      // Backpressure: no more jobs in flight than jobs.
      while (this.#pending.length >= this.#jobs) await this.#emitOldest();
    }
  }

  async #emitOldest(): Promise<void> {
    const out = await this.#pending[0]!;
    this.#pending.shift();
    this.push(out);
  }
}

const PIECE = 64 * 1024;
const SAMPLE = 4096;

/**
 * The block cut into runs to deflate at `level` and runs to store (level 0): each 64 KiB piece
 * whose 4 KiB middle sample does not shrink at level 1 is very probably random or compressed
 * already (a tar of mixed files has both: a layer of native libraries and Python modules, say);
 * neighbouring pieces of one kind make one run. A deterministic function of the bytes, so the
 * output stays reproducible. Blocks under 64 KiB are one run at `level`.
 */
function compressibleRuns(block: Buffer, level: number): Array<{ start: number; end: number; level: number }> {
  if (block.length < PIECE) return [{ start: 0, end: block.length, level }];
  const runs: Array<{ start: number; end: number; level: number }> = [];
  for (let start = 0; start < block.length; start += PIECE) {
    const end = Math.min(block.length, start + PIECE);
    const at = start + ((end - start - SAMPLE) >> 1);
    const stored = end - start >= SAMPLE && zlib.deflateRawSync(block.subarray(at, at + SAMPLE), { level: 1 }).length >= SAMPLE;
    const l = stored ? 0 : level;
    const last = runs.at(-1);
    if (last !== undefined && last.level === l) last.end = end;
    else runs.push({ start, end, level: l });
  }
  return runs;
}

/**
 * One limit for every gzip of the process: several layers compress at once (push, save), and
 * each would otherwise queue its own jobs on libuv's 4 threads, starving the file reads that
 * feed them.
 */
const SLOTS = Math.max(1, Math.min(os.availableParallelism() + 1, 4));
let busy = 0;
const waiting: Array<() => void> = [];
function deflateSlot(): Promise<() => void> {
  const release = (): void => {
    const next = waiting.shift();
    if (next) next();
    else busy--;
  };
  if (busy < SLOTS) {
    busy++;
    return Promise.resolve(release);
  }
  return new Promise((resolve) => waiting.push(() => resolve(release)));
}

/** As zlib's gzip wrapper writes it: no name, mtime 0, XFL by level, OS 3 (unix). */
function gzipHeader(level: number): Buffer {
  const xfl = level === 9 ? 2 : level === 1 ? 4 : 0;
  return Buffer.from([0x1f, 0x8b, 0x08, 0x00, 0, 0, 0, 0, xfl, 0x03]);
}
