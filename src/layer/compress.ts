import { createReadStream } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { Readable, type Duplex, type Transform, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import zlib from 'node:zlib';
import { TsbuildError } from '../errors.js';
import { DigestStream, type Digest } from '../oci/index.js';
import { ParallelGzip } from './parallel-gzip.js';
import { noteDeadBuffers } from '../host/index.js';
import { wrapWriteError } from './write-layer.js';
import { zstdCompressor, zstdDecompressor, zstdMissing, zstdProgram } from './zstd.js';

export type LayerCompression = 'gzip' | 'zstd' | 'uncompressed';

export interface CompressLayerOptions {
  readonly compression: LayerCompression;
  /** gzip 1..9 (default DEFAULT_GZIP_LEVEL); zstd 1..22 (default 3). */
  readonly level?: number | undefined;
  readonly signal?: AbortSignal | undefined;
}

export interface CompressedLayer {
  /** Digest of the bytes written to `out` (the blob digest in the manifest). */
  readonly digest: Digest;
  /** Bytes written to `out`. */
  readonly size: number;
  /** sha256 of the uncompressed input (the diff ID), hashed on the way in. */
  readonly diffId: Digest;
  readonly uncompressedSize: number;
}

/**
 * Compresses an uncompressed layer tar from `input` into `out` (and ends `out`), hashing both
 * sides in the same pass, so a stored layer is verified against its diff ID while it is
 * compressed for a push.
 *
 * Determinism: gzip output has no name, no comment and mtime 0 in its header (`1f 8b 08 00
 * 00000000 XFL 03`, as zlib's gzip wrapper writes it), so the same input, level and zlib give
 * the same bytes. The deflate stream depends on node's bundled zlib (and zstd's on the zstd
 * program): another version may compress differently, which is why the compressed digest is
 * remembered per diff ID rather than recomputed (DESIGN.md). Both run on every core.
 */
export async function compressLayer(input: Readable, out: Writable, opts: CompressLayerOptions): Promise<CompressedLayer> {
  const compressor = createLayerCompressor(opts.compression, opts.level);
  const before = new DigestStream();
  const after = new DigestStream();
  const stages: (Transform | Duplex | Writable)[] = compressor ? [before, compressor, after, out] : [before, after, out];
  try {
    await pipeline(input, ...(stages as [Transform, ...Writable[]]), opts.signal ? { signal: opts.signal } : {});
  } catch (e) {
    throw wrapWriteError(e);
  }
  const b = before.result();
  const a = after.result();
  return { digest: a.digest, size: a.size, diffId: b.digest, uncompressedSize: b.size };
}

/**
 * The gzip level of layers tsbuild compresses (exports, pushes) when none is asked for: 4, the
 * ratio of buildah's and skopeo's default (Go pgzip) at 0.6x the CPU of zlib's 6. Measured on
 * a Debian + python3 image (168 MB of layers): zlib 6 63.4 MiB in 3.9 s of CPU, 5 63.6 MiB
 * 3.2 s, 4 64.7 MiB 2.5 s, 3 66.5 MiB 2.2 s; buildah 65.4 MiB. On two cores deflate is the
 * wall of an export or a push, so the level is its speed.
 */
export const DEFAULT_GZIP_LEVEL = 4;
/** zstd's own default level. */
export const DEFAULT_ZSTD_LEVEL = 3;
/** ParallelGzip's default block. */
const GZIP_BLOCK = 1024 * 1024;

/** A compression and its level, checked; `key` names the form in store/compressed-layers.ts. */
export interface CompressionChoice {
  readonly compression: LayerCompression;
  readonly level: number | undefined;
  /** `gzip-4`, `zstd-3`, `uncompressed`. */
  readonly key: string;
}

/** Checks a compression and level (USAGE when the level is out of range) and fills in the default level. */
export function compressionChoice(compression: LayerCompression, level?: number): CompressionChoice {
  switch (compression) {
    case 'uncompressed':
      return { compression, level: undefined, key: 'uncompressed' };
    case 'gzip': {
      const l = level ?? DEFAULT_GZIP_LEVEL;
      if (!Number.isInteger(l) || l < 1 || l > 9) throw new TsbuildError('USAGE', `gzip compression level ${String(level)} is not in 1..9`);
      return { compression, level: l, key: `gzip-${l}` };
    }
    case 'zstd': {
      const l = level ?? DEFAULT_ZSTD_LEVEL;
      if (!Number.isInteger(l) || l < 1 || l > 22) throw new TsbuildError('USAGE', `zstd compression level ${String(level)} is not in 1..22`);
      return { compression, level: l, key: `zstd-${l}` };
    }
  }
}

/**
 * The compressor of a layer: gzip on every core (parallel-gzip.ts), zstd in the multi-threaded
 * system program (zstd.ts; node:zlib's when that program is missing and node has one), or none.
 */
export function createLayerCompressor(compression: LayerCompression, level?: number): Transform | Duplex | undefined {
  const c = compressionChoice(compression, level);
  switch (c.compression) {
    case 'uncompressed':
      return undefined;
    case 'gzip':
      return new ParallelGzip({ level: c.level ?? DEFAULT_GZIP_LEVEL });
    case 'zstd': {
      if (zstdProgram() !== undefined) return zstdCompressor(c.level ?? DEFAULT_ZSTD_LEVEL);
      const make = zlibZstd('createZstdCompress');
      if (!make) throw zstdMissing();
      const constants = zlib.constants as unknown as Record<string, number>;
      const key = constants['ZSTD_c_compressionLevel'];
      return make(key === undefined ? {} : { params: { [key]: c.level ?? DEFAULT_ZSTD_LEVEL } });
    }
  }
}

/** A zstd decompressor: the system program, else node:zlib's (Node >= 22.15); UNSUPPORTED when neither. */
export function createZstdDecompressor(): Transform | Duplex {
  if (zstdProgram() !== undefined) return zstdDecompressor();
  const make = zlibZstd('createZstdDecompress');
  if (!make) throw zstdMissing();
  return make();
}

/** UNSUPPORTED (naming the zstd program) when this process can neither compress nor decompress zstd. */
export function assertZstdAvailable(): void {
  if (zstdProgram() === undefined && zlibZstd('createZstdDecompress') === undefined) throw zstdMissing();
}

type ZstdFactory = (opts?: { params?: Record<number, number> }) => Transform;

/** zlib's zstd (node >= 22.15 / 23.8); undefined on node 20. Looked up at run time. */
function zlibZstd(name: 'createZstdCompress' | 'createZstdDecompress'): ZstdFactory | undefined {
  const f = (zlib as unknown as Record<string, unknown>)[name];
  return typeof f === 'function' ? (f as ZstdFactory) : undefined;
}

/**
 * The compressed bytes of a file (a stored layer), as a stream: gzip reads the file into the
 * compressor's own few block buffers (ParallelGzip.takeBlock), 1 MiB per read, so a layer of
 * any size costs no buffer per read; zstd pipes the file through its compressor. A read error
 * or `signal` destroys the stream with that error; destroying the stream stops the reads.
 * `size`: the file's size, if known (a file under a MiB is read into a buffer of its size).
 * `jobs`: gzip blocks deflated at once (ParallelGzipOptions.jobs).
 */
export function compressFile(path: string, compression: 'gzip' | 'zstd', level: number | undefined, opts: { signal?: AbortSignal | undefined; size?: number | undefined; jobs?: number | undefined } = {}): Readable {
  const small = opts.size !== undefined && opts.size < GZIP_BLOCK;
  const compressor =
    compression === 'gzip'
      ? // A file under one block is one block whatever the block size (the same bytes): its
        // buffers are the file's size, not a MiB each (the small layers of an image).
        new ParallelGzip({ level: compressionChoice(compression, level).level ?? DEFAULT_GZIP_LEVEL, ...(small ? { blockSize: Math.max(opts.size ?? 0, 1) } : {}), ...(opts.jobs !== undefined ? { jobs: opts.jobs } : {}) })
      : createLayerCompressor(compression, level);
  if (compressor === undefined) throw new TsbuildError('UNSUPPORTED', `no compressor for ${compression}`);
  if (!(compressor instanceof ParallelGzip)) {
    const src = createReadStream(path, { highWaterMark: 1024 * 1024, ...(opts.signal ? { signal: opts.signal } : {}) });
    src.on('error', (e) => compressor.destroy(e));
    compressor.on('error', () => src.destroy());
    // A fresh buffer per read, dead once passed on.
    src.on('data', (c: string | Buffer) => noteDeadBuffers(c.length));
    src.pipe(compressor);
    return compressor as Readable;
  }
  void readIntoBlocks(path, compressor, opts.signal);
  return compressor;
}

/** Feeds `gz` the file at `path`, read into its pool blocks; ends it, or destroys it with the error. */
async function readIntoBlocks(path: string, gz: ParallelGzip, signal: AbortSignal | undefined): Promise<void> {
  let fh: FileHandle | undefined;
  try {
    fh = await open(path, 'r');
    for (;;) {
      signal?.throwIfAborted();
      if (gz.destroyed) return;
      const block = gz.takeBlock();
      let n = 0;
      while (n < block.length) {
        const { bytesRead } = await fh.read(block, n, block.length - n, null);
        if (bytesRead === 0) break;
        n += bytesRead;
      }
      if (gz.destroyed) return;
      if (n === 0) break;
      const more = gz.write(n === block.length ? block : block.subarray(0, n));
      if (n < block.length) break;
      if (!more) await drained(gz, signal);
    }
    gz.end();
  } catch (e) {
    gz.destroy(e as Error);
  } finally {
    await fh?.close().catch(() => undefined);
  }
}

/** Until `w` drains or closes (destroyed: the caller sees `w.destroyed`); rejects on abort. */
function drained(w: Writable, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    const done = (): void => {
      w.off('drain', ok);
      w.off('close', ok);
      signal?.removeEventListener('abort', aborted);
    };
    const ok = (): void => {
      done();
      resolve();
    };
    const aborted = (): void => {
      done();
      reject(signal?.reason);
    };
    w.on('drain', ok);
    w.on('close', ok);
    signal?.addEventListener('abort', aborted, { once: true });
  });
}

/**
 * Sniffs the compression of a layer stream by its magic bytes (gzip 1f 8b, zstd 28 b5 2f fd;
 * anything else is taken as an uncompressed tar). Returns the raw bytes (the peeked head
 * replayed) and the decompressor to put after them, if any; the caller pipes them.
 */
export async function sniffLayerCompression(
  input: Readable,
  opts: { signal?: AbortSignal | undefined } = {},
): Promise<{ raw: Readable; decompressor: Transform | Duplex | undefined; compression: LayerCompression }> {
  const it = input[Symbol.asyncIterator]() as AsyncIterator<Buffer | string>;
  const head: Buffer[] = [];
  let headLen = 0;
  let done = false;
  while (headLen < 4) {
    if (opts.signal?.aborted) {
      input.destroy();
      opts.signal.throwIfAborted();
    }
    const r = await it.next();
    if (r.done) {
      done = true;
      break;
    }
    const b = typeof r.value === 'string' ? Buffer.from(r.value) : r.value;
    head.push(b);
    headLen += b.length;
  }
  const first = Buffer.concat(head);
  async function* replay(): AsyncGenerator<Buffer> {
    if (first.length > 0) yield first;
    if (done) return;
    for (;;) {
      const r = await it.next();
      if (r.done) return;
      yield typeof r.value === 'string' ? Buffer.from(r.value) : r.value;
    }
  }
  const raw = Readable.from(replay(), { objectMode: false });
  if (first[0] === 0x1f && first[1] === 0x8b) return { raw, decompressor: zlib.createGunzip(), compression: 'gzip' };
  if (first[0] === 0x28 && first[1] === 0xb5 && first[2] === 0x2f && first[3] === 0xfd) {
    try {
      return { raw, decompressor: createZstdDecompressor(), compression: 'zstd' };
    } catch (e) {
      input.destroy();
      throw e;
    }
  }
  return { raw, decompressor: undefined, compression: 'uncompressed' };
}
