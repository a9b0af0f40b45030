import { digestHex, isDigest, type Digest } from '../oci/index.js';
import type { Store } from '../store/index.js';

/**
 * Store records of registry facts, owned here (storing layers and manifests lives in
 * store/adopt-layers.ts). Each record is a meta document with a type and a parse function that
 * accepts any JSON value and keeps only well-formed entries: a record written by another
 * version, or damaged, reads as less knowledge, never as an error. Both are memos (store
 * MetaOptions): written without fsync, and one that does not parse reads as absent.
 *
 *  - layer sources (`layer-sources.<hex of the diff ID>`): which compressed blobs of which
 *    repositories hold a layer, so a push can skip, mount or reuse them instead of compressing
 *    again.
 *  - repo digests (`repo-digests`): the digests registries know an image by (docker inspect's
 *    RepoDigests).
 *
 * cli/commands/images.ts and inspect.ts import this file itself, not the folder's front door:
 * listing images must not load undici.
 */

type SignalOption = { readonly signal?: AbortSignal | undefined };

// ---- layer sources -----------------------------------------------------------------------------

/** A compressed blob that holds a layer, and the repositories known to have it. */
export interface LayerVariant {
  readonly digest: Digest;
  readonly size: number;
  readonly mediaType: string;
  /** `registry/repository` names, most recent first. */
  readonly repositories: readonly string[];
}

/** The record `layer-sources.<hex>`: the known compressed forms of one layer. */
export interface LayerSourcesRecord {
  readonly variants: readonly LayerVariant[];
}

const MAX_REPOS_PER_VARIANT = 16;

function layerSourcesName(diffId: Digest): string {
  return `layer-sources.${digestHex(diffId)}`;
}

export function parseLayerSources(value: unknown): LayerSourcesRecord {
  const field = isRecord(value) ? value['variants'] : undefined;
  if (!Array.isArray(field)) return { variants: [] };
  const list: readonly unknown[] = field;
  const variants: LayerVariant[] = [];
  for (const v of list) {
    if (!isRecord(v)) continue;
    const { digest, size, mediaType, repositories } = v;
    if (typeof digest !== 'string' || !isDigest(digest) || typeof size !== 'number' || typeof mediaType !== 'string' || !Array.isArray(repositories)) continue;
    variants.push({ digest, size, mediaType, repositories: stringsOf(repositories) });
  }
  return { variants };
}

/** The known compressed forms of a layer. */
export async function readLayerVariants(store: Store, diffId: Digest, opts: SignalOption = {}): Promise<LayerVariant[]> {
  return [...parseLayerSources(await store.readMeta(layerSourcesName(diffId), { signal: opts.signal, memo: true })).variants];
}

/** Remember that `repository` (registry/repo) has `variant` of layer `diffId`. */
export async function recordLayerVariant(
  store: Store,
  diffId: Digest,
  variant: { readonly digest: Digest; readonly size: number; readonly mediaType: string },
  repository: string,
  opts: SignalOption = {},
): Promise<void> {
  await store.updateMeta(
    layerSourcesName(diffId),
    (cur): LayerSourcesRecord => {
      const variants = [...parseLayerSources(cur).variants];
      const i = variants.findIndex((v) => v.digest === variant.digest);
      const prev = i === -1 ? [] : (variants[i]?.repositories ?? []);
      const repositories = [repository, ...prev.filter((r) => r !== repository)].slice(0, MAX_REPOS_PER_VARIANT);
      const next: LayerVariant = { digest: variant.digest, size: variant.size, mediaType: variant.mediaType, repositories };
      if (i === -1) variants.push(next);
      else variants[i] = next;
      return { variants };
    },
    { signal: opts.signal, memo: true },
  );
}

// ---- repo digests ------------------------------------------------------------------------------

/** The record `repo-digests`: store manifest digest -> `registry/repository@digest` names, most recent first. */
export type RepoDigestsRecord = Readonly<Record<string, readonly string[]>>;

const REPO_DIGESTS_META = 'repo-digests';

export function parseRepoDigests(value: unknown): RepoDigestsRecord {
  const out: Record<string, readonly string[]> = {};
  if (!isRecord(value)) return out;
  for (const [manifest, names] of Object.entries(value)) {
    if (!isDigest(manifest) || !Array.isArray(names)) continue;
    const list: readonly unknown[] = names;
    out[manifest] = stringsOf(list);
  }
  return out;
}

/**
 * Remember that the store image `localManifest` is `repository@digest` in a registry
 * (docker inspect's RepoDigests): the registry's manifest or index digest, which differs from
 * the store's own manifest (uncompressed layers). One name per repository: the latest.
 */
export async function recordRepoDigest(store: Store, localManifest: Digest, repoDigest: string, opts: SignalOption = {}): Promise<void> {
  await store.updateMeta(
    REPO_DIGESTS_META,
    (cur): RepoDigestsRecord => {
      const all = parseRepoDigests(cur);
      const repo = repoDigest.slice(0, repoDigest.indexOf('@'));
      return { ...all, [localManifest]: [repoDigest, ...(all[localManifest] ?? []).filter((x) => !x.startsWith(`${repo}@`))] };
    },
    { signal: opts.signal, memo: true },
  );
}

/** `registry/repository@digest` names of a store image. */
export async function readRepoDigests(store: Store, localManifest: Digest, opts: SignalOption = {}): Promise<string[]> {
  return [...(parseRepoDigests(await store.readMeta(REPO_DIGESTS_META, { signal: opts.signal, memo: true }))[localManifest] ?? [])];
}

// ---- parsing helpers ---------------------------------------------------------------------------

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function stringsOf(list: readonly unknown[]): string[] {
  return list.filter((x): x is string => typeof x === 'string');
}
