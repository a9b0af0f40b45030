import { readFile } from 'node:fs/promises';
import { digestBytes, digestHex, isDigest, layerMediaType, type Digest } from '../oci/index.js';
import { TsbuildError } from '../errors.js';
import type { Store } from './store.js';

/**
 * The compressed forms of a stored (uncompressed) layer: meta/compressed.<diff ID hex>, a map
 * from `gzip-<level>` to the blob made from it. Made once, remembered, never recomputed (the
 * bytes depend on the zlib that made them; DESIGN.md "Compress late"). One place for push,
 * save and exports. A form of no known level (the blob a `pull --no-unpack` kept, made by
 * whoever pushed it) is remembered under the compression alone (`gzip`, `zstd`: PULLED_FORM)
 * and serves an output that asks for no level.
 */
export type CompressedLayersRecord = Readonly<Record<string, CompressedLayer>>;

export interface CompressedLayer {
  readonly digest: Digest;
  readonly size: number;
}

function metaName(diffId: Digest): string {
  return `compressed.${digestHex(diffId)}`;
}

/**
 * The record as read from meta/ (`unknown`: any JSON, or undefined when absent). Entries of
 * another shape are dropped rather than refused: the record is a memo, and a form it forgets
 * is only compressed again.
 */
export function parseCompressedLayersRecord(value: unknown): CompressedLayersRecord {
  const out: Record<string, CompressedLayer> = {};
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return out;
  for (const [key, v] of Object.entries(value as Record<string, unknown>)) {
    if (typeof v !== 'object' || v === null) continue;
    const { digest, size } = v as { digest?: unknown; size?: unknown };
    if (typeof digest === 'string' && isDigest(digest) && typeof size === 'number' && Number.isSafeInteger(size) && size >= 0) out[key] = { digest, size };
  }
  return out;
}

/** The remembered form `key` of layer `diffId`, if its blob is still in the store with that size. */
export async function knownCompressedLayer(store: Store, diffId: Digest, key: string, opts: { signal?: AbortSignal | undefined } = {}): Promise<CompressedLayer | undefined> {
  const hit = parseCompressedLayersRecord(await store.readMeta(metaName(diffId), { signal: opts.signal, memo: true }))[key];
  if (hit === undefined) return undefined;
  return (await store.blobs.statBlob(hit.digest))?.size === hit.size ? hit : undefined;
}

/** Remembers `info` as the form `key` of layer `diffId`. */
export async function rememberCompressedLayer(store: Store, diffId: Digest, key: string, info: CompressedLayer, opts: { signal?: AbortSignal | undefined } = {}): Promise<void> {
  await store.updateMeta(metaName(diffId), (cur): CompressedLayersRecord => ({ ...parseCompressedLayersRecord(cur), [key]: { digest: info.digest, size: info.size } }), { signal: opts.signal, memo: true });
}

/**
 * The key of a layer's compressed form of no known level: the blob a pull kept as the registry
 * sent it (registry/pull.ts keepCompressed), reused by an export or push that asks for no level
 * rather than compressing the layer again.
 */
export function pulledFormKey(compression: 'gzip' | 'zstd'): string {
  return compression;
}

/**
 * The blobs a pull kept as layer `diffId`'s compressed forms (the registry's bytes, remembered
 * under pulledFormKey): gc keeps them while the layer is kept, as they cannot be made again
 * (a form compressed here can, byte for byte, and goes at gc).
 */
export async function pulledForms(store: Store, diffId: Digest, opts: { signal?: AbortSignal | undefined } = {}): Promise<Digest[]> {
  const record = parseCompressedLayersRecord(await store.readMeta(metaName(diffId), { signal: opts.signal, memo: true }));
  return (['gzip', 'zstd'] as const).flatMap((c) => record[pulledFormKey(c)]?.digest ?? []);
}

/** A stored (uncompressed) layer to compress: its diff ID is its digest in the store. */
export interface StoredLayerRef {
  readonly digest: Digest;
  readonly size: number;
}

export interface CompressedLayerFormOptions {
  /** gzip 1..9 (default layer/ DEFAULT_GZIP_LEVEL), zstd 1..22 (default 3). */
  readonly level?: number | undefined;
  readonly signal?: AbortSignal | undefined;
  /**
   * A layer of SMALL_LAYER bytes or less with no remembered form is compressed in memory and
   * handed back with its bytes (`bytes`), not kept: for an output that carries the bytes itself
   * (an archive), where keeping them cost a store write, its fsyncs and the record's update
   * (more than compressing a few KiB again).
   */
  readonly smallInMemory?: boolean | undefined;
}

/**
 * A layer this small (a WORKDIR, a COPY of a few files) costs its store writes and round trips
 * more than its compression: exports carry its compressed bytes from memory, pushes upload them
 * in one request.
 */
export const SMALL_LAYER = 64 * 1024;

/**
 * Layer `layer` compressed in memory, the same bytes compressedLayerForm would keep (the same
 * compressor, on the same file).
 */
export async function compressLayerInMemory(store: Store, layer: StoredLayerRef, compression: 'gzip' | 'zstd', level: number | undefined, opts: { signal?: AbortSignal | undefined } = {}): Promise<Buffer> {
  const { compressFile, compressionChoice, gzipOneBlock } = await import('../layer/index.js');
  if (compression === 'gzip' && layer.size <= SMALL_LAYER) {
    // One block (compressFile makes a file smaller than a block one block), deflated at once.
    const data = await readFile(store.blobs.blobPath(layer.digest), { signal: opts.signal });
    return gzipOneBlock(data, compressionChoice('gzip', level).level!);
  }
  const chunks: Buffer[] = [];
  // Copies: a compressor may reuse its output buffers once a chunk is handed on.
  for await (const c of compressFile(store.blobs.blobPath(layer.digest), compression, level, { signal: opts.signal, size: layer.size })) chunks.push(Buffer.from(c as Buffer));
  return Buffer.concat(chunks);
}

/**
 * The compressed form of a stored layer with `compression` at `level`: the blob of the store
 * that holds it, made now (streamed from the layer through the compressor into the store,
 * verified and renamed into place only when whole: store/blob-store.ts) or remembered from an
 * earlier export, push or cache export. The one way every output gets a compressed layer, so
 * a layer is compressed at most once per compression and level (DESIGN.md "Compress late").
 * `uncompressed` is the layer itself. USAGE for a level out of range; UNSUPPORTED for zstd
 * without the zstd program (and without node:zlib zstd).
 */
export async function compressedLayerForm(
  store: Store,
  layer: StoredLayerRef,
  compression: 'gzip' | 'zstd' | 'uncompressed',
  opts: CompressedLayerFormOptions = {},
): Promise<CompressedLayer & { readonly mediaType: string; readonly bytes?: Buffer }> {
  // layer/ (the gzip and zstd code) is loaded only by the commands that compress.
  const { compressionChoice, compressFile } = await import('../layer/index.js');
  const mediaType = layerMediaType('oci', compression);
  const choice = compressionChoice(compression, opts.level);
  if (choice.compression === 'uncompressed') return { digest: layer.digest, size: layer.size, mediaType };
  const { signal } = opts;
  const hit =
    (await knownCompressedLayer(store, layer.digest, choice.key, { signal })) ??
    (opts.level === undefined ? await knownCompressedLayer(store, layer.digest, pulledFormKey(choice.compression), { signal }) : undefined);
  if (hit) return { ...hit, mediaType };
  if (!(await store.blobs.hasBlob(layer.digest))) throw new TsbuildError('BLOB_NOT_FOUND', `layer ${layer.digest} is not in the store`, { hint: 'build or pull the image again' });
  if (opts.smallInMemory === true && layer.size <= SMALL_LAYER) {
    const bytes = await compressLayerInMemory(store, layer, choice.compression, choice.level, { signal });
    return { digest: digestBytes(bytes, 'sha256'), size: bytes.length, mediaType, bytes };
  }
  // Read in 1 MiB pieces into the compressor's own few buffers (layer/ compressFile): no fresh
  // buffer per read, which V8 would let pile up, and few reads (the default 64 KiB pieces spent
  // a tenth of an export's main thread in read calls).
  const compressed = compressFile(store.blobs.blobPath(layer.digest), choice.compression, choice.level, { signal, size: layer.size });
  const info = await store.blobs.putBlob(compressed, { signal });
  await rememberCompressedLayer(store, layer.digest, choice.key, info, { signal });
  return { digest: info.digest, size: info.size, mediaType };
}
