import { closeSync, fstatSync, openSync, readFileSync, statSync } from 'node:fs';
import { mkdir, open, readdir, rename, rm, unlink, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { TsbuildError } from '../errors.js';
import {
  digestAlgorithm,
  digestBytes,
  digestHex,
  Digester,
  DigestStream,
  isDigest,
  sha256Digest,
  type Digest,
} from '../oci/index.js';
import { errnoCode, fsyncDir, storeIoError, tempPath } from './atomic-file.js';

/** What a stored blob is: its digest and length in bytes. */
export interface BlobInfo {
  readonly digest: Digest;
  readonly size: number;
}

/** The digest (and, when known, size) a blob must have, usually from a descriptor. */
export interface ExpectedBlob {
  readonly digest: Digest;
  readonly size?: number | undefined;
}

export interface PutBlobOptions {
  readonly expected?: ExpectedBlob | undefined;
  readonly signal?: AbortSignal | undefined;
  /**
   * putBlob: called with the digest and size once the last byte is hashed and checked, before
   * the file is fsynced and renamed into place (a push finishes its upload meanwhile). The blob
   * is in the store only when putBlob resolves.
   */
  readonly onHashed?: ((info: BlobInfo) => void) | undefined;
  /**
   * putBlob: the source checks its own bytes against `expected` (digest and size) while they
   * stream, and fails instead of ending when they do not match (registry/ downloadBlob), so
   * they are not hashed a second time here: the blob is `expected` once the source ends with
   * exactly `expected.size` bytes. Ignored without an expected size.
   */
  readonly sourceVerified?: boolean | undefined;
}

export interface ReadBlobOptions {
  /** Refuse (BLOB_TOO_LARGE) a blob bigger than this; the caller knows what it expects. */
  readonly maxBytes: number;
  readonly signal?: AbortSignal | undefined;
}

/**
 * Content-addressed blobs under `blobs/<alg>/<hex>` of an OCI image layout
 * (image-layout.md#blobs).
 *
 * Write path (STYLE.md 5, as containerd's content store and pnpm's CAFS): stream into a temp
 * file in the store's tmp/ while hashing, verify against the expected digest and size, fsync,
 * rename into place, fsync the directory. Nothing is visible under blobs/ until verified; on
 * error or abort the temp file is removed. Two writers of the same digest are not an error:
 * both renames put identical bytes in place, the last one wins. Blob writes take no lock.
 *
 * Blob files are created read-only (0444): they are immutable by name, and this keeps a
 * stray `>` or an editor from silently corrupting one.
 *
 * Only sha256 blobs are written (node:crypto via oci/digest.ts); sha512 names are accepted
 * for reading because the layout allows them.
 */
export class BlobStore {
  readonly #blobsDir: string;
  readonly #tmpDir: string;

  constructor(paths: { readonly blobsDir: string; readonly tmpDir: string }) {
    this.#blobsDir = paths.blobsDir;
    this.#tmpDir = paths.tmpDir;
  }

  /** Where a blob lives (whether or not it exists). */
  blobPath(d: Digest): string {
    return join(this.#blobsDir, digestAlgorithm(d), digestHex(d));
  }

  async hasBlob(d: Digest): Promise<boolean> {
    return (await this.statBlob(d)) !== undefined;
  }

  /** Size and modification time, or undefined if the blob is not in the store. */
  async statBlob(d: Digest): Promise<{ size: number; mtimeMs: number } | undefined> {
    try {
      // Synchronous (atomic-file.ts): one stat, made for every layer a cached build reuses.
      const st = statSync(this.blobPath(d));
      return st.isFile() ? { size: st.size, mtimeMs: st.mtimeMs } : undefined;
    } catch (e) {
      if (errnoCode(e) === 'ENOENT') return undefined;
      throw e;
    }
  }

  /**
   * Store the bytes of `source`, verifying them against `opts.expected` if given.
   * Consumes `source` to its end (or destroys it on error/abort). Callers that only want to
   * avoid a download check `hasBlob` first.
   */
  async putBlob(source: Readable | AsyncIterable<Uint8Array>, opts: PutBlobOptions = {}): Promise<BlobInfo> {
    const { expected, signal } = opts;
    // A stream may fail while the temp file is being opened, before pipeline listens: that
    // error must reach pipeline (which reads the stream's errored state), not become an
    // uncaught exception. Seen in CI: a registry's 404 arriving during the open.
    if (source instanceof Readable) source.on('error', ignoreError);
    const abandon = (e: unknown): never => {
      if (source instanceof Readable) source.destroy();
      throw e;
    };
    if (expected) {
      try {
        assertWritable(expected.digest);
      } catch (e) {
        abandon(e);
      }
    }
    if (signal?.aborted === true) abandon(signal.reason);

    const tmp = tempPath(this.#tmpDir, 'blob');
    let h: FileHandle | undefined = await open(tmp, 'wx', 0o444).catch((e: unknown) => abandon(storeIoError(e, 'store a blob')));
    // An early datasync in flight (below); it never rejects.
    let early: Promise<void> | undefined;
    try {
      const trusted = opts.sourceVerified === true && expected?.size !== undefined ? expected : undefined;
      const hasher = trusted === undefined ? new DigestStream() : undefined;
      let written = 0;
      let sinkError: unknown;
      // Chunks smaller than this are gathered and written together: a download arrives in the
      // socket's 64 KiB reads, and one write (a thread-pool trip) each cost a pull of 228 MB
      // 2,756 writes and, on a busy machine, the main thread's turn (PUT_GATHER).
      const pending = Buffer.allocUnsafeSlow(PUT_GATHER);
      let used = 0;
      // The file's data goes to disk while it is still arriving (EARLY_SYNC), so the fsync
      // that seals it has little left to write.
      let unsynced = 0;
      const noteWritten = (n: number): void => {
        unsynced += n;
        if (unsynced < EARLY_SYNC || early !== undefined) return;
        unsynced = 0;
        early = (h as FileHandle).datasync().then(
          () => {
            early = undefined;
          },
          () => {
            early = undefined; // the sealing fsync reports a failing disk
          },
        );
      };
      const flush = async (): Promise<void> => {
        if (used === 0) return;
        const n = used;
        used = 0;
        await writeAll(h as FileHandle, pending.subarray(0, n));
        noteWritten(n);
      };
      const sink = async (chunks: AsyncIterable<Buffer>): Promise<void> => {
        for await (const chunk of chunks) {
          written += chunk.byteLength;
          // Stop early rather than download gigabytes for a descriptor that says 1 KiB.
          if (expected?.size !== undefined && written > expected.size) {
            // Remembered: pipeline may report the AbortError of tearing down the other
            // stages instead of the error that caused it.
            sinkError = mismatch(expected, `more than ${expected.size} bytes`);
            throw sinkError;
          }
          try {
            if (chunk.byteLength < PUT_GATHER) {
              if (used + chunk.byteLength > pending.byteLength) await flush();
              pending.set(chunk, used);
              used += chunk.byteLength;
            } else {
              await flush();
              await writeAll(h as FileHandle, chunk);
              noteWritten(chunk.byteLength);
            }
          } catch (e) {
            sinkError = e; // a full disk must be reported as such, not as the teardown's AbortError
            throw e;
          }
        }
        try {
          await flush();
        } catch (e) {
          sinkError = e;
          throw e;
        }
      };
      await (hasher !== undefined ? pipeline(source, hasher, sink, signal ? { signal } : {}) : pipeline(source, sink, signal ? { signal } : {})).catch((e: unknown) => {
        throw sinkError ?? e;
      });
      const got = hasher !== undefined ? hasher.result() : { digest: trusted!.digest, size: written };
      await early;
      await this.#seal(h, tmp, got, expected, opts.onHashed);
      h = undefined;
      return got;
    } catch (e) {
      await early;
      await h?.close().catch(() => undefined);
      await rm(tmp, { force: true });
      throw storeIoError(e, 'store a blob');
    }
  }

  /**
   * The end of putBlob and putChunks: `got` must be what was `expected`; then the temp file is
   * fsynced, closed and renamed into place (#commit). The caller removes `tmp` on failure.
   */
  async #seal(h: FileHandle, tmp: string, got: BlobInfo, expected: PutBlobOptions['expected'], onHashed?: PutBlobOptions['onHashed']): Promise<void> {
    if (expected && (got.digest !== expected.digest || (expected.size !== undefined && got.size !== expected.size))) {
      throw mismatch(expected, `${got.digest} (${got.size} bytes)`);
    }
    onHashed?.(got);
    await h.sync();
    await h.close();
    await this.#commit(tmp, got.digest);
  }

  /**
   * Store the chunks of `chunks`, with the same guarantees as putBlob, consuming them one at a
   * time: each chunk is hashed and copied out before the next one is asked for. A producer may
   * therefore reuse a chunk's memory as soon as it is asked for the next chunk (the layer
   * writer reads context files into a few recycled buffers this way, so a COPY of many files
   * does not leave a trail of garbage buffers).
   *
   * Chunks are gathered into one of two buffers of GATHER bytes; a full one is written while
   * the other fills, so the file system's work (one thread-pool write per 256 KiB, not one per
   * tar header or small file) overlaps with reading and hashing the next chunks. Written
   * strictly one after the other (each write waits for the one before to finish), at most
   * 2 * GATHER bytes held.
   */
  async putChunks(chunks: AsyncIterable<Uint8Array>, opts: PutBlobOptions = {}): Promise<BlobInfo> {
    const { expected, signal } = opts;
    if (expected) assertWritable(expected.digest);
    signal?.throwIfAborted();
    const tmp = tempPath(this.#tmpDir, 'blob');
    let h: FileHandle | undefined = await open(tmp, 'wx', 0o444).catch((e: unknown) => {
      throw storeIoError(e, 'store a blob');
    });
    const file = h;
    // The write in flight, if any; its failure is seen when it is waited for, never unhandled.
    let inflight: Promise<void> | undefined;
    try {
      const digester = new Digester();
      const buffers = [Buffer.allocUnsafeSlow(GATHER), Buffer.allocUnsafeSlow(GATHER)] as const;
      let cur = 0;
      let used = 0;
      const flush = async (): Promise<void> => {
        if (used === 0) return;
        const data = buffers[cur]!.subarray(0, used);
        if (inflight) await inflight;
        const w = writeAll(file, data);
        w.catch(() => undefined);
        inflight = w;
        cur ^= 1;
        used = 0;
      };
      for await (const chunk of chunks) {
        signal?.throwIfAborted();
        digester.update(chunk);
        if (expected?.size !== undefined && digester.size > expected.size) throw mismatch(expected, `more than ${expected.size} bytes`);
        for (let off = 0; off < chunk.byteLength; ) {
          const n = Math.min(GATHER - used, chunk.byteLength - off);
          buffers[cur]!.set(chunk.subarray(off, off + n), used);
          used += n;
          off += n;
          if (used === GATHER) await flush();
        }
      }
      await flush();
      if (inflight) await inflight;
      inflight = undefined;
      signal?.throwIfAborted();
      const got = { digest: digester.digest(), size: digester.size };
      await this.#seal(h, tmp, got, expected);
      h = undefined;
      return got;
    } catch (e) {
      await inflight?.catch(() => undefined);
      await h?.close().catch(() => undefined);
      await rm(tmp, { force: true });
      throw storeIoError(e, 'store a blob');
    }
  }

  /** Store a small in-memory blob (manifests, configs). Same guarantees as putBlob. */
  async putBytes(bytes: Uint8Array | string, opts: PutBlobOptions = {}): Promise<BlobInfo> {
    const { expected, signal } = opts;
    if (expected) assertWritable(expected.digest);
    signal?.throwIfAborted();
    const data = typeof bytes === 'string' ? Buffer.from(bytes, 'utf8') : bytes;
    const got: BlobInfo = { digest: sha256Digest(data), size: data.byteLength };
    if (expected && (got.digest !== expected.digest || (expected.size !== undefined && got.size !== expected.size))) {
      throw mismatch(expected, `${got.digest} (${got.size} bytes)`);
    }
    const tmp = tempPath(this.#tmpDir, 'blob');
    try {
      const h = await open(tmp, 'wx', 0o444);
      try {
        await h.writeFile(data, signal ? { signal } : {});
        await h.sync();
      } finally {
        await h.close();
      }
      await this.#commit(tmp, got.digest);
    } catch (e) {
      await rm(tmp, { force: true });
      throw storeIoError(e, 'store a blob');
    }
    return got;
  }

  async #commit(tmp: string, d: Digest): Promise<void> {
    const dest = this.blobPath(d);
    const dir = join(dest, '..');
    try {
      await rename(tmp, dest);
    } catch (e) {
      if (errnoCode(e) !== 'ENOENT') throw e;
      // blobs/<alg>/ missing (first sha512 blob, or removed by hand): create and retry once.
      await mkdir(dir, { recursive: true });
      await rename(tmp, dest);
    }
    await fsyncDir(dir);
  }

  /**
   * A stream of the blob's bytes. The file is opened before this returns, so a missing blob
   * is reported here (BLOB_NOT_FOUND) and a concurrent gc unlinking it cannot cut the read
   * short. The caller must consume or destroy the stream.
   */
  async openBlob(d: Digest, opts: { readonly signal?: AbortSignal | undefined; readonly highWaterMark?: number | undefined } = {}): Promise<Readable> {
    opts.signal?.throwIfAborted();
    const h = await this.#open(d);
    return h.createReadStream({ autoClose: true, ...(opts.highWaterMark !== undefined ? { highWaterMark: opts.highWaterMark } : {}) });
  }

  /** The blob's file, open for reading (BLOB_NOT_FOUND as openBlob); the caller closes it. */
  async openBlobHandle(d: Digest, opts: { readonly signal?: AbortSignal | undefined } = {}): Promise<FileHandle> {
    opts.signal?.throwIfAborted();
    return this.#open(d);
  }

  /**
   * The whole blob in memory, for small JSON documents only. Refuses blobs over
   * `maxBytes` (BLOB_TOO_LARGE) and re-checks the digest, since these bytes are about to be
   * trusted as a manifest or config (STORE_CORRUPT if the file does not match its name).
   */
  async readBlobBytes(d: Digest, opts: ReadBlobOptions): Promise<Buffer> {
    opts.signal?.throwIfAborted();
    // Synchronous (atomic-file.ts): manifests and configs are a few KB.
    const fd = this.#openSync(d);
    let data: Buffer;
    try {
      const { size } = fstatSync(fd);
      if (size > opts.maxBytes) {
        throw new TsbuildError('BLOB_TOO_LARGE', `blob ${d} is ${size} bytes, more than the ${opts.maxBytes} allowed here`, {
          hint: 'manifests and configs are small JSON documents; this blob is probably not one',
        });
      }
      data = readFileSync(fd);
    } finally {
      closeSync(fd);
    }
    if (digestBytes(data, digestAlgorithm(d)) !== d) {
      throw new TsbuildError('STORE_CORRUPT', `blob ${d} does not match its digest`, {
        hint: `the file ${this.blobPath(d)} was modified or damaged; run fsck, delete it and pull or build again`,
      });
    }
    return data;
  }

  /** readBlobBytes + JSON.parse; invalid JSON is MANIFEST_INVALID. */
  async readBlobJson(d: Digest, opts: ReadBlobOptions): Promise<unknown> {
    const bytes = await this.readBlobBytes(d, opts);
    try {
      return JSON.parse(bytes.toString('utf8')) as unknown;
    } catch (e) {
      throw new TsbuildError('MANIFEST_INVALID', `blob ${d} is not valid JSON`, { cause: e });
    }
  }

  /** Re-hash a stored blob. `ok` is false when the content does not match the name. */
  async verifyBlob(
    d: Digest,
    opts: { readonly signal?: AbortSignal | undefined } = {},
  ): Promise<{ ok: boolean; actual: Digest; size: number }> {
    if (digestAlgorithm(d) !== 'sha256') {
      throw new TsbuildError('UNSUPPORTED', `cannot verify ${d}: only sha256 blobs can be hashed`);
    }
    const stream = await this.openBlob(d, opts);
    const digester = new Digester();
    await pipeline(
      stream,
      async (chunks: AsyncIterable<Buffer>) => {
        for await (const c of chunks) digester.update(c);
      },
      opts.signal ? { signal: opts.signal } : {},
    );
    const actual = digester.digest();
    return { ok: actual === d, actual, size: digester.size };
  }

  /** Remove a blob; false if it was not there. Not locked: gc and callers own that decision. */
  async deleteBlob(d: Digest): Promise<boolean> {
    try {
      await unlink(this.blobPath(d));
      return true;
    } catch (e) {
      if (errnoCode(e) === 'ENOENT') return false;
      throw e;
    }
  }

  /**
   * Every blob whose file name is a valid digest, sorted. Files with other names under
   * blobs/ are not blobs (fsck reports them).
   */
  async listBlobs(): Promise<Digest[]> {
    const out: Digest[] = [];
    for (const alg of ['sha256', 'sha512'] as const) {
      for (const name of await readdirOrEmpty(join(this.#blobsDir, alg))) {
        const d = `${alg}:${name}`;
        if (isDigest(d)) out.push(d);
      }
    }
    return out.sort();
  }

  /** Names under blobs/<alg>/ that are not valid digests (fsck). */
  async listStrayBlobFiles(): Promise<string[]> {
    const out: string[] = [];
    for (const alg of ['sha256', 'sha512'] as const) {
      for (const name of await readdirOrEmpty(join(this.#blobsDir, alg))) {
        if (!isDigest(`${alg}:${name}`)) out.push(join(this.#blobsDir, alg, name));
      }
    }
    return out;
  }

  async #open(d: Digest): Promise<FileHandle> {
    try {
      return await open(this.blobPath(d), 'r');
    } catch (e) {
      throw this.#openError(d, e);
    }
  }

  #openSync(d: Digest): number {
    try {
      return openSync(this.blobPath(d), 'r');
    } catch (e) {
      throw this.#openError(d, e);
    }
  }

  #openError(d: Digest, e: unknown): unknown {
    if (errnoCode(e) !== 'ENOENT') return e;
    return new TsbuildError('BLOB_NOT_FOUND', `blob ${d} is not in the store`, { hint: 'pull or build the image again', cause: e });
  }
}

async function readdirOrEmpty(dir: string): Promise<string[]> {
  try {
    return await readdir(dir);
  } catch (e) {
    if (errnoCode(e) === 'ENOENT') return [];
    throw e;
  }
}

/** putChunks gathers chunks into buffers of this size, each one write. */
const GATHER = 256 * 1024;

/**
 * putBlob gathers chunks smaller than this into one write. A pull of 3 layers of 76 MB: 2,756
 * writes of the socket's 64 KiB pieces took 0.27-0.36 s of system CPU, 228 writes of 1 MiB
 * 0.22-0.28 s (medians of 4 on a loaded machine; 4 MiB was no better and 10 MB more RSS).
 */
const PUT_GATHER = 1024 * 1024;

/**
 * A blob being written is synced to disk (fdatasync, in the background) after each this many
 * bytes, so the fsync that seals it has at most this much left to write.
 */
const EARLY_SYNC = 16 * 1024 * 1024;

async function writeAll(h: FileHandle, chunk: Uint8Array): Promise<void> {
  let off = 0;
  while (off < chunk.byteLength) {
    const { bytesWritten } = await h.write(chunk, off, chunk.byteLength - off);
    off += bytesWritten;
  }
}

function assertWritable(d: Digest): void {
  if (digestAlgorithm(d) !== 'sha256') {
    throw new TsbuildError('UNSUPPORTED', `cannot store blob ${d}: only sha256 digests are supported`, {
      hint: 'tsbuild verifies blobs with sha256; sha512 content is not supported yet',
    });
  }
}

function mismatch(expected: ExpectedBlob, got: string): TsbuildError {
  const want = expected.size === undefined ? expected.digest : `${expected.digest} (${expected.size} bytes)`;
  return new TsbuildError('DIGEST_MISMATCH', `content does not match its descriptor: expected ${want}, got ${got}`, {
    hint: 'the source sent different bytes than its descriptor names; nothing was stored',
  });
}

/** An error listener that only keeps a stream's error from being uncaught; the error itself
 *  reaches whoever consumes the stream (pipeline reads the errored state). */
function ignoreError(): void {}
