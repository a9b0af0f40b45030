import type fs from 'node:fs';
import { closeSync, lstatSync, openSync, readSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { Digester, fsPath, type Digest } from '../oci/index.js';

/** Buffers of a size class kept for reuse at most. */
const WINDOW = 16;

/**
 * Read size of big files, and the largest recycled buffer. Files smaller than this are read
 * whole (one open/read/close, read ahead); bigger ones are streamed in chunks of this size
 * through one recycled buffer when the writer gets to them.
 */
const CHUNK = 256 * 1024;

/** The smallest recycled buffer (smaller files share it: one buffer per file in flight). */
const MIN_BUFFER = 4096;

/** A file to read: its host path and its size when planned (the copy plan's entries fit). */
export interface ReadAheadFile {
  readonly srcAbs: string;
  readonly size?: number | undefined;
}

/**
 * Read buffers handed back after use, in power-of-two sizes from MIN_BUFFER to CHUNK.
 *
 * Why: a fresh Buffer per file lives outside V8's heap, and V8 collects such memory only after
 * tens of MB of it have piled up; a COPY of 20,000 small files kept ~60 MB of spent file
 * buffers around between collections (docs/benchmarks.md). With the buffers recycled, the
 * memory a COPY holds for content is about WINDOW buffers, whatever the number of files.
 */
class BufferPool {
  readonly #free = new Map<number, Buffer[]>();

  /** A buffer of at least `min` bytes (rounded up to a power of two; at most CHUNK unless `min` is bigger). */
  take(min: number): Buffer {
    const size = sizeClass(min);
    return this.#free.get(size)?.pop() ?? Buffer.allocUnsafeSlow(size);
  }

  /** Gives `buf` back; the caller must not touch it afterwards. Odd sizes are left to the GC. */
  give(buf: Buffer): void {
    if (buf.length > CHUNK || buf.length !== sizeClass(buf.length)) return;
    let list = this.#free.get(buf.length);
    if (!list) this.#free.set(buf.length, (list = []));
    if (list.length <= WINDOW) list.push(buf);
  }
}

function sizeClass(n: number): number {
  let size = MIN_BUFFER;
  while (size < n) size *= 2;
  return size;
}

/**
 * The content of a layer's files for the layer writer, optionally hashed on the way.
 *
 * Files are read with synchronous system calls when the writer gets to them: small ones whole
 * (one open, read and close), bigger ones in chunks of CHUNK through one recycled buffer. For
 * a COPY of 20,000 small files in the page cache, an open, read and close through libuv's
 * thread pool cost ~45 us of the main thread's time per file (three promises, three requests,
 * three wake-ups), read ahead WINDOW at a time; the synchronous calls cost ~10 us and leave
 * the thread pool to the layer's writes. With `digests` (COPY --no-cache, where no lookup came
 * first and the key needs the content digests) every file's sha256 is computed from the bytes
 * that went into the layer, so each file is read once for both; without, nothing is hashed
 * twice (the layer's own digest is the store's).
 *
 * Contract: content is read into recycled buffers (BufferPool), so a chunk a source yields
 * is valid only until the source is asked for its next chunk. The sources must therefore go
 * through `layerTarChunks` to a consumer that is done with each chunk before it asks for the
 * next (`BlobStore.putChunks`); a buffering consumer (a stream pipeline) would see the bytes
 * of later files in earlier chunks.
 */
export class ReadAhead {
  readonly #files: ReadonlyArray<ReadAheadFile>;
  /** By file index: a 20,000-file COPY keeps no map keyed by path here. */
  readonly #digests: Array<Digest | undefined>;
  readonly #pool = new BufferPool();
  readonly #onStat: ((index: number, abs: string, stat: fs.BigIntStats, digest: Digest) => void) | undefined;
  readonly #hash: boolean;
  readonly #signal: AbortSignal | undefined;

  /**
   * `files`: the host files and their stat sizes, in the order the writer will open them; a
   * file is named by its index in this array. `onStat`: lstat each file (bigint) just before
   * reading it and report it with the digest of what was read (for the stat index), once the
   * file has gone into the layer; implies `digests`. `digests`: hash each file's content.
   */
  constructor(
    files: ReadonlyArray<ReadAheadFile>,
    opts: { onStat?: ((index: number, abs: string, stat: fs.BigIntStats, digest: Digest) => void) | undefined; digests?: boolean | undefined; signal?: AbortSignal | undefined } = {},
  ) {
    this.#files = files;
    this.#digests = new Array<Digest | undefined>(files.length);
    this.#onStat = opts.onStat;
    this.#hash = opts.digests === true || opts.onStat !== undefined;
    this.#signal = opts.signal;
  }

  /** The content source for the layer writer of file `index` (see the contract above). */
  source(index: number): () => Iterable<Buffer> {
    return () => this.#open(index);
  }

  /** sha256 of the content file `index` gave the layer (known once the writer has read it, with `digests`). */
  digest(index: number): Digest | undefined {
    return this.#digests[index];
  }

  *#open(index: number): Generator<Buffer> {
    const file = this.#files[index];
    if (file === undefined) throw new Error(`read-ahead: no file ${index}`);
    this.#signal?.throwIfAborted();
    const abs = file.srcAbs;
    const stat = this.#onStat ? lstatSync(fsPath(abs), { bigint: true }) : undefined;
    const size = stat ? Number(stat.size) : (file.size ?? 0);
    const d = this.#hash ? new Digester() : undefined;
    yield* fileChunks(abs, size, this.#pool, d);
    if (d === undefined) return;
    const digest = d.digest();
    this.#digests[index] = digest;
    if (stat) this.#onStat?.(index, abs, stat, digest);
  }
}

/**
 * Content of host files for the layer writer's `sourcePath` entries (WriteLayerOptions.readFile),
 * read as ReadAhead reads them: synchronous calls, small files whole, big ones in CHUNK pieces,
 * all into one pool of recycled buffers. A RUN that wrote 50,000 small files spent ~19 s of a
 * 2-core machine in thread-pool round trips (open, read, read, close per file, each a wake-up)
 * with the main thread 75% idle; the synchronous calls take ~10 us a file. Same contract as
 * ReadAhead: only for `layerTarChunks` to a consumer done with each chunk before it asks for the
 * next (`BlobStore.putChunks`).
 */
export function recycledFileReader(): (abs: string, size: number) => Iterable<Buffer> {
  const pool = new BufferPool();
  return (abs, size) => fileChunks(abs, size, pool, undefined);
}

/** The chunks of file `abs` (`size` as stat'ed), hashed into `d` on the way when given. */
function* fileChunks(abs: string, size: number, pool: BufferPool, d: Digester | undefined): Generator<Buffer> {
  if (size < CHUNK) {
    const { buf, len } = readWholeFileSync(abs, size, pool);
    try {
      const content = buf.subarray(0, len);
      d?.update(content);
      if (content.length > 0) yield content;
    } finally {
      pool.give(buf);
    }
    return;
  }
  // A big file: read through one recycled buffer, re-filled once the writer asks for more.
  const fd = openSync(fsPath(abs), 'r');
  const buf = pool.take(CHUNK);
  try {
    for (;;) {
      const bytesRead = readSync(fd, buf, 0, buf.length, null);
      if (bytesRead === 0) break;
      const chunk = buf.subarray(0, bytesRead);
      d?.update(chunk);
      yield chunk;
    }
  } finally {
    pool.give(buf);
    closeSync(fd);
  }
}

/** One read a whole-file read asks for: into `buf` at `offset`, at most `length` bytes. */
interface ReadRequest {
  readonly buf: Buffer;
  readonly offset: number;
  readonly length: number;
}

/**
 * The steps of reading a small file whole, without the I/O: it asks for reads (yields) and is
 * told how many bytes each gave. The buffer is at least one byte larger than the stat size, so
 * the first read normally comes back short, which on a regular file means its end; a file that
 * grew meanwhile is read on to its end in a buffer twice as big. The content is `buf[0, len)`;
 * when a read fails (thrown into it) the buffer goes back to `buffers`. Driven by
 * readWholeFileSync and readWholeFile (one loop, two I/O flavours, as layer/root-path.ts).
 */
function* wholeFileReads(size: number, buffers: BufferSource): Generator<ReadRequest, { buf: Buffer; len: number }, number> {
  let buf = buffers.take(size + 1);
  try {
    let len = 0;
    for (;;) {
      const want = buf.length - len;
      const bytesRead = yield { buf, offset: len, length: want };
      len += bytesRead;
      if (bytesRead < want) return { buf, len };
      const bigger = buffers.take(buf.length * 2);
      buf.copy(bigger, 0, 0, len);
      buffers.give(buf);
      buf = bigger;
    }
  } catch (e) {
    buffers.give(buf);
    throw e;
  }
}

/** readWholeFile with synchronous calls: one open, one read (normally), one close. */
function readWholeFileSync(abs: string, size: number, buffers: BufferSource): { buf: Buffer; len: number } {
  const fd = openSync(fsPath(abs), 'r');
  try {
    const steps = wholeFileReads(size, buffers);
    let step = steps.next();
    while (step.done !== true) {
      const r = step.value;
      let n: number;
      try {
        n = readSync(fd, r.buf, r.offset, r.length, null);
      } catch (e) {
        steps.throw(e); // gives the buffer back and throws e
        throw e;
      }
      step = steps.next(n);
    }
    return step.value;
  } finally {
    closeSync(fd);
  }
}

/** Where readWholeFile gets its buffers (ReadAhead's pool, or fresh ones) and gives back outgrown ones. */
export interface BufferSource {
  take(min: number): Buffer;
  give(buf: Buffer): void;
}

const FRESH_BUFFERS: BufferSource = { take: (min) => Buffer.allocUnsafe(min), give: () => undefined };

/**
 * A small file's content from one open, read and close (wholeFileReads). The content is
 * `buf[0, len)`; on failure the buffer goes back to `buffers`.
 */
export async function readWholeFile(abs: string, size: number, signal: AbortSignal | undefined, buffers: BufferSource = FRESH_BUFFERS): Promise<{ buf: Buffer; len: number }> {
  signal?.throwIfAborted();
  const fh = await open(fsPath(abs), 'r');
  try {
    const steps = wholeFileReads(size, buffers);
    let step = steps.next();
    while (step.done !== true) {
      const r = step.value;
      let n: number;
      try {
        n = (await fh.read(r.buf, r.offset, r.length, null)).bytesRead;
      } catch (e) {
        steps.throw(e); // gives the buffer back and throws e
        throw e;
      }
      step = steps.next(n);
    }
    return step.value;
  } finally {
    await fh.close();
  }
}
