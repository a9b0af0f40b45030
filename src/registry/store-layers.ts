import { createGunzip } from 'node:zlib';
import { TsbuildError } from '../errors.js';
import {
  OCI_IMAGE_CONFIG,
  OCI_IMAGE_MANIFEST,
  OCI_LAYER_TAR,
  canonicalJson,
  digestHex,
  isDigest,
  layerCompression,
  type Descriptor,
  type Digest,
  type ImageManifest,
} from '../oci/index.js';
import type { Store } from '../store/index.js';

/**
 * How a pulled image becomes a store image, with no registry in it (so store/archive-import.ts
 * can share it; its adoptImage does the same for archives):
 *
 *  - `storeUncompressedLayer`: a layer blob already in the store, gzip or uncompressed, becomes
 *    the uncompressed blob named by its diff ID, verified while it streams.
 *  - `writeStoreManifest`: the store's manifest for an image (OCI, uncompressed layers).
 *  - layer sources: which compressed blobs of which repositories hold a diff ID, so a push can
 *    skip, mount or reuse them instead of compressing again.
 *  - repo digests: the digests registries know an image by (docker inspect's RepoDigests).
 */

/**
 * Make sure the store has the uncompressed layer `diffId`, from the blob `blob` (already in the
 * store). Returns its size and whether it had to be made.
 */
export async function storeUncompressedLayer(
  store: Store,
  blob: Descriptor,
  diffId: Digest,
  opts: { readonly signal?: AbortSignal | undefined } = {},
): Promise<{ size: number; created: boolean }> {
  const have = await store.blobs.statBlob(diffId);
  if (have !== undefined) return { size: have.size, created: false };
  const compression = layerCompression(blob.mediaType);
  if (blob.digest === diffId) {
    const st = await store.blobs.statBlob(blob.digest);
    if (st === undefined) throw new TsbuildError('BLOB_NOT_FOUND', `layer ${blob.digest} is not in the store`);
    return { size: st.size, created: false };
  }
  switch (compression) {
    case 'gzip':
      break;
    case 'uncompressed':
      throw new TsbuildError('DIGEST_MISMATCH', `uncompressed layer ${blob.digest} does not match its diff ID ${diffId}`, {
        hint: 'the image config and manifest disagree; the image is broken',
      });
    case 'zstd':
      throw new TsbuildError('UNSUPPORTED', `layer ${blob.digest} is zstd-compressed, which Node.js 20 cannot decompress`, {
        hint: 'use an image with gzip layers, or run tsbuild on Node.js 22.15 or newer once zstd support lands',
      });
    case undefined:
      throw new TsbuildError('UNSUPPORTED', `layer ${blob.digest} has media type ${blob.mediaType}, which tsbuild cannot unpack`);
  }
  const src = await store.blobs.openBlob(blob.digest, { signal: opts.signal });
  const gunzip = createGunzip();
  src.on('error', (e) => gunzip.destroy(e));
  src.pipe(gunzip);
  try {
    const info = await store.blobs.putBlob(gunzip, { expected: { digest: diffId }, signal: opts.signal });
    return { size: info.size, created: true };
  } catch (e) {
    src.destroy();
    if (e instanceof TsbuildError) {
      if (e.code === 'DIGEST_MISMATCH') {
        throw new TsbuildError('DIGEST_MISMATCH', `layer ${blob.digest} does not decompress to its diff ID ${diffId}`, {
          hint: 'the image config and the layer disagree; the image is broken',
          cause: e,
        });
      }
      throw e;
    }
    throw new TsbuildError('LAYER_INVALID', `layer ${blob.digest} is not valid gzip (${(e as Error).message})`, { cause: e });
  }
}

/** Write the store's manifest (OCI, uncompressed layers) for a config and its layers. */
export async function writeStoreManifest(
  store: Store,
  config: { readonly digest: Digest; readonly size: number },
  layers: readonly { readonly diffId: Digest; readonly size: number }[],
  opts: { readonly signal?: AbortSignal | undefined } = {},
): Promise<Descriptor> {
  const manifest: ImageManifest = {
    schemaVersion: 2,
    mediaType: OCI_IMAGE_MANIFEST,
    config: { mediaType: OCI_IMAGE_CONFIG, digest: config.digest, size: config.size },
    layers: layers.map((l) => ({ mediaType: OCI_LAYER_TAR, digest: l.diffId, size: l.size })),
  };
  const info = await store.blobs.putBytes(canonicalJson(manifest), { signal: opts.signal });
  return { mediaType: OCI_IMAGE_MANIFEST, digest: info.digest, size: info.size };
}

// ---- layer sources -----------------------------------------------------------------------------

/** A compressed blob that holds a layer, and the repositories known to have it. */
export interface LayerVariant {
  readonly digest: Digest;
  readonly size: number;
  readonly mediaType: string;
  /** `registry/repository` names. */
  readonly repositories: readonly string[];
}

const MAX_REPOS_PER_VARIANT = 16;

function sourcesMeta(diffId: Digest): string {
  return `layer-sources.${digestHex(diffId)}`;
}

/** The known compressed forms of a layer. */
export async function readLayerVariants(store: Store, diffId: Digest, opts: { readonly signal?: AbortSignal | undefined } = {}): Promise<LayerVariant[]> {
  return parseVariants(await store.readMeta(sourcesMeta(diffId), { signal: opts.signal }));
}

/** Remember that `repository` (registry/repo) has `variant` of layer `diffId`. */
export async function recordLayerVariant(
  store: Store,
  diffId: Digest,
  variant: { readonly digest: Digest; readonly size: number; readonly mediaType: string },
  repository: string,
  opts: { readonly signal?: AbortSignal | undefined } = {},
): Promise<void> {
  await store.updateMeta(
    sourcesMeta(diffId),
    (cur) => {
      const variants = parseVariants(cur);
      const i = variants.findIndex((v) => v.digest === variant.digest);
      const prev = i === -1 ? [] : (variants[i]?.repositories ?? []);
      const repositories = [repository, ...prev.filter((r) => r !== repository)].slice(0, MAX_REPOS_PER_VARIANT);
      const next: LayerVariant = { digest: variant.digest, size: variant.size, mediaType: variant.mediaType, repositories };
      if (i === -1) variants.push(next);
      else variants[i] = next;
      return { variants };
    },
    { signal: opts.signal },
  );
}

function parseVariants(value: unknown): LayerVariant[] {
  const list = (value as { variants?: unknown } | undefined)?.variants;
  if (!Array.isArray(list)) return [];
  const out: LayerVariant[] = [];
  for (const v of list) {
    const o = v as Partial<Record<keyof LayerVariant, unknown>>;
    if (typeof o.digest !== 'string' || !isDigest(o.digest) || typeof o.size !== 'number' || typeof o.mediaType !== 'string' || !Array.isArray(o.repositories)) continue;
    out.push({ digest: o.digest, size: o.size, mediaType: o.mediaType, repositories: o.repositories.filter((r): r is string => typeof r === 'string') });
  }
  return out;
}

// ---- repo digests ------------------------------------------------------------------------------

const REPO_DIGESTS_META = 'repo-digests';

/**
 * Remember that the store image `localManifest` is `repository@digest` in a registry
 * (docker inspect's RepoDigests): the registry's manifest or index digest, which differs from
 * the store's own manifest (uncompressed layers).
 */
export async function recordRepoDigest(store: Store, localManifest: Digest, repoDigest: string, opts: { readonly signal?: AbortSignal | undefined } = {}): Promise<void> {
  await store.updateMeta(
    REPO_DIGESTS_META,
    (cur) => {
      const all = typeof cur === 'object' && cur !== null ? { ...(cur as Record<string, unknown>) } : {};
      const list = Array.isArray(all[localManifest]) ? (all[localManifest] as unknown[]).filter((x): x is string => typeof x === 'string') : [];
      const repo = repoDigest.slice(0, repoDigest.indexOf('@'));
      all[localManifest] = [repoDigest, ...list.filter((x) => !x.startsWith(`${repo}@`))];
      return all;
    },
    { signal: opts.signal },
  );
}

/** `registry/repository@digest` names of a store image. */
export async function readRepoDigests(store: Store, localManifest: Digest, opts: { readonly signal?: AbortSignal | undefined } = {}): Promise<string[]> {
  const all = await store.readMeta(REPO_DIGESTS_META, { signal: opts.signal });
  const list = typeof all === 'object' && all !== null ? (all as Record<string, unknown>)[localManifest] : undefined;
  return Array.isArray(list) ? list.filter((x): x is string => typeof x === 'string') : [];
}
