import { digestHex, isDigest, type Digest } from '../oci/index.js';
import type { Store } from '../store/index.js';
export { storeUncompressedLayer, writeStoreManifest } from '../store/index.js';

/**
 * Store records of registry facts (storing layers and manifests lives in store/adopt-layers.ts):
 *
 *  - layer sources: which compressed blobs of which repositories hold a diff ID, so a push can
 *    skip, mount or reuse them instead of compressing again.
 *  - repo digests: the digests registries know an image by (docker inspect's RepoDigests).
 */

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
