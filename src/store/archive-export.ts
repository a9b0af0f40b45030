import { setMaxListeners } from 'node:events';
import { createWriteStream } from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import pLimit from 'p-limit';
import { TsbuildError, isAbortError } from '../errors.js';
import { canonicalJson } from '../oci/index.js';
import { digestBytes, digestHex, type Digest, type Platform } from '../oci/index.js';
import { OCI_IMAGE_INDEX, OCI_IMAGE_MANIFEST, type LayerCompression } from '../oci/index.js';
import type { Descriptor, ImageIndex, ImageManifest } from '../oci/index.js';
import { END_OF_ARCHIVE, encodeHeader, noteDeadBuffers, padding } from '../layer/index.js';
import { compressedLayerForm } from './compressed-layers.js';
import type { Store } from './store.js';
import type { StoredImage } from './stored-image.js';

/** An image of the store to export, with the names it is exported under. */
export interface ExportImage extends StoredImage {
  /** Full references (docker.io/library/app:v2); may be empty. */
  readonly names: readonly string[];
  /** Annotations for the manifest's descriptor in index.json (OCI outputs). */
  readonly descriptorAnnotations?: Readonly<Record<string, string>>;
}

/**
 * A multi-platform image of the store to export: its images, each with its platform, written as
 * an image index (OCI outputs only; a docker archive holds one image per name).
 */
export interface ExportIndex {
  readonly kind: 'index';
  /** Full references (docker.io/library/app:v2); may be empty. */
  readonly names: readonly string[];
  readonly images: ReadonlyArray<{ readonly image: StoredImage; readonly platform: Platform; readonly annotations?: Readonly<Record<string, string>> | undefined }>;
  /** The index's own annotations. */
  readonly annotations?: Readonly<Record<string, string>> | undefined;
  /** Annotations for the index's descriptor in index.json. */
  readonly descriptorAnnotations?: Readonly<Record<string, string>>;
}

export interface ExportOptions {
  readonly compression: LayerCompression;
  readonly level?: number | undefined;
  readonly signal?: AbortSignal | undefined;
}

/** One file of an archive: bytes in memory (small JSON) or a blob of the store. */
type ArchiveFile = { readonly name: string; readonly bytes: Buffer } | { readonly name: string; readonly blob: Digest; readonly size: number };

/**
 * The compressed form of each stored layer (by its digest, the diff ID), as compressedLayerForm
 * made or remembered it; with its bytes when it was made in memory and not kept (a small layer).
 */
type LayerForms = ReadonlyMap<string, Descriptor & { readonly bytes?: Buffer | undefined }>;

/**
 * Layers compressed at once by an export: one bigger than a MiB, and alongside it up to three
 * smaller ones. A big layer's gzip keeps the cores busy on its own (its blocks are parallel
 * jobs: layer/ parallel-gzip.ts). Two big ones at once made hello-python's export (Debian's
 * layer and python's) about 10% faster (1.68-1.72 s against 1.73-2.00 s, 2 cores, alternating
 * runs), but an export of big-run's image (a 121 MB and a 1 GB layer) then peaked at 107-121 MB
 * of RSS, against 95-97 MB one at a time. Small layers (a COPY of a few files) cost their store
 * writes' fsyncs more than their compression: they go alongside.
 */
const LAYERS_AT_ONCE = 3;
const BIG_LAYERS_AT_ONCE = 1;
const BIG_LAYER = 1024 * 1024;

/**
 * The compressed forms of the layers of `images`, made as LAYERS_AT_ONCE says. What is
 * written is in an order fixed by the digests (ociLayoutFiles), so the archive's bytes do not
 * depend on which layer finishes first. The first failure stops the others and is thrown once
 * every started one has settled (nothing is still writing to the store then).
 */
async function compressLayers(store: Store, images: readonly StoredImage[], opts: ExportOptions): Promise<LayerForms> {
  const layers = new Map<string, Descriptor>();
  for (const image of images) for (const l of image.manifest.layers) layers.set(l.digest, l);
  const forms = new Map<string, Descriptor & { bytes?: Buffer | undefined }>();
  const limit = pLimit(LAYERS_AT_ONCE);
  const bigLimit = pLimit(BIG_LAYERS_AT_ONCE);
  const inner = new AbortController();
  setMaxListeners(0, inner.signal);
  const onAbort = (): void => inner.abort(opts.signal?.reason);
  if (opts.signal?.aborted === true) inner.abort(opts.signal.reason);
  opts.signal?.addEventListener('abort', onAbort, { once: true });
  let failure: { error: unknown } | undefined;
  try {
    await Promise.allSettled(
      [...layers.values()].map((l) =>
        (l.size > BIG_LAYER ? bigLimit : limit)(async () => {
          inner.signal.throwIfAborted();
          const c = await compressedLayerForm(store, l, opts.compression, { level: opts.level, signal: inner.signal, smallInMemory: true });
          forms.set(l.digest, { mediaType: c.mediaType, digest: c.digest, size: c.size, bytes: c.bytes });
        }).catch((e: unknown) => {
          if (failure === undefined) {
            failure = { error: e };
            inner.abort(e);
          }
        }),
      ),
    );
  } finally {
    opts.signal?.removeEventListener('abort', onAbort);
  }
  if (failure !== undefined) throw failure.error;
  return forms;
}

/** The manifest of `image` with its layers in the requested compression (`forms`: compressLayers). */
function exportManifest(image: StoredImage, forms: LayerForms): { manifest: ImageManifest; bytes: Buffer; descriptor: Descriptor } {
  const layers = image.manifest.layers.map((l) => {
    const { mediaType, digest, size } = forms.get(l.digest)!;
    return { mediaType, digest, size };
  });
  const manifest: ImageManifest = { ...image.manifest, mediaType: OCI_IMAGE_MANIFEST, layers };
  const bytes = canonicalJson(manifest);
  // Only the archive holds it: the store's image is the one it keeps.
  return { manifest, bytes, descriptor: { mediaType: OCI_IMAGE_MANIFEST, digest: digestBytes(bytes, 'sha256'), size: bytes.length } };
}

/** Whether an export entry is a multi-platform image (else one image). */
export function isExportIndex(e: ExportImage | ExportIndex): e is ExportIndex {
  return 'kind' in e && e.kind === 'index';
}

/** Tag part of a full reference, as BuildKit writes org.opencontainers.image.ref.name. */
function tagOf(name: string): string | undefined {
  const at = name.indexOf('@');
  const base = at >= 0 ? name.slice(0, at) : name;
  const colon = base.lastIndexOf(':');
  return colon > base.lastIndexOf('/') ? base.slice(colon + 1) : undefined;
}

/** docker.io/library/app:v2 -> app:v2, as `docker images` shows it. */
export function familiar(name: string): string {
  return name.replace(/^docker\.io\/library\//, '').replace(/^docker\.io\//, '');
}

/**
 * The OCI layout files (oci-layout, index.json, blobs) of the images and multi-platform images,
 * and the descriptor of each one's manifest or index as written (one per entry, in order,
 * without annotations).
 */
async function ociLayoutFiles(store: Store, entries: readonly (ExportImage | ExportIndex)[], opts: ExportOptions): Promise<{ files: ArchiveFile[]; written: Descriptor[] }> {
  const blobs = new Map<string, ArchiveFile>();
  const manifests: Descriptor[] = [];
  const written: Descriptor[] = [];
  const forms = await compressLayers(store, entries.flatMap((e) => (isExportIndex(e) ? e.images.map((i) => i.image) : [e])), opts);
  const addImage = async (image: StoredImage): Promise<Descriptor> => {
    const m = exportManifest(image, forms);
    const cfg = image.manifest.config;
    blobs.set(cfg.digest, { name: `blobs/sha256/${digestHex(cfg.digest)}`, blob: cfg.digest, size: cfg.size });
    for (const l of image.manifest.layers) {
      const f = forms.get(l.digest)!;
      const name = `blobs/sha256/${digestHex(f.digest)}`;
      blobs.set(f.digest, f.bytes !== undefined ? { name, bytes: f.bytes } : { name, blob: f.digest, size: f.size });
    }
    blobs.set(m.descriptor.digest, { name: `blobs/sha256/${digestHex(m.descriptor.digest)}`, bytes: m.bytes });
    return m.descriptor;
  };
  for (const entry of entries) {
    let descriptor: Descriptor;
    if (isExportIndex(entry)) {
      // The images first, then an index naming them as written (compressed layers: their digests are not the store's).
      const children: Descriptor[] = [];
      for (const i of entry.images) {
        const d = await addImage(i.image);
        children.push({ ...d, ...(i.annotations !== undefined && Object.keys(i.annotations).length > 0 ? { annotations: i.annotations } : {}), platform: i.platform });
      }
      const index: ImageIndex = {
        schemaVersion: 2,
        mediaType: OCI_IMAGE_INDEX,
        manifests: children,
        ...(entry.annotations !== undefined && Object.keys(entry.annotations).length > 0 ? { annotations: entry.annotations } : {}),
      };
      const bytes = canonicalJson(index);
      descriptor = { mediaType: OCI_IMAGE_INDEX, digest: digestBytes(bytes, 'sha256'), size: bytes.length };
      blobs.set(descriptor.digest, { name: `blobs/sha256/${digestHex(descriptor.digest)}`, bytes });
    } else {
      descriptor = await addImage(entry);
    }
    written.push(descriptor);
    const names = entry.names.length > 0 ? entry.names : [undefined];
    for (const name of names) {
      const annotations: Record<string, string> = { ...entry.descriptorAnnotations };
      if (name) {
        annotations['io.containerd.image.name'] = name;
        const tag = tagOf(name);
        if (tag) annotations['org.opencontainers.image.ref.name'] = tag;
      }
      manifests.push({ ...descriptor, ...(Object.keys(annotations).length > 0 ? { annotations } : {}) });
    }
  }
  const index: ImageIndex = { schemaVersion: 2, mediaType: OCI_IMAGE_INDEX, manifests };
  const files: ArchiveFile[] = [
    { name: 'oci-layout', bytes: Buffer.from('{"imageLayoutVersion":"1.0.0"}') },
    { name: 'index.json', bytes: canonicalJson(index) },
    ...[...blobs.values()].sort((a, b) => (a.name < b.name ? -1 : 1)),
  ];
  return { files, written };
}

/**
 * `--output type=oci,dest=FILE` and `save --format oci`: an OCI image layout in a tar.
 * Resolves with the descriptors of the manifests written (their layers are compressed, so
 * their digests differ from the store's).
 */
export async function exportOciArchive(store: Store, images: readonly (ExportImage | ExportIndex)[], dest: string, opts: ExportOptions): Promise<Descriptor[]> {
  const { files, written } = await ociLayoutFiles(store, images, opts);
  await writeArchive(store, files, dest, opts.signal);
  return written;
}

/** `--output type=oci-layout,dest=DIR`: the same layout as a directory. */
export async function exportOciLayout(store: Store, images: readonly (ExportImage | ExportIndex)[], dest: string, opts: ExportOptions): Promise<Descriptor[]> {
  const { files, written } = await ociLayoutFiles(store, images, opts);
  try {
    await fsp.mkdir(path.join(dest, 'blobs', 'sha256'), { recursive: true });
  } catch (e) {
    throw outputError(e, dest);
  }
  // Blobs first, index.json last: a layout cut short by a full disk never names a missing blob.
  const ordered = [...files.filter((f) => f.name.startsWith('blobs/')), ...files.filter((f) => !f.name.startsWith('blobs/'))];
  for (const f of ordered) {
    const target = path.join(dest, f.name);
    const tmp = `${target}.tmp-${process.pid}`;
    try {
      if ('bytes' in f) await fsp.writeFile(tmp, f.bytes);
      else await pipeline(await store.blobs.openBlob(f.blob, { signal: opts.signal, highWaterMark: 1024 * 1024 }), createWriteStream(tmp), { signal: opts.signal });
      await fsp.rename(tmp, target);
    } catch (e) {
      await fsp.rm(tmp, { force: true });
      throw outputError(e, dest);
    }
  }
  return written;
}

/**
 * `--output type=docker,dest=FILE` and `save --format docker`: what `docker load` and
 * `podman load` read. Written as Docker 25+ writes `docker save`: manifest.json and
 * repositories for old loaders, and an OCI layout around the same blobs for new ones.
 * Layers are uncompressed, as in `docker save`, so their digests are the config's diff IDs.
 */
export async function exportDockerArchive(store: Store, images: readonly ExportImage[], dest: string, opts: Omit<ExportOptions, 'compression'>): Promise<Descriptor[]> {
  const { files, written } = await ociLayoutFiles(store, images, { ...opts, compression: 'uncompressed' });
  const manifestJson = images.map((image) => ({
    Config: `blobs/sha256/${digestHex(image.manifest.config.digest)}`,
    RepoTags: image.names.filter((n) => tagOf(n) !== undefined && !n.includes('@')).map(familiar),
    Layers: image.manifest.layers.map((l) => `blobs/sha256/${digestHex(l.digest)}`),
  }));
  const repositories: Record<string, Record<string, string>> = {};
  for (const image of images) {
    const top = image.manifest.layers.at(-1);
    for (const n of image.names) {
      const tag = tagOf(n);
      if (!tag || !top) continue;
      const repo = familiar(n).slice(0, -(tag.length + 1));
      (repositories[repo] ??= {})[tag] = digestHex(top.digest);
    }
  }
  await writeArchive(
    store,
    [...files, { name: 'manifest.json', bytes: Buffer.from(JSON.stringify(manifestJson)) }, { name: 'repositories', bytes: Buffer.from(JSON.stringify(repositories)) }],
    dest,
    opts.signal,
  );
  return written;
}

/**
 * Writes a deterministic tar (fixed owner, mode and mtime; directories first) to dest through
 * a temp file renamed into place, so a failed export never leaves a half-written archive.
 * dest "-" writes to stdout.
 *
 * The tar is made here, header by header (archiveChunks, with the layer writer's header
 * encoder): through tar-stream's pack, a stream pipeline and a read stream per blob, the
 * archive of a 1 MB image took 11-15 ms of a ~70 ms save; written with the file's own handle,
 * small pieces gathered into one write, a blob's next 1 MiB read while the last one is written.
 */
async function writeArchive(store: Store, files: readonly ArchiveFile[], dest: string, signal: AbortSignal | undefined): Promise<void> {
  if (dest === '-') {
    await writeArchiveToStdout(store, files, signal);
    return;
  }
  const tmp = `${dest}.tmp-${process.pid}`;
  let out: fsp.FileHandle | undefined;
  try {
    out = await fsp.open(tmp, 'wx'); // never through a planted symlink
    const batch: Buffer[] = [];
    let batched = 0;
    const flush = async (last?: Buffer): Promise<void> => {
      if (last !== undefined) batch.push(last);
      if (batch.length === 0) return;
      await writevAll(out!, batch.splice(0));
      batched = 0;
    };
    for await (const chunk of archiveChunks(store, files, signal, true)) {
      if (chunk.length >= GATHER) {
        // A blob's read buffer, reused once written: written now, after what was gathered.
        await flush(chunk);
      } else {
        // Copied: a small blob's bytes are in that same read buffer.
        batch.push(Buffer.from(chunk));
        batched += chunk.length;
        if (batched >= GATHER) await flush();
      }
    }
    await flush();
    await out.close();
    out = undefined;
    await fsp.rename(tmp, dest);
  } catch (e) {
    await out?.close().catch(() => undefined);
    await fsp.rm(tmp, { force: true });
    throw outputError(e, dest);
  }
}

/** Small pieces are gathered up to this many bytes before they are written. */
const GATHER = 64 * 1024;

/** Writes every byte of `bufs` at the file's position (writev may write less than asked). */
async function writevAll(fh: fsp.FileHandle, bufs: Buffer[]): Promise<void> {
  let left = bufs;
  while (left.length > 0) {
    let { bytesWritten } = await fh.writev(left);
    while (left.length > 0 && bytesWritten >= left[0]!.length) {
      bytesWritten -= left[0]!.length;
      left = left.slice(1);
    }
    if (left.length > 0 && bytesWritten > 0) left = [left[0]!.subarray(bytesWritten), ...left.slice(1)];
  }
}

/** The archive to stdout, as it is made: each chunk a fresh buffer, written as the pipe takes it. */
async function writeArchiveToStdout(store: Store, files: readonly ArchiveFile[], signal: AbortSignal | undefined): Promise<void> {
  const out = process.stdout;
  let failed: Error | undefined;
  const onError = (e: Error): void => {
    failed ??= e;
  };
  out.on('error', onError);
  try {
    for await (const chunk of archiveChunks(store, files, signal, false)) {
      if (failed !== undefined) throw failed;
      if (!out.write(chunk)) {
        await new Promise<void>((resolve, reject) => {
          const done = (): void => {
            out.off('drain', done);
            out.off('error', fail);
            out.off('close', done);
            resolve();
          };
          const fail = (e: Error): void => {
            done();
            reject(e);
          };
          out.on('drain', done);
          out.on('close', done);
          out.on('error', fail);
        });
      }
    }
    if (failed !== undefined) throw failed;
  } catch (e) {
    throw outputError(e, '-');
  } finally {
    out.off('error', onError);
  }
}

/**
 * The archive's bytes in order: for each file its header (with a directory entry before the
 * first file under each directory), its bytes and the padding to 512 bytes; then the end of
 * the archive. A blob is read in 1 MiB pieces, the next one while the last is written; with
 * `reuse`, into two buffers used in turn (the consumer is done with a piece when it asks for
 * the next one), else each into a fresh buffer. A blob whose file is not its recorded size
 * fails the archive (STORE_CORRUPT).
 */
async function* archiveChunks(store: Store, files: readonly ArchiveFile[], signal: AbortSignal | undefined, reuse: boolean): AsyncGenerator<Buffer> {
  const dirs = new Set<string>();
  const buffers = reuse ? [Buffer.allocUnsafeSlow(READ), Buffer.allocUnsafeSlow(READ)] : undefined;
  for (const f of files) {
    signal?.throwIfAborted();
    const parts = f.name.split('/');
    for (let i = 1; i < parts.length; i++) {
      const d = parts.slice(0, i).join('/');
      if (dirs.has(d)) continue;
      dirs.add(d);
      yield entryHeader(`${d}/`, 0, 'directory');
    }
    if ('bytes' in f) {
      yield entryHeader(f.name, f.bytes.length, 'file');
      if (f.bytes.length > 0) yield f.bytes;
      if (f.bytes.length % 512 !== 0) yield padding(f.bytes.length);
      continue;
    }
    yield entryHeader(f.name, f.size, 'file');
    const fh = await store.blobs.openBlobHandle(f.blob, { signal });
    let pending: Promise<{ bytesRead: number; buffer: Buffer }> | undefined;
    try {
      let left = f.size;
      let turn = 0;
      const next = (): Promise<{ bytesRead: number; buffer: Buffer }> => {
        const buffer = buffers?.[turn++ % 2] ?? Buffer.allocUnsafe(READ);
        return fh.read(buffer, 0, Math.min(READ, left), null).then(({ bytesRead }) => ({ bytesRead, buffer }));
      };
      if (left > 0) pending = next();
      while (pending !== undefined) {
        const { bytesRead, buffer } = await pending;
        pending = undefined;
        if (bytesRead === 0) break;
        left -= bytesRead;
        if (left > 0) pending = next();
        if (buffers === undefined) noteDeadBuffers(READ);
        signal?.throwIfAborted();
        yield buffer.subarray(0, bytesRead);
      }
      if (left !== 0 || (await fh.read(Buffer.alloc(1), 0, 1, null)).bytesRead !== 0) {
        throw new TsbuildError('STORE_CORRUPT', `blob ${f.blob} is not ${f.size} bytes long, as its image says`, { hint: 'run tsbuild fsck' });
      }
    } finally {
      await pending?.catch(() => undefined);
      await fh.close();
    }
    if (f.size % 512 !== 0) yield padding(f.size);
  }
  yield END_OF_ARCHIVE;
}

const READ = 1024 * 1024;

/**
 * The header of an entry of ours (owner 0:0 without names, mtime 0, mode 0644 or 0755), by the
 * layer writer's encoder (layer/tar-header.ts): a PAX record where ustar falls short (a size of
 * 8 GiB or more).
 */
function entryHeader(name: string, size: number, type: 'file' | 'directory'): Buffer {
  const dir = type === 'directory';
  return encodeHeader({ name, typeflag: dir ? '5' : '0', mode: dir ? 0o755 : 0o644, uid: 0, gid: 0, size, mtime: 0, linkname: '', uname: '', gname: '', devmajor: 0, devminor: 0 });
}

/** A file-system error while writing an output: OUTPUT_INVALID naming the file and the errno. */
function outputError(e: unknown, dest: string): unknown {
  const err = e as NodeJS.ErrnoException;
  if (e instanceof TsbuildError || isAbortError(e) || typeof err?.code !== 'string' || !/^E[A-Z]+$/.test(err.code)) return e;
  const hint = err.code === 'ENOSPC' || err.code === 'EDQUOT' ? 'free disk space where the output goes, or write it elsewhere' : undefined;
  return new TsbuildError('OUTPUT_INVALID', `cannot write ${dest}: ${err.message}`, { cause: e, ...(hint ? { hint } : {}) });
}

