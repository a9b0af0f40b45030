import os from 'node:os';
import { Transform, type TransformCallback } from 'node:stream';
import zlib from 'node:zlib';
import { noteDeadBuffers } from '../host/index.js';

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
   * Blocks compressed at once: one more than the cores (the main thread's reads, hashes and
   * hand-offs leave a core idle otherwise), at most 4 (libuv's default pool, which file reads
   * share). As many as the cores held two fewer MiB of blocks (a push of big-run's image: 97-99
   * against 105-108 MB of RSS), but on deflate-heavy layers the cores then waited on the main
   * thread: hello-python's export took 2.02-2.11 s instead of 1.73-1.91 s, its push 2.23-2.36 s
   * instead of 1.96-2.27 s (2 cores, alternating runs). A push asks for one per core
   * (registry/push.ts). The bytes do not depend on it.
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
  /** The block being filled from smaller chunks (copied in), taken from the pool when needed. */
  #block: Buffer | undefined;
  #filled = 0;
  /** The last 32 KiB of the previous block (the next block's dictionary), and a spare to swap with. */
  #tail: Buffer = Buffer.allocUnsafeSlow(DICT);
  #tailLength = 0;
  #spareTail: Buffer = Buffer.allocUnsafeSlow(DICT);
  /** Where a dictionary that spans the previous tail and the block's head is put together. */
  readonly #joined: Buffer = Buffer.allocUnsafeSlow(DICT);
  #crc = 0;
  #size = 0;
  /**
   * Output bytes per input byte of this stream's last deflated run: the next deflate job's
   * output buffer is sized from it (runOptions), so it is one buffer, not two and their concat.
   */
  #ratio = 0.5;
  /** Deflated blocks in input order, oldest first. */
  #pending: Array<Promise<Buffer>> = [];
  /**
   * Block buffers of this stream, free for the next block: the pool a push or export reads its
   * layer into (takeBlock) and the blocks of smaller chunks are copied into. A block returns here
   * when its last deflate job is done, so a layer of any size is read and cut into the same few
   * buffers: fresh ones per MiB are garbage V8 lets pile up to tens of MB before it collects them.
   */
  readonly #free: Buffer[] = [];
  /** The buffers of #free and those out: a chunk written in is one of ours when its memory is. */
  readonly #ours = new WeakSet<ArrayBufferLike>();
  #headerSent = false;

  constructor(opts: ParallelGzipOptions = {}) {
    // A block read ahead while the jobs run: waiting for each read left the cores idle (a mode
    // that read no block ahead held ~10 MB less but made hello-python's export 10-15% slower).
    super({ highWaterMark: 1024 * 1024 });
    this.#level = opts.level ?? 6;
    this.#blockSize = opts.blockSize ?? 1024 * 1024;
    this.#jobs = Math.max(1, Math.min(opts.jobs ?? os.availableParallelism() + 1, 4));
  }

  /** The input block size: a reader that fills whole blocks (takeBlock) hands them over uncopied. */
  get blockSize(): number {
    return this.#blockSize;
  }

  /**
   * A block buffer of this stream's pool, to read input into and write() back (whole, or its
   * head at the end of the input): deflated where it is, and back in the pool when done. A
   * buffer never written back is only garbage.
   */
  takeBlock(): Buffer {
    const b = this.#free.pop();
    if (b !== undefined) return b;
    const fresh = Buffer.allocUnsafeSlow(this.#blockSize);
    this.#ours.add(fresh.buffer);
    return fresh;
  }

  #giveBack(b: Buffer): void {
    // The jobs in flight, the block being filled and a few a reader holds: more are dropped.
    if (b.length === this.#blockSize && this.#free.length < this.#jobs + 2) this.#free.push(b);
  }

  /** The whole pool buffer behind `chunk`, if `chunk` is one of this stream's blocks. */
  #poolBuffer(chunk: Buffer): Buffer | undefined {
    if (chunk.byteOffset !== 0 || !this.#ours.has(chunk.buffer) || chunk.buffer.byteLength !== this.#blockSize) return undefined;
    return Buffer.from(chunk.buffer, 0, this.#blockSize);
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    void this.#take(chunk).then(() => cb(), (e: unknown) => cb(e as Error));
  }

  override _flush(cb: TransformCallback): void {
    void (async () => {
      if (this.#filled > 0 || !this.#headerSent) await this.#submit(this.#block?.subarray(0, this.#filled) ?? Buffer.alloc(0), this.#block);
      this.#block = undefined;
      while (this.#pending.length > 0) await this.#emitOldest();
      const trailer = Buffer.alloc(8);
      trailer.writeUInt32LE(this.#crc >>> 0, 0);
      trailer.writeUInt32LE(this.#size % 0x100000000, 4);
      this.push(Buffer.concat([FINAL_BLOCK, trailer]));
    })().then(() => cb(), (e: unknown) => cb(e as Error));
  }

  async #take(chunk: Buffer): Promise<void> {
    const pooled = this.#poolBuffer(chunk);
    if (pooled !== undefined && this.#filled === 0 && chunk.length === this.#blockSize) {
      // A whole block read into the pool (a stored layer's reads): deflated where it is.
      await this.#submit(chunk, pooled);
      return;
    }
    let off = 0;
    while (off < chunk.length) {
      if (this.#filled === 0 && chunk.length - off >= this.#blockSize) {
        // A whole block in the chunk (1 MiB file reads): deflated where it is, not copied.
        await this.#submit(chunk.subarray(off, off + this.#blockSize), undefined);
        off += this.#blockSize;
        continue;
      }
      this.#block ??= this.takeBlock();
      const n = Math.min(this.#blockSize - this.#filled, chunk.length - off);
      chunk.copy(this.#block, this.#filled, off, off + n);
      this.#filled += n;
      off += n;
      if (this.#filled === this.#blockSize) {
        const full = this.#block;
        this.#block = undefined;
        this.#filled = 0;
        await this.#submit(full, full);
      }
    }
    // Copied (the tail of a layer, or a chunk that did not start a block): free again.
    if (pooled !== undefined) this.#giveBack(pooled);
  }

  /**
   * Starts deflating `block` (possibly empty, for empty input) once a deflate slot is free, and
   * waits while this stream has `jobs` runs in flight. `pooled`: the pool buffer `block` is in,
   * given back once the block's last job is done.
   */
  async #submit(block: Buffer, pooled: Buffer | undefined): Promise<void> {
    this.#crc = zlib.crc32(block, this.#crc);
    this.#size += block.length;
    const before = this.#tail.subarray(0, this.#tailLength);
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
      // The 32 KiB before the run: from the block, or the previous block's tail and this one's
      // head (zlib copies a dictionary when the job is made, so #joined is free again after).
      // Stored and run-length runs look back one byte at most: no dictionary.
      const dictionary = run.kind !== 'deflate' ? undefined : run.start >= DICT ? block.subarray(run.start - DICT, run.start) : this.#dictionary(before, block, run.start);
      // The slot first: blocks wait here, in the stream that cut them, not queued in memory.
      const release = await deflateSlot();
      const job = new Promise<Buffer>((resolve, reject) => {
        const options = runOptions(run, data, this.#level, dictionary, this.#ratio);
        const chunkSize = options.chunkSize!;
        deflateRun(data, options, (err, out) => {
          release();
          // Each job's output is a fresh buffer zlib allocates (node:zlib takes no output buffer);
          // output over one buffer came in several, joined into one more (deflateRun).
          const made = out === undefined || out.length <= chunkSize ? chunkSize : chunkSize * Math.ceil(out.length / chunkSize) + out.length;
          noteDeadBuffers(made);
          if (run.kind === 'deflate' && out !== undefined && data.length > 0) this.#ratio = out.length / data.length;
          // The block's buffer is free once its last run is deflated.
          if (--left === 0 && pooled !== undefined) this.#giveBack(pooled);
          if (out !== undefined) resolve(out);
          else reject(err ?? new Error('deflate gave no output'));
        });
      });
      job.catch(() => undefined); // awaited in order by #emitOldest
      this.#pending.push(job);
      // Backpressure: no more jobs in flight than jobs.
      while (this.#pending.length >= this.#jobs) await this.#emitOldest();
    }
    // This block's last 32 KiB, for the next block (the previous tail is not needed any more).
    const keep = Math.min(DICT, block.length);
    const next = this.#spareTail;
    if (keep < DICT && this.#tailLength > 0) {
      // A short block (the end of the input): the old tail's end, then the block.
      const fromOld = Math.min(this.#tailLength, DICT - keep);
      this.#tail.copy(next, 0, this.#tailLength - fromOld, this.#tailLength);
      block.copy(next, fromOld, 0, keep);
      this.#tailLength = fromOld + keep;
    } else {
      block.copy(next, 0, block.length - keep);
      this.#tailLength = keep;
    }
    this.#spareTail = this.#tail;
    this.#tail = next;
  }

  /** The dictionary of a run starting `start` bytes into a block: the previous tail's end and the block's head. */
  #dictionary(before: Buffer, block: Buffer, start: number): Buffer | undefined {
    if (before.length === 0) return start > 0 ? block.subarray(0, start) : undefined;
    if (start === 0) return before;
    const fromBefore = Math.min(before.length, DICT - start);
    before.copy(this.#joined, 0, before.length - fromBefore);
    block.copy(this.#joined, fromBefore, 0, start);
    return this.#joined.subarray(0, fromBefore + start);
  }

  async #emitOldest(): Promise<void> {
    const out = await this.#pending[0]!;
    this.#pending.shift();
    this.push(out);
  }
}

/**
 * zlib.deflateRaw without its copy: that gathers the output's pieces (the run's, written without
 * a flush, then the sync flush's few bytes) and joins them into a new buffer, though zlib wrote
 * them end to end into its one output buffer (chunkSize: runOptions). Here they are handed back
 * as a view of that buffer; pieces that are not contiguous (output over one buffer) are joined.
 */
function deflateRun(data: Buffer, options: zlib.ZlibOptions, done: (err: Error | undefined, out?: Buffer) => void): void {
  const z = zlib.createDeflateRaw(options);
  const parts: Buffer[] = [];
  let n = 0;
  z.on('data', (c: Buffer) => {
    parts.push(c);
    n += c.length;
  });
  z.once('error', (e) => {
    z.removeAllListeners('end');
    z.close();
    done(e);
  });
  z.once('end', () => {
    z.close();
    done(undefined, joinPieces(parts, n));
  });
  z.end(data);
}

/** `parts` (n bytes in all) as one buffer: a view when they lie end to end in one ArrayBuffer, else a copy. */
export function joinPieces(parts: readonly Buffer[], n: number): Buffer {
  const first = parts[0];
  if (first === undefined) return Buffer.alloc(0);
  if (parts.length === 1) return first;
  let end = first.byteOffset + first.length;
  for (let i = 1; i < parts.length; i++) {
    const p = parts[i]!;
    if (p.buffer !== first.buffer || p.byteOffset !== end) return Buffer.concat(parts, n);
    end += p.length;
  }
  return Buffer.from(first.buffer, first.byteOffset, n);
}

/**
 * zlib's options for one run. chunkSize: one output buffer for the run's output, so the job runs
 * in one pass on the pool (at zlib's 16 KiB default it came back to the main thread per 16 KiB)
 * and its output is that buffer, not several joined into another: stored and run-length runs,
 * the whole run and deflate's worst-case overhead; a deflated run, what the stream's last one
 * made of the same length (`ratio`) and a margin (the returned output keeps the whole buffer
 * alive until it is collected, so not the worst case). With half the run, base64 of random
 * bytes (0.55-0.75 of its size) took two buffers and a third to join them, and 1.75 MiB per
 * MiB of it was garbage. The compressed bytes do not depend on the buffer's size.
 */
function runOptions(run: { kind: RunKind }, data: Buffer, level: number, dictionary: Buffer | undefined, ratio = 0.5): zlib.ZlibOptions {
  const whole = data.length + (data.length >> 8) + 1024;
  return {
    level: run.kind === 'store' ? 0 : level,
    strategy: run.kind === 'rle' ? zlib.constants.Z_RLE : zlib.constants.Z_DEFAULT_STRATEGY,
    chunkSize: run.kind === 'deflate' ? Math.min(whole, Math.max(64 * 1024, Math.ceil(data.length * ratio * 1.08) + 16 * 1024)) : whole,
    finishFlush: zlib.constants.Z_SYNC_FLUSH,
    ...(dictionary ? { dictionary } : {}),
  };
}

/**
 * What a ParallelGzip at `level` makes of `data` when `data` is one block (no bigger than its
 * block size; a file is one block when it is smaller than a block, compressFile), made here
 * on the main thread at once: for a small layer (a few KiB of metadata steps or a COPY), whose
 * stream, jobs and hand-offs cost more than its deflate.
 */
export function gzipOneBlock(data: Buffer, level: number): Buffer {
  const parts: Buffer[] = [gzipHeader(level)];
  for (const run of compressibleRuns(data, level)) {
    const piece = data.subarray(run.start, run.end);
    // As #submit picks it for a first block: the run's 32 KiB before it, in the block.
    const dictionary = run.kind !== 'deflate' ? undefined : run.start >= DICT ? data.subarray(run.start - DICT, run.start) : run.start > 0 ? data.subarray(0, run.start) : undefined;
    parts.push(zlib.deflateRawSync(piece, runOptions(run, piece, level, dictionary)));
  }
  const trailer = Buffer.alloc(8);
  trailer.writeUInt32LE(zlib.crc32(data) >>> 0, 0);
  trailer.writeUInt32LE(data.length % 0x100000000, 4);
  parts.push(FINAL_BLOCK, trailer);
  return Buffer.concat(parts);
}

const PIECE = 64 * 1024;
const SAMPLE = 4096;

/** How a run of a block is compressed: stored as it is, Huffman codes and runs of one byte only (Z_RLE), or deflated. */
type RunKind = 'store' | 'rle' | 'deflate';

/**
 * The block cut into runs by how each 64 KiB piece is compressed, judged on its 4 KiB middle
 * sample: stored when the sample looks random (random bytes, files
 * compressed already); run-length coded when the sample has the byte statistics of text but
 * no repeated strings (lacksMatches(): base64 and hex dumps of random or compressed data,
 * which deflate's match search crawls through at 45-55 MB/s here for nothing it can use,
 * while Z_RLE codes them to the same size at 200 MB/s); deflated otherwise. Neighbouring
 * pieces of one kind make one run. A deterministic function of the bytes, so the output stays
 * reproducible. Blocks under 64 KiB are one run, deflated.
 */
export function compressibleRuns(block: Buffer, level: number): Array<{ start: number; end: number; kind: RunKind }> {
  if (block.length < PIECE || level === 0) return [{ start: 0, end: block.length, kind: level === 0 ? 'store' : 'deflate' }];
  const runs: Array<{ start: number; end: number; kind: RunKind }> = [];
  for (let start = 0; start < block.length; start += PIECE) {
    const end = Math.min(block.length, start + PIECE);
    const at = start + ((end - start - SAMPLE) >> 1);
    const kind: RunKind = end - start < SAMPLE ? 'deflate' : pieceKind(block, at);
    const last = runs.at(-1);
    if (last !== undefined && last.kind === kind) last.end = end;
    else runs.push({ start, end, kind });
  }
  return runs;
}

const counts = new Uint32Array(256);
/** n * log2(n) for the byte counts of a sample. */
const NLOGN = Float64Array.from({ length: SAMPLE + 1 }, (_, n) => (n === 0 ? 0 : n * Math.log2(n)));

/**
 * The kind of the piece whose SAMPLE bytes start at `at`, by the order-0 entropy of their byte
 * counts (H = log2(N) - sum(c log2 c) / N) and, for text-like samples, their repeated strings.
 *
 * 7.9 bits per byte or more: stored. Random bytes and compressed files carry that (4 KiB of
 * random bytes: 7.955), text, code and native libraries far less (4.5-6.5), so deflate could
 * not shrink such a sample. On the pieces of a Debian + python3 image it decides as a trial
 * deflate at level 1 did, for 2,563 of 2,565 pieces (the other two: pieces of about 7.9 bits a
 * level-1 deflate shrank by under 1%), at 17 us a piece and without allocating.
 *
 * 5.5 to 6.5 bits with repeated strings covering at most 3% of the sample: run-length coded (see
 * lacksMatches()). Measured against deflate at level 4: Debian bookworm's base layer, 14 of
 * its 1,731 deflated pieces picked, 0.04% bigger in all; deps-then-src's layer, all 383 pieces
 * of base64 text, 0.03% smaller and 3x faster; big-run's 50,000 small base64 files in a tar,
 * 6,941 of 7,422 pieces, about 0.5% bigger on them (the tar headers' names and numbers, which
 * deflate matches with each other) at a third of the CPU; a tar of node_modules and one of
 * /usr/share/doc, perl and python3 (240 MB of text and libraries), none. Below 5.5 bits a
 * sample without repeated strings is mostly runs of one byte (zeros between files), not
 * typical of its piece: at 1% and no lower bound, 11 pieces of node_modules were picked, 56%
 * bigger each; at 5%, Debian grew by 0.06%.
 */
function pieceKind(block: Buffer, at: number): RunKind {
  counts.fill(0);
  for (let i = at, end = at + SAMPLE; i < end; i++) counts[block[i]!]!++;
  let sum = 0;
  for (let i = 0; i < 256; i++) sum += NLOGN[counts[i]!]!;
  const bits = Math.log2(SAMPLE) - sum / SAMPLE;
  if (bits >= 7.9) return 'store';
  if (bits >= 5.5 && bits < 6.5 && lacksMatches(block, at)) return 'rle';
  return 'deflate';
}

/** Bytes of a sample that repeated strings may cover for its piece to be run-length coded: 3%. */
const RLE_MAX_COVERED = (SAMPLE * 3) / 100;
const HASH_BITS = 13;
/** Where each 4-byte hash was last seen, as an absolute stamp: entries below the sample's base are from earlier samples (no clearing). */
const lastSeen = new Int32Array(1 << HASH_BITS);
let stamp = 0;

/**
 * Whether repeated strings of 4 bytes or more, other than runs of one byte (which Z_RLE codes
 * as well), cover at most RLE_MAX_COVERED bytes of the SAMPLE bytes at `at`: what deflate's
 * match search could find there beyond what run-length coding does. Text with repeats (code,
 * logs, tables) passes that within its first few hundred bytes and stops the scan; base64 of
 * random bytes has a 64^4 space of 4-grams and shows none, and a tar of small base64 files
 * only its headers' zeros. Go's compress/flate (klauspost's, which buildah's pgzip uses) skips
 * ahead faster the longer it finds no match, to the same end.
 */
function lacksMatches(block: Buffer, at: number): boolean {
  if (stamp > 0x7fff0000) {
    lastSeen.fill(0);
    stamp = 0;
  }
  const base = stamp + 1; // stamps of this sample are base + offset; older ones are smaller
  stamp = base + SAMPLE;
  const end = at + SAMPLE;
  let covered = 0;
  for (let i = at; i < end - 3; ) {
    const v = block.readInt32LE(i);
    const h = Math.imul(v, 0x9e3779b1) >>> (32 - HASH_BITS);
    const seen = lastSeen[h]! - base;
    lastSeen[h] = base + (i - at);
    if (((v & 0xff) * 0x01010101) >> 0 === v) {
      i++; // a run of one byte
      continue;
    }
    const from = at + seen;
    if (seen < 0 || block.readInt32LE(from) !== v) {
      i++;
      continue;
    }
    let length = 4;
    while (i + length < end && block[from + length] === block[i + length]) length++;
    covered += length;
    if (covered > RLE_MAX_COVERED) return false;
    // The match's later positions, as a match search would have seen them.
    for (let k = i + 1, last = Math.min(i + length, end - 3); k < last; k++) lastSeen[Math.imul(block.readInt32LE(k), 0x9e3779b1) >>> (32 - HASH_BITS)] = base + (k - at);
    i += length;
  }
  return true;
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
