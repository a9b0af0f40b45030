import { createReadStream, createWriteStream } from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { PassThrough, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { TsbuildError } from '../errors.js';
import type { CacheKey } from '../cache/index.js';
import {
  DigestStream,
  OCI_IMAGE_INDEX,
  OCI_IMAGE_MANIFEST,
  canonicalJson,
  digestHex,
  isDigest,
  layerCompression,
  layerMediaType,
  parseManifestOrIndex,
  sha256Digest,
  type Descriptor,
  type Digest,
  type ImageManifest,
} from '../oci/index.js';
import { compressedLayerForm, type Store } from '../store/index.js';
import {
  CACHE_CONFIG_MEDIA_TYPE,
  LAYER_INDEX_MEDIA_TYPE,
  MAX_CACHE_DOCUMENT_BYTES,
  MAX_LAYER_INDEX_BYTES,
  onlyListed,
  parseCacheDocument,
  type CacheDocument,
  type CacheLayer,
} from './cache-document.js';
import { exportCache, type CacheExportOptions, type CacheExportResult, type CacheExportTarget, type ExportEntry } from './cache-export.js';
import type { LoadedCache } from './imported-cache.js';
import { parseIndexBytes } from './registry-cache.js';

/**
 * A local cache directory (`--cache-to type=local,dest=DIR`, `--cache-from type=local,src=DIR`):
 * an OCI image layout whose index.json names one cache manifest, the same manifest a registry
 * ref holds. Blobs are written first and index.json last (replaced by a rename), so an
 * interrupted export leaves the previous cache; blobs no manifest names any more are removed
 * after, so the directory stays as bounded as its document.
 */

const REF_NAME = 'org.opencontainers.image.ref.name';
const CACHE_REF_NAME = 'tsbuild-cache';

function blobFile(dir: string, digest: Digest): string {
  return path.join(dir, 'blobs', 'sha256', digestHex(digest));
}

/**
 * Checks `dir` before the build: undefined when it does not exist (a first CI run, a miss);
 * OUTPUT_INVALID (exit 1) when it exists but is not an OCI image layout.
 */
export async function checkLocalCacheDir(dir: string, flag: '--cache-from' | '--cache-to'): Promise<'absent' | 'layout' | 'empty'> {
  const st = await fsp.stat(dir).catch(() => undefined);
  if (st === undefined) return 'absent';
  if (!st.isDirectory()) throw new TsbuildError('USAGE', `${flag} ${dir} is not a directory`, { hint: 'name a directory for the cache (it is created if missing)' });
  const names = await fsp.readdir(dir);
  if (names.length === 0) return 'empty';
  const layout = await fsp.readFile(path.join(dir, 'oci-layout'), 'utf8').catch(() => undefined);
  let ok = false;
  try {
    ok = layout !== undefined && (JSON.parse(layout) as { imageLayoutVersion?: unknown }).imageLayoutVersion === '1.0.0';
  } catch {
    ok = false;
  }
  if (!ok || !names.includes('index.json')) {
    throw new TsbuildError('USAGE', `${flag} ${dir} is not an OCI image layout (no oci-layout or index.json): it is not a tsbuild cache directory`, {
      hint: 'name an empty or new directory, or one an earlier --cache-to type=local wrote',
    });
  }
  return 'layout';
}

async function readSmall(file: string, max: number, what: string): Promise<Buffer> {
  const st = await fsp.stat(file).catch(() => undefined);
  if (st === undefined) throw new TsbuildError('BLOB_NOT_FOUND', `${what} is missing (${file})`);
  if (st.size > max) throw new TsbuildError('MANIFEST_INVALID', `${what} is ${st.size} bytes, over the ${max}-byte limit`);
  return fsp.readFile(file);
}

/** Reads a blob of the layout, checked against its descriptor. */
async function readVerified(dir: string, d: Descriptor, max: number, what: string): Promise<Buffer> {
  const bytes = await readSmall(blobFile(dir, d.digest), max, what);
  if (bytes.byteLength !== d.size || sha256Digest(bytes) !== d.digest) throw new TsbuildError('DIGEST_MISMATCH', `${what} does not match its digest ${d.digest}`);
  return bytes;
}

/** The cache manifest and document a layout holds; undefined when it holds none. */
async function readLocalCache(dir: string): Promise<{ manifest: ImageManifest; manifestDescriptor: Descriptor; doc: CacheDocument; dropped: number } | undefined> {
  const where = `local cache ${dir}`;
  const indexBytes = await readSmall(path.join(dir, 'index.json'), MAX_CACHE_DOCUMENT_BYTES, `index.json of ${where}`);
  const index = parseManifestOrIndex(indexBytes, OCI_IMAGE_INDEX, { what: `index.json of ${where}` });
  if (index.kind !== 'index') throw new TsbuildError('MANIFEST_INVALID', `index.json of ${where} is not an image index`);
  const candidates = index.index.manifests.filter((m) => m.mediaType === OCI_IMAGE_MANIFEST);
  const named = candidates.find((m) => m.annotations?.[REF_NAME] === CACHE_REF_NAME) ?? candidates[0];
  if (named === undefined) return undefined;
  const mBytes = await readVerified(dir, named, MAX_CACHE_DOCUMENT_BYTES, `cache manifest of ${where}`);
  const parsed = parseManifestOrIndex(mBytes, OCI_IMAGE_MANIFEST, { what: `cache manifest of ${where}` });
  if (parsed.kind !== 'manifest' || parsed.manifest.config.mediaType !== CACHE_CONFIG_MEDIA_TYPE) {
    throw new TsbuildError('MANIFEST_INVALID', `${where} holds an image, not a tsbuild build cache`, { hint: 'name a directory written by --cache-to type=local' });
  }
  const docBytes = await readVerified(dir, parsed.manifest.config, MAX_CACHE_DOCUMENT_BYTES, `cache document of ${where}`);
  const parsedDoc = parseCacheDocument(docBytes, where);
  const { doc, dropped } = onlyListed(parsedDoc.doc, parsed.manifest, parsedDoc.dropped);
  return { manifest: parsed.manifest, manifestDescriptor: named, doc, dropped };
}

/** The loader of ImportedCache for `--cache-from type=local,src=DIR`. */
export function localCacheLoader(store: Store, dir: string, warn: (message: string) => void): (signal: AbortSignal | undefined) => Promise<LoadedCache | undefined> {
  return async () => {
    if ((await checkLocalCacheDir(dir, '--cache-from')) !== 'layout') return undefined;
    const found = await readLocalCache(dir);
    if (found === undefined) return undefined;
    if (found.dropped > 0) warn(`local cache ${dir}: ${found.dropped} malformed entries left out`);
    return {
      doc: found.doc,
      fetchIndex: async (layer) => {
        if (layer.index === undefined) return undefined;
        return parseIndexBytes(await readVerified(dir, { mediaType: LAYER_INDEX_MEDIA_TYPE, ...layer.index }, MAX_LAYER_INDEX_BYTES, `index of layer ${layer.digest} in ${dir}`));
      },
      fetchLayer: (layer, signal) => importLayer(store, dir, layer, signal),
    };
  };
}

/** A layer of the layout into the store: the file checked against its blob digest, its content against the diff ID. */
async function importLayer(store: Store, dir: string, layer: Omit<CacheLayer, 'index'>, signal: AbortSignal | undefined): Promise<void> {
  const what = `layer ${layer.digest} of local cache ${dir}`;
  const compression = layerCompression(layer.mediaType);
  if (compression !== 'gzip' && compression !== 'zstd' && compression !== 'uncompressed') throw new TsbuildError('UNSUPPORTED', `${what} has media type ${layer.mediaType}, which tsbuild cannot unpack`);
  // zstd: the system zstd program (layer/zstd.ts), checked before anything is read.
  const layerCode = compression === 'zstd' ? await import('../layer/index.js') : undefined;
  layerCode?.assertZstdAvailable();
  const file = blobFile(dir, layer.digest);
  const st = await fsp.stat(file).catch(() => undefined);
  if (st?.size !== layer.size) throw new TsbuildError('BLOB_NOT_FOUND', `${what} is ${st === undefined ? 'missing' : `${st.size} bytes, not ${layer.size}`}`);
  const source = createReadStream(file, { highWaterMark: 1024 * 1024, ...(signal ? { signal } : {}) });
  const check = new DigestStream();
  // The blob's digest is checked when the file ends, before the decompressed stream ends: a
  // wrong file fails the store write, which keeps nothing.
  const verified = new Transform({
    transform: (chunk: Buffer, _e, cb) => cb(null, chunk),
    flush: (cb) => {
      const r = check.result();
      cb(r.digest === layer.digest && r.size === layer.size ? null : new TsbuildError('DIGEST_MISMATCH', `${what} does not match its digest`));
    },
  });
  const out = compression === 'gzip' ? createGunzip({ chunkSize: 1024 * 1024 }) : layerCode !== undefined ? layerCode.createZstdDecompressor() : new PassThrough();
  const piped = pipeline(source, check, verified, out, { ...(signal ? { signal } : {}) }).catch(() => undefined);
  try {
    await store.blobs.putBlob(out, { expected: { digest: layer.diffId }, signal });
  } catch (e) {
    source.destroy();
    out.destroy();
    throw e;
  } finally {
    await piped;
  }
}

/**
 * `--cache-to type=local,dest=DIR` (cache-export.ts drives it): merges this build's entries
 * with what DIR holds, writes the new blobs, the document and manifest, then index.json (by
 * rename), then removes the blobs no longer named.
 */
export async function exportLocalCache(store: Store, dir: string, entries: ReadonlyMap<CacheKey, ExportEntry>, opts: CacheExportOptions): Promise<CacheExportResult> {
  const state = await checkLocalCacheDir(dir, '--cache-to');
  const blobs = path.join(dir, 'blobs', 'sha256');
  await fsp.mkdir(blobs, { recursive: true });
  const target: CacheExportTarget = {
    previous: async () => (state === 'layout' ? (await readLocalCache(dir))?.doc : undefined),
    replaceable: () => true,
    sendLayers: async (layers) => {
      const out: Descriptor[] = [];
      for (const l of layers) {
        const c = await compressedLayerForm(store, l, opts.compression, { signal: opts.signal });
        await copyBlobIn(store, dir, c.digest, opts.signal);
        out.push({ mediaType: layerMediaType('oci', opts.compression), digest: c.digest, size: c.size });
      }
      return out;
    },
    sendBytes: async (bytes) => {
      const digest = sha256Digest(bytes);
      await writeIn(dir, blobFile(dir, digest), bytes);
      return { digest, size: bytes.byteLength };
    },
    commit: async (docBytes, m) => {
      await writeIn(dir, blobFile(dir, m.manifest.config.digest), docBytes);
      await writeIn(dir, blobFile(dir, m.digest), m.bytes);
      if (!(await fsp.stat(path.join(dir, 'oci-layout')).catch(() => undefined))) await writeIn(dir, path.join(dir, 'oci-layout'), Buffer.from('{"imageLayoutVersion":"1.0.0"}'));
      const index = { schemaVersion: 2, mediaType: OCI_IMAGE_INDEX, manifests: [{ mediaType: OCI_IMAGE_MANIFEST, digest: m.digest, size: m.bytes.byteLength, annotations: { [REF_NAME]: CACHE_REF_NAME } }] };
      await writeIn(dir, path.join(dir, 'index.json'), canonicalJson(index));
      // Blobs named by no entry any more go (the directory stays bounded).
      const keep = new Set<string>([m.digest, m.manifest.config.digest, ...m.manifest.layers.map((l) => l.digest)].map((d) => digestHex(d)));
      for (const name of await fsp.readdir(blobs)) {
        if (!keep.has(name) && (/^[0-9a-f]{64}$/.test(name) || name.includes('.tmp-'))) await fsp.rm(path.join(blobs, name), { force: true });
      }
    },
  };
  return exportCache(target, store, entries, opts);
}

async function writeIn(dir: string, file: string, bytes: Buffer): Promise<void> {
  const tmp = `${file}.tmp-${process.pid}`;
  try {
    await fsp.writeFile(tmp, bytes);
    await fsp.rename(tmp, file);
  } catch (e) {
    await fsp.rm(tmp, { force: true });
    throw new TsbuildError('OUTPUT_INVALID', `cannot write the cache in ${dir}: ${(e as Error).message}`, { cause: e });
  }
}

async function copyBlobIn(store: Store, dir: string, digest: Digest, signal: AbortSignal | undefined): Promise<void> {
  const target = blobFile(dir, digest);
  if (isDigest(digest) && (await fsp.stat(target).catch(() => undefined))) return;
  const tmp = `${target}.tmp-${process.pid}`;
  try {
    await pipeline(await store.blobs.openBlob(digest, { signal }), createWriteStream(tmp), { ...(signal ? { signal } : {}) });
    await fsp.rename(tmp, target);
  } catch (e) {
    await fsp.rm(tmp, { force: true });
    throw new TsbuildError('OUTPUT_INVALID', `cannot write the cache in ${dir}: ${(e as Error).message}`, { cause: e });
  }
}
