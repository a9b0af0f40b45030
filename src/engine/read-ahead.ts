import type fs from 'node:fs';
import { lstat, open } from 'node:fs/promises';
import { Digester, fsPath, type Digest } from '../oci/index.js';

/** Files read ahead of the tar writer at most. */
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

interface Loaded {
  /** Small files: the whole content, in `buf` (a pool buffer, or a bigger one if the file grew). */
  readonly buf?: Buffer;
  readonly len?: number;
  readonly stat?: fs.BigIntStats;
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
 * The content of a layer's files for the layer writer, read ahead and hashed on the way.
 *
 * The writer opens one file after the other; with thousands of small files that is a chain
 * of open/read/close round trips through libuv's thread pool, one file at a time. Here the
 * next WINDOW files (in the order given, which is the layer's path order) are read at once,
 * small ones whole, so the writer mostly finds its content ready. Every file's sha256 is
 * computed from the bytes that went into the layer, so a step whose cache key needs the
 * content digests (COPY --no-cache, where no lookup comes first) reads each file once for
 * both. A file opened out of the expected order is simply read then.
 *
 * Contract: content is read into recycled buffers (BufferPool), so a chunk a source yields
 * is valid only until the source is asked for its next chunk. The sources must therefore go
 * through `layerTarChunks` to a consumer that is done with each chunk before it asks for the
 * next (`BlobStore.putChunks`); a buffering consumer (a stream pipeline) would see the bytes
 * of later files in earlier chunks.
 */
export class ReadAhead {
  readonly #files: ReadonlyArray<ReadAheadFile>;
  readonly #slots = new Map<number, Promise<Loaded>>();
  /** By file index: a 20,000-file COPY keeps no map keyed by path here. */
  readonly #digests: Array<Digest | undefined>;
  readonly #pool = new BufferPool();
  readonly #onStat: ((index: number, abs: string, stat: fs.BigIntStats, digest: Digest) => void) | undefined;
  readonly #signal: AbortSignal | undefined;
  #next = 0;

  /**
   * `files`: the host files and their stat sizes, in the order the writer will open them; a
   * file is named by its index in this array. `onStat`: lstat each file (bigint) just before
   * reading it and report it with the digest of what was read (for the stat index), once the
   * file has gone into the layer.
   */
  constructor(
    files: ReadonlyArray<ReadAheadFile>,
    opts: { onStat?: ((index: number, abs: string, stat: fs.BigIntStats, digest: Digest) => void) | undefined; signal?: AbortSignal | undefined } = {},
  ) {
    this.#files = files;
    this.#digests = new Array<Digest | undefined>(files.length);
    this.#onStat = opts.onStat;
    this.#signal = opts.signal;
  }

  /** The content source for the layer writer of file `index` (see the contract above). */
  source(index: number): () => AsyncIterable<Buffer> {
    return () => this.#open(index);
  }

  /** sha256 of the content file `index` gave the layer (known once the writer has read it). */
  digest(index: number): Digest | undefined {
    return this.#digests[index];
  }

  #load(index: number): Promise<Loaded> {
    const f = this.#files[index]!;
    return (async (): Promise<Loaded> => {
      const stat = this.#onStat ? await lstat(fsPath(f.srcAbs), { bigint: true }) : undefined;
      const size = stat ? Number(stat.size) : (f.size ?? 0);
      if (size >= CHUNK) return stat ? { stat } : {};
      const { buf, len } = await this.#readWhole(f.srcAbs, size);
      return stat ? { buf, len, stat } : { buf, len };
    })();
  }

  async #readWhole(abs: string, size: number): Promise<{ buf: Buffer; len: number }> {
    return readWholeFile(abs, size, this.#signal, this.#pool);
  }

  /** Starts reading files `from`..`upTo`; files skipped over (opened out of order) are read when opened. */
  #pump(from: number, upTo: number): void {
    this.#next = Math.max(this.#next, from);
    while (this.#next < this.#files.length && this.#next <= upTo) {
      const i = this.#next++;
      const p = this.#load(i);
      p.catch(() => undefined); // reported when the writer opens it; never an unhandled rejection
      this.#slots.set(i, p);
    }
  }

  async *#open(index: number): AsyncGenerator<Buffer> {
    const file = this.#files[index];
    if (file === undefined) throw new Error(`read-ahead: no file ${index}`);
    const abs = file.srcAbs;
    this.#pump(index, index + WINDOW);
    const slot = this.#slots.get(index) ?? this.#load(index);
    this.#slots.delete(index);
    const loaded = await slot;
    const d = new Digester();
    const done = (): void => {
      const digest = d.digest();
      this.#digests[index] = digest;
      if (loaded.stat) this.#onStat?.(index, abs, loaded.stat, digest);
    };
    if (loaded.buf) {
      try {
        const content = loaded.buf.subarray(0, loaded.len);
        d.update(content);
        done();
        if (content.length > 0) yield content;
      } finally {
        this.#pool.give(loaded.buf);
      }
      return;
    }
    // A big file: streamed through one recycled buffer, re-filled once the writer asks for more.
    this.#signal?.throwIfAborted();
    const fh = await open(fsPath(abs), 'r');
    const buf = this.#pool.take(CHUNK);
    try {
      for (;;) {
        const { bytesRead } = await fh.read(buf, 0, buf.length, null);
        if (bytesRead === 0) break;
        const chunk = buf.subarray(0, bytesRead);
        d.update(chunk);
        yield chunk;
      }
      done();
    } finally {
      this.#pool.give(buf);
      await fh.close();
    }
  }
}

/** Where readWholeFile gets its buffers (ReadAhead's pool, or fresh ones) and gives back outgrown ones. */
export interface BufferSource {
  take(min: number): Buffer;
  give(buf: Buffer): void;
}

const FRESH_BUFFERS: BufferSource = { take: (min) => Buffer.allocUnsafe(min), give: () => undefined };

/**
 * A small file's content from one open, read and close: the buffer is at least one byte
 * larger than the stat size, so the first read normally comes back short, which on a
 * regular file means its end; a file that grew meanwhile is read on to its end.
 * The content is `buf[0, len)`; on failure the buffer goes back to `buffers`.
 */
export async function readWholeFile(abs: string, size: number, signal: AbortSignal | undefined, buffers: BufferSource = FRESH_BUFFERS): Promise<{ buf: Buffer; len: number }> {
  signal?.throwIfAborted();
  const fh = await open(fsPath(abs), 'r');
  let buf = buffers.take(size + 1);
  try {
    let len = 0;
    for (;;) {
      const want = buf.length - len;
      const { bytesRead } = await fh.read(buf, len, want, null);
      len += bytesRead;
      if (bytesRead < want) break;
      const bigger = buffers.take(buf.length * 2);
      buf.copy(bigger, 0, 0, len);
      buffers.give(buf);
      buf = bigger;
    }
    return { buf, len };
  } catch (e) {
    buffers.give(buf);
    throw e;
  } finally {
    await fh.close();
  }
}
