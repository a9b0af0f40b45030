import { Readable, type Transform, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import zlib from 'node:zlib';
import { TsbuildError } from '../errors.js';
import { DigestStream, type Digest } from '../oci/index.js';
import { ParallelGzip } from './parallel-gzip.js';
import { wrapWriteError } from './write-layer.js';

export type LayerCompression = 'gzip' | 'zstd' | 'uncompressed';

export interface CompressLayerOptions {
  readonly compression: LayerCompression;
  /** gzip 1..9 (default 6, as docker/containerd via Go's DefaultCompression); zstd 1..22 (default 3). */
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
 * the same bytes. The deflate stream depends on node's bundled zlib: a different node version
 * may compress differently, which is why the compressed digest is remembered per diff ID
 * rather than recomputed (DESIGN.md). gzip runs on every core (parallel-gzip.ts).
 */
export async function compressLayer(input: Readable, out: Writable, opts: CompressLayerOptions): Promise<CompressedLayer> {
  const compressor = createCompressor(opts.compression, opts.level);
  const before = new DigestStream();
  const after = new DigestStream();
  const stages: (Transform | Writable)[] = compressor ? [before, compressor, after, out] : [before, after, out];
  try {
    await pipeline(input, ...(stages as [Transform, ...Writable[]]), opts.signal ? { signal: opts.signal } : {});
  } catch (e) {
    throw wrapWriteError(e);
  }
  const b = before.result();
  const a = after.result();
  return { digest: a.digest, size: a.size, diffId: b.digest, uncompressedSize: b.size };
}

type ZstdFactory = (opts?: { params?: Record<number, number> }) => Transform;

/** zlib's zstd (node >= 22.15 / 23.8); undefined on node 20. Looked up at run time. */
function zstdFactory(name: 'createZstdCompress' | 'createZstdDecompress'): ZstdFactory | undefined {
  const f = (zlib as unknown as Record<string, unknown>)[name];
  return typeof f === 'function' ? (f as ZstdFactory) : undefined;
}

function zstdUnsupported(): TsbuildError {
  return new TsbuildError('UNSUPPORTED', `zstd layers need node >= 22.15 (this is node ${process.versions.node})`, {
    hint: 'use --compression gzip, or run tsbuild on a newer node',
  });
}

function createCompressor(compression: LayerCompression, level: number | undefined): Transform | undefined {
  switch (compression) {
    case 'uncompressed':
      return undefined;
    case 'gzip': {
      const l = level ?? 6;
      if (!Number.isInteger(l) || l < 1 || l > 9) throw new TsbuildError('USAGE', `gzip level ${String(level)} is not in 1..9`);
      return new ParallelGzip({ level: l });
    }
    case 'zstd': {
      const make = zstdFactory('createZstdCompress');
      if (!make) throw zstdUnsupported();
      const l = level ?? 3;
      if (!Number.isInteger(l) || l < 1 || l > 22) throw new TsbuildError('USAGE', `zstd level ${String(level)} is not in 1..22`);
      const constants = zlib.constants as unknown as Record<string, number>;
      const key = constants['ZSTD_c_compressionLevel'];
      return make(key === undefined ? {} : { params: { [key]: l } });
    }
  }
}

/**
 * Sniffs the compression of a layer stream by its magic bytes (gzip 1f 8b, zstd 28 b5 2f fd;
 * anything else is taken as an uncompressed tar). Returns the raw bytes (the peeked head
 * replayed) and the decompressor to put after them, if any; the caller pipes them.
 */
export async function sniffLayerCompression(
  input: Readable,
  opts: { signal?: AbortSignal | undefined } = {},
): Promise<{ raw: Readable; decompressor: Transform | undefined; compression: LayerCompression }> {
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
    const make = zstdFactory('createZstdDecompress');
    if (!make) {
      input.destroy();
      throw zstdUnsupported();
    }
    return { raw, decompressor: make(), compression: 'zstd' };
  }
  return { raw, decompressor: undefined, compression: 'uncompressed' };
}
