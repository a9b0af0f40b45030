import { createReadStream } from 'node:fs';
import { Readable, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { TsbuildError, isAbortError } from '../errors.js';
import { DigestStream, type Digest } from '../oci/index.js';
import { END_OF_ARCHIVE, encodeHeader, padding, type TypeFlag } from './tar-header.js';

/**
 * One entry of a layer, as the caller wants it in the tar. The caller controls content and
 * metadata; the writer only orders, encodes and checks.
 *
 * - `path`: relative, slash-separated, no `.`/`..`/empty components (a leading `/` or `./` and a
 *   trailing `/` are tolerated and removed). For `whiteout` it is the path being deleted
 *   (written as `DIR/.wh.NAME`); for `opaque` the directory made opaque (`DIR/.wh..wh..opq`).
 * - `mode`: permission bits including setuid/setgid/sticky (07777); type bits are ignored.
 * - `mtime`: seconds since the epoch; fractions are dropped (docker truncates to seconds too).
 * - `size` + `source`: regular files only; `source` is opened when the entry is written and must
 *   yield exactly `size` bytes. Its chunks are passed on as they are (see layerTarChunks for when
 *   a source may reuse them). Or `sourcePath` instead: the file is read from there (fileContent),
 *   which saves a closure per file to a caller with tens of thousands of them (a RUN's layer).
 *   A file without either must have size 0 (or none).
 * - `linkTarget`: symlink target (verbatim) or hard-link target (a layer path, normalised like
 *   `path`).
 * - `xattrs`: written as PAX `SCHILY.xattr.NAME` records.
 */
export interface LayerEntry {
  readonly path: string;
  readonly type: LayerEntryType;
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
  readonly uname?: string | undefined;
  readonly gname?: string | undefined;
  readonly mtime: number;
  readonly size?: number | undefined;
  readonly linkTarget?: string | undefined;
  readonly devmajor?: number | undefined;
  readonly devminor?: number | undefined;
  readonly xattrs?: Readonly<Record<string, Buffer>> | undefined;
  readonly source?: (() => Readable | AsyncIterable<Uint8Array> | Iterable<Uint8Array> | Promise<Readable | AsyncIterable<Uint8Array>>) | undefined;
  /** A host file with the content, when there is no `source`. */
  readonly sourcePath?: string | undefined;
}

export type LayerEntryType = 'file' | 'dir' | 'symlink' | 'hardlink' | 'char' | 'block' | 'fifo' | 'whiteout' | 'opaque';

export interface WriteLayerOptions {
  /** SOURCE_DATE_EPOCH: every mtime becomes min(mtime, epoch). */
  readonly sourceDateEpoch?: number | undefined;
  readonly signal?: AbortSignal | undefined;
  /**
   * How the content of `sourcePath` entries is read (default fileContent, a read stream). One
   * that reuses its buffers (recycledFileReader) is for layerTarChunks only (see there).
   */
  readonly readFile?: ((abs: string, size: number) => Readable | Iterable<Uint8Array>) | undefined;
}

export interface WrittenLayer {
  /** sha256 of the uncompressed tar (the OCI diff ID). */
  readonly diffId: Digest;
  /** Bytes of the uncompressed tar. */
  readonly size: number;
}

export const WHITEOUT_PREFIX = '.wh.';
export const OPAQUE_WHITEOUT = '.wh..wh..opq';

/**
 * Writes `entries` as an uncompressed, deterministic layer tar to `out` and ends `out`.
 *
 * Determinism contract: the bytes depend only on the entries' fields and content (and
 * `sourceDateEpoch`), never on input order, the clock or the host. Entries are sorted by path
 * components in byte order (parents before children; an opaque marker right after its directory,
 * before the directory's children, so appliers see it first as containerd expects); no
 * atime/ctime; uname/gname empty unless given; the archive ends with two zero blocks, no record
 * padding (as Go's archive/tar, hence docker and containerd).
 *
 * Metadata of all entries is held in memory to sort it; content is streamed with backpressure,
 * so memory stays flat however big the files are.
 */
export async function writeLayer(
  entries: AsyncIterable<LayerEntry> | Iterable<LayerEntry>,
  out: Writable,
  opts: WriteLayerOptions = {},
): Promise<WrittenLayer> {
  const digest = new DigestStream();
  try {
    await pipeline(layerTarStream(entries, opts), digest, out, opts.signal ? { signal: opts.signal } : {});
  } catch (e) {
    throw wrapWriteError(e);
  }
  const r = digest.result();
  return { diffId: r.digest, size: r.size };
}

/** The layer tar as a byte stream (what `writeLayer` pipes to its output). */
export function layerTarStream(entries: AsyncIterable<LayerEntry> | Iterable<LayerEntry>, opts: WriteLayerOptions = {}): Readable {
  return Readable.from(generateTar(entries, opts), { objectMode: false, highWaterMark: 64 * 1024 });
}

/**
 * The layer tar as chunks, for a consumer that finishes with each chunk before it asks for the
 * next (BlobStore.putChunks). Content chunks are the sources' own: a source's next chunk is
 * asked for only when the consumer asks for the chunk after the one it yielded, so with such a
 * consumer a source may reuse a chunk's memory once it is asked for the next. Errors are those
 * of writeLayer (LAYER_INVALID, LAYER_IO, aborts).
 */
export async function* layerTarChunks(entries: AsyncIterable<LayerEntry> | Iterable<LayerEntry>, opts: WriteLayerOptions = {}): AsyncGenerator<Buffer> {
  try {
    yield* generateTar(entries, opts);
  } catch (e) {
    throw wrapWriteError(e);
  }
}

/**
 * A file's content as a layer entry's source: read in buffers no bigger than the file, at most
 * `maxChunk`. A read stream's buffers are its high-water mark in size, 64 KiB by default, each
 * allocated afresh; a RUN that wrote 50,000 files of 1-20 KiB had gigabytes of such buffers
 * pass through, and the process grew by their fragments. `size` is what the entry says: a file
 * that grew since is still read to its end, and writeLayer refuses it.
 */
export function fileContent(abs: string, size: number, maxChunk = 64 * 1024): Readable {
  return createReadStream(abs, { highWaterMark: Math.max(1, Math.min(size, maxChunk)) });
}

export function wrapWriteError(e: unknown): unknown {
  if (e instanceof TsbuildError || isAbortError(e)) return e;
  const err = e as NodeJS.ErrnoException;
  return new TsbuildError('LAYER_IO', `writing the layer failed: ${err.message ?? String(e)}`, { cause: e });
}

interface Prepared {
  entry: LayerEntry;
  /** The name in the tar. */
  readonly name: string;
  /**
   * The sort key: the path as it is ordered in the tar, compared component by component in
   * UTF-8 byte order by compareKeys ('/' sorts before every other character). A string, most
   * often the entry's own path, rather than a Buffer per entry: a layer of 20,000 files held
   * 20,000 Buffer objects for this.
   */
  readonly key: string;
}

/**
 * Order of two sort keys: the byte order of their UTF-8 encodings with every '/' read as NUL,
 * i.e. component-wise order (the order of Buffer.compare on keys joined with NUL), without
 * encoding them. UTF-16 code units compare like UTF-8 bytes except that surrogates (characters
 * above U+FFFF) must sort after U+E000..U+FFFF, hence the shift.
 */
function compareKeys(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    let x = a.charCodeAt(i);
    let y = b.charCodeAt(i);
    if (x === y) continue;
    x = x === 0x2f ? -1 : x >= 0xd800 ? (x >= 0xe000 ? x - 0x800 : x + 0x2000) : x;
    y = y === 0x2f ? -1 : y >= 0xd800 ? (y >= 0xe000 ? y - 0x800 : y + 0x2000) : y;
    return x - y;
  }
  return a.length - b.length;
}

async function* generateTar(entries: AsyncIterable<LayerEntry> | Iterable<LayerEntry>, opts: WriteLayerOptions): AsyncGenerator<Buffer> {
  const signal = opts.signal;
  const prepared: Prepared[] = [];
  for await (const entry of entries) {
    signal?.throwIfAborted();
    prepared.push(prepare(entry));
  }
  prepared.sort((a, b) => compareKeys(a.key, b.key));
  for (let i = 1; i < prepared.length; i++) {
    const prev = prepared[i - 1];
    const cur = prepared[i];
    if (prev && cur && prev.key === cur.key) {
      throw new TsbuildError('LAYER_INVALID', `layer entry ${JSON.stringify(cur.name)} appears twice`);
    }
  }
  reorderHardlinks(prepared);
  const epoch = opts.sourceDateEpoch;
  for (const p of prepared) {
    signal?.throwIfAborted();
    const e = p.entry;
    const size = e.type === 'file' ? (e.size ?? 0) : 0;
    if (!Number.isSafeInteger(size) || size < 0) {
      throw new TsbuildError('LAYER_INVALID', `layer entry ${JSON.stringify(e.path)} has an invalid size ${String(e.size)}`);
    }
    let mtime = Math.floor(e.mtime);
    if (epoch !== undefined) mtime = Math.min(mtime, Math.floor(epoch));
    if (!Number.isFinite(mtime) || mtime < 0) mtime = 0; // pre-1970 times are not worth a base-256 field
    checkId(e, 'uid', e.uid);
    checkId(e, 'gid', e.gid);
    let linkname = '';
    if (e.type === 'symlink') linkname = e.linkTarget ?? '';
    if (e.type === 'hardlink') linkname = normaliseLayerPath(e.linkTarget ?? '', e.path);
    if ((e.type === 'symlink' || e.type === 'hardlink') && linkname === '') {
      throw new TsbuildError('LAYER_INVALID', `layer entry ${JSON.stringify(e.path)} is a ${e.type} without a target`);
    }
    let extraPax: Map<string, Buffer> | undefined;
    if (e.xattrs && e.type !== 'whiteout' && e.type !== 'opaque') {
      for (const [k, v] of Object.entries(e.xattrs)) {
        if (k === '' || k.includes('=') || k.includes('\0')) {
          throw new TsbuildError('LAYER_INVALID', `layer entry ${JSON.stringify(e.path)} has an invalid xattr name ${JSON.stringify(k)}`);
        }
        (extraPax ??= new Map()).set(`SCHILY.xattr.${k}`, v);
      }
    }
    const isDevice = e.type === 'char' || e.type === 'block';
    yield encodeHeader({
      name: p.name,
      typeflag: typeFlagOf(e.type),
      mode: e.mode & 0o7777,
      uid: e.uid,
      gid: e.gid,
      size,
      mtime,
      linkname,
      uname: e.uname ?? '',
      gname: e.gname ?? '',
      devmajor: isDevice ? (e.devmajor ?? 0) : 0,
      devminor: isDevice ? (e.devminor ?? 0) : 0,
      ...(extraPax ? { extraPax } : {}),
    });
    if (e.type !== 'file') continue;
    if (!e.source && e.sourcePath === undefined) {
      if (size !== 0) throw new TsbuildError('LAYER_INVALID', `layer entry ${JSON.stringify(e.path)} has size ${size} but no content source`);
      continue;
    }
    let written = 0;
    const stream = e.source ? await e.source() : (opts.readFile ?? fileContent)(e.sourcePath!, size);
    const take = (chunk: Uint8Array | string): Buffer => {
      const buf = typeof chunk === 'string' ? Buffer.from(chunk) : Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
      written += buf.length;
      if (written > size) {
        throw new TsbuildError('LAYER_INVALID', `content of ${JSON.stringify(e.path)} is longer than its size ${size}`, {
          hint: 'the file changed while the layer was written',
        });
      }
      return buf;
    };
    // A source that gives its chunks synchronously (ReadAhead) is iterated without a promise per chunk.
    if (Symbol.iterator in stream) for (const chunk of stream as Iterable<Uint8Array | string>) yield take(chunk);
    else for await (const chunk of stream as AsyncIterable<Uint8Array | string>) yield take(chunk);
    if (written !== size) {
      throw new TsbuildError('LAYER_INVALID', `content of ${JSON.stringify(e.path)} is ${written} bytes, expected ${size}`, {
        hint: 'the file changed while the layer was written',
      });
    }
    const pad = padding(size);
    if (pad.length > 0) yield pad;
  }
  yield END_OF_ARCHIVE;
}

/**
 * A tar hard link must come after the file it names (readers link to what they already
 * extracted). Sorting can put a link before its target, so within each group of names for one
 * file (a regular file entry plus the hard links that lead to it), the first name in tar order
 * becomes the file, carrying the file entry's content and metadata, and the others link to it.
 * Links to files not in this layer are left alone.
 */
function reorderHardlinks(prepared: Prepared[]): void {
  const byPath = new Map<string, Prepared>();
  for (const p of prepared) if (p.entry.type === 'file' || p.entry.type === 'hardlink') byPath.set(normaliseLayerPath(p.entry.path), p);
  const groups = new Map<Prepared, Prepared[]>(); // file entry -> its links, in tar order
  for (const p of prepared) {
    if (p.entry.type !== 'hardlink') continue;
    let target = byPath.get(normaliseLayerPath(p.entry.linkTarget ?? '', p.entry.path));
    const seen = new Set<Prepared>([p]);
    while (target && target.entry.type === 'hardlink' && !seen.has(target)) {
      seen.add(target);
      target = byPath.get(normaliseLayerPath(target.entry.linkTarget ?? '', target.entry.path));
    }
    if (!target || target.entry.type !== 'file') continue;
    const g = groups.get(target) ?? [];
    g.push(p);
    groups.set(target, g);
  }
  const order = new Map(prepared.map((p, i) => [p, i]));
  for (const [file, links] of groups) {
    const all = [file, ...links].sort((a, b) => (order.get(a) ?? 0) - (order.get(b) ?? 0));
    const first = all[0] as Prepared;
    const firstPath = normaliseLayerPath(first.entry.path);
    const content = file.entry;
    for (const p of all) {
      if (p === first) p.entry = { ...content, path: first.entry.path };
      else p.entry = { ...content, path: p.entry.path, type: 'hardlink', linkTarget: firstPath, size: 0, source: undefined, sourcePath: undefined };
    }
  }
}

function checkId(e: LayerEntry, what: string, v: number): void {
  if (!Number.isSafeInteger(v) || v < 0) {
    throw new TsbuildError('LAYER_INVALID', `layer entry ${JSON.stringify(e.path)} has an invalid ${what} ${String(v)}`);
  }
}

function typeFlagOf(t: LayerEntryType): TypeFlag {
  switch (t) {
    case 'file':
    case 'whiteout':
    case 'opaque':
      return '0';
    case 'hardlink':
      return '1';
    case 'symlink':
      return '2';
    case 'char':
      return '3';
    case 'block':
      return '4';
    case 'dir':
      return '5';
    case 'fifo':
      return '6';
  }
}

/** "./a/b/" and "/a/b" -> "a/b"; rejects "", ".", ".." and empty components. */
function normaliseLayerPath(p: string, entryPath: string = p): string {
  let s = p;
  while (s.startsWith('./')) s = s.slice(2);
  while (s.startsWith('/')) s = s.slice(1);
  while (s.endsWith('/')) s = s.slice(0, -1);
  const parts = s.split('/');
  if (s === '' || parts.some((c) => c === '' || c === '.' || c === '..' || c.includes('\0'))) {
    throw new TsbuildError('LAYER_INVALID', `layer entry ${JSON.stringify(entryPath)} has an invalid path ${JSON.stringify(p)}`, {
      hint: 'layer paths are relative, slash-separated, without "." or ".." components',
    });
  }
  return s;
}

function prepare(entry: LayerEntry): Prepared {
  const path = normaliseLayerPath(entry.path);
  switch (entry.type) {
    case 'whiteout': {
      const slash = path.lastIndexOf('/');
      const base = path.slice(slash + 1);
      if (base.startsWith(WHITEOUT_PREFIX)) {
        throw new TsbuildError('LAYER_INVALID', `cannot white out ${JSON.stringify(path)}: the name itself starts with ${WHITEOUT_PREFIX}`);
      }
      const name = `${path.slice(0, slash + 1)}${WHITEOUT_PREFIX}${base}`;
      return { entry, name, key: name };
    }
    case 'opaque':
      // An empty last component sorts before every real child name, so the marker directly
      // follows its directory.
      return { entry, name: `${path}/${OPAQUE_WHITEOUT}`, key: `${path}/` };
    case 'dir':
      return { entry, name: `${path}/`, key: path };
    default:
      return { entry, name: path, key: path };
  }
}
