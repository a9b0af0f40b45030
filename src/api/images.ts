import path from 'node:path';
import type { Logger } from 'pino';
import { TsbuildError } from '../errors.js';
import { formatPlatform, parsePlatform, parseReference } from '../oci/index.js';
import type { PullProgress, PushProgress, RegistryClient } from '../registry/index.js';
import type { PullUnpackProgress } from '../snapshot/index.js';
import type { Store } from '../store/index.js';
import { asCancelled } from './build-request.js';
import { checkCommon } from './build.js';
import { checkKeys, optBoolean, optChoice, optString } from './options.js';
import { defaultLogger, openRegistryClient, openStoreAt, resolveStoreRoot, type CredentialsProvider } from './store.js';

/**
 * The store and registry operations of the CLI (`pull`, `push`, `load`, `save`, `images`) for
 * programs, over the same helpers: the store opened at the same root, the registry client
 * with the same credentials. Each rejects with a TsbuildError; CANCELLED when `signal` aborts.
 */

/** Options every operation takes. */
export interface StoreOptions {
  /** The store directory. Default: $TSBUILD_ROOT, else $XDG_DATA_HOME/tsbuild, else ~/.local/share/tsbuild. */
  readonly root?: string;
  readonly signal?: AbortSignal;
  /** Default: process.cwd(). */
  readonly cwd?: string;
  /** Default: process.env (auth files, TSBUILD_ROOT). */
  readonly env?: NodeJS.ProcessEnv;
}

/** Options of the operations that reach a registry. */
export interface RegistryOptions extends StoreOptions {
  readonly credentials?: CredentialsProvider;
  readonly insecureRegistries?: readonly string[];
  readonly caFiles?: readonly string[];
  readonly logger?: Logger;
}

const STORE_KEYS = ['root', 'signal', 'cwd', 'env'] as const;
const REGISTRY_KEYS = [...STORE_KEYS, 'credentials', 'insecureRegistries', 'caFiles', 'logger'] as const;

interface Opened {
  readonly store: Store;
  readonly signal: AbortSignal;
  readonly env: NodeJS.ProcessEnv;
  readonly cwd: string;
}

/** Checks the keys, opens the store, runs `fn`; an abort becomes CANCELLED. */
async function withStore<T>(name: string, options: object, known: readonly string[], fn: (s: Opened) => Promise<T>): Promise<T> {
  if (options === null || typeof options !== 'object') throw new TsbuildError('USAGE', `${name}() takes an options object`);
  checkKeys(options, known, `${name}()`);
  checkCommon(options as Record<string, unknown>);
  const o = options as StoreOptions;
  const signal = o.signal ?? new AbortController().signal;
  try {
    signal.throwIfAborted();
    const env = o.env ?? process.env;
    const cwd = o.cwd ?? process.cwd();
    const store = await openStoreAt(resolveStoreRoot(o.root, { env, cwd }), signal);
    return await fn({ store, signal, env, cwd });
  } catch (err) {
    throw asCancelled(err, signal);
  }
}

async function withRegistry<T>(o: RegistryOptions, s: Opened, fn: (client: RegistryClient) => Promise<T>): Promise<T> {
  const client = await openRegistryClient({ env: s.env, credentials: o.credentials, insecureRegistries: o.insecureRegistries, caFiles: o.caFiles, logger: o.logger ?? defaultLogger(), signal: s.signal });
  try {
    return await fn(client);
  } finally {
    await client.close();
  }
}

export interface PullResult {
  /** The config digest (image ID); with `allPlatforms`, of the first image. */
  readonly imageId: string;
  /** With `allPlatforms` and a multi-platform reference: the store index the name is tagged with, and its platforms. */
  readonly index?: { readonly digest: string; readonly platforms: readonly string[] };
  /** The full reference the store tags it with. */
  readonly name: string;
  /** `registry/repository@digest` of what the registry served. */
  readonly repoDigest: string;
  /** Unpacks at pull time that failed (the image is stored whole; a build unpacks it later). */
  readonly warnings: readonly string[];
}

/**
 * Pulls `reference` into the store (as `tsbuild pull`): one image (for `platform`, default this
 * machine's), or with `allPlatforms` every image of a multi-platform reference and its index.
 * The layers of an image for this machine are unpacked into the snapshots builds start from
 * while later ones download, where builds here use overlay snapshots; `unpack: false` only
 * stores them, compressed as the registry sent them, each decompressed and checked against its
 * diff ID when first used (a store that only pushes or exports). An unpack that fails is not an error (the
 * image is stored; a build unpacks it): it is in `warnings`.
 */
export async function pull(
  reference: string,
  options: RegistryOptions & { readonly platform?: string; readonly allPlatforms?: boolean; readonly unpack?: boolean; readonly onProgress?: (p: PullProgress | PullUnpackProgress) => void } = {},
): Promise<PullResult> {
  return withStore('pull', options, [...REGISTRY_KEYS, 'platform', 'allPlatforms', 'unpack', 'onProgress'], async (s) => {
    const ref = parseReference(reference);
    const o = options as Record<string, unknown>;
    const platform = optString(o, 'platform');
    const all = optBoolean(o, 'allPlatforms') ?? false;
    const unpack = optBoolean(o, 'unpack') ?? true;
    if (all && platform !== undefined) throw new TsbuildError('USAGE', 'pull(): platform and allPlatforms exclude each other');
    return withRegistry(options, s, async (client) => {
      const { pullAllPlatforms, pullImage } = await import('../registry/index.js');
      const unpacker = unpack
        ? await (await import('../snapshot/index.js')).pullUnpacker(s.store, {
            toolPath: s.env.PATH,
            snapshotter: s.env.TSBUILD_SNAPSHOTTER === 'copy' || s.env.TSBUILD_SNAPSHOTTER === 'overlay' ? s.env.TSBUILD_SNAPSHOTTER : 'auto',
            signal: s.signal,
            ...(options.onProgress ? { onProgress: options.onProgress } : {}),
          })
        : undefined;
      const opts = { signal: s.signal, ...(options.onProgress ? { onProgress: options.onProgress } : {}), ...(unpacker ? { onImageLayers: unpacker.onImageLayers } : { keepCompressed: true }) };
      const settled = async <T>(p: Promise<T>): Promise<{ pulled: T; warnings: string[] }> => {
        const pulled = await p.catch(async (e: unknown) => {
          await unpacker?.finish('failed');
          throw e;
        });
        const warnings = (await unpacker?.finish('done')) ?? [];
        s.signal.throwIfAborted();
        return { pulled, warnings };
      };
      if (all) {
        const { pulled, warnings } = await settled(pullAllPlatforms(client, s.store, ref, opts));
        return {
          imageId: pulled.images[0]!.image.configDescriptor.digest,
          name: pulled.name,
          repoDigest: pulled.repoDigest,
          ...(pulled.index !== undefined ? { index: { digest: pulled.index.descriptor.digest, platforms: pulled.images.map((i) => formatPlatform(i.platform)) } } : {}),
          warnings,
        };
      }
      const { pulled, warnings } = await settled(pullImage(client, s.store, ref, { ...opts, ...(platform !== undefined ? { platform: parsePlatform(platform) } : {}) }));
      return { imageId: pulled.image.configDescriptor.digest, name: pulled.name, repoDigest: pulled.repoDigest, warnings };
    });
  });
}

export interface PushResult {
  /** The full destination reference. */
  readonly reference: string;
  /** The manifest digest as the registry stores it. */
  readonly digest: string;
}

/** Pushes a store image (name or ID) to `destination` (default: its own name), as `tsbuild push`. */
export async function push(
  image: string,
  options: RegistryOptions & { readonly destination?: string; readonly compression?: 'gzip' | 'zstd' | 'uncompressed'; readonly onProgress?: (p: PushProgress) => void } = {},
): Promise<PushResult> {
  return withStore('push', options, [...REGISTRY_KEYS, 'destination', 'compression', 'onProgress'], async (s) => {
    const o = options as Record<string, unknown>;
    const compression = optChoice(o, 'compression', ['gzip', 'zstd', 'uncompressed'] as const) ?? 'gzip';
    const { normalizeName, resolveImageArg } = await import('../image/index.js');
    const found = await resolveImageArg(s.store, image, { signal: s.signal });
    let name: string | undefined;
    try {
      name = found.tags.find((t) => t === normalizeName(image));
    } catch {
      name = undefined;
    }
    const destText = optString(o, 'destination') ?? name;
    if (destText === undefined) throw new TsbuildError('USAGE', `image ${image} has no name to push to`, { hint: 'pass destination: REGISTRY/REPOSITORY:TAG' });
    return withRegistry(options, s, async (client) => {
      const { pushImage, pushIndex } = await import('../registry/index.js');
      const opts = { compression, signal: s.signal, ...(options.onProgress ? { onProgress: options.onProgress } : {}) };
      // A multi-platform image: every image, then its index.
      const pushed = found.index !== undefined
        ? await pushIndex(client, s.store, { ...found.index, ...(name !== undefined ? { name } : {}) }, parseReference(destText), opts)
        : await pushImage(client, s.store, found.image, parseReference(destText), opts);
      return { reference: pushed.reference, digest: pushed.digest };
    });
  });
}

export interface LoadedImageInfo {
  readonly imageId: string;
  /** Full references the archive named it by (may be empty). */
  readonly names: readonly string[];
}

/** Loads a docker or OCI archive (tar, optionally gzipped) into the store, as `tsbuild load`. */
export async function load(file: string, options: StoreOptions = {}): Promise<LoadedImageInfo[]> {
  return withStore('load', options, STORE_KEYS, async (s) => {
    const { loadArchive } = await import('../store/archive-import.js');
    const loaded = await loadArchive(s.store, path.resolve(s.cwd, file), { signal: s.signal });
    return loaded.map((l) => ({ imageId: l.image.configDescriptor.digest, names: l.names }));
  });
}

/**
 * Writes store images (names or IDs) to an archive file, as `tsbuild save -o FILE`: a
 * multi-platform image whole in an OCI archive; a docker archive needs `platform` for one.
 */
export async function save(images: readonly string[], file: string, options: StoreOptions & { readonly format?: 'docker' | 'oci'; readonly platform?: string } = {}): Promise<void> {
  return withStore('save', options, [...STORE_KEYS, 'format', 'platform'], async (s) => {
    const o = options as Record<string, unknown>;
    const format = optChoice(o, 'format', ['docker', 'oci'] as const) ?? 'docker';
    const platformText = optString(o, 'platform');
    const platform = platformText !== undefined ? parsePlatform(platformText) : undefined;
    if (!Array.isArray(images) || images.length === 0) throw new TsbuildError('USAGE', 'save() needs at least one image');
    const { exportDockerArchive, exportOciArchive, isExportIndex } = await import('../store/archive-export.js');
    const { exportEntryFor, normalizeName, resolveImageArg } = await import('../image/index.js');
    const list = [];
    for (const arg of images) {
      const found = await resolveImageArg(s.store, arg, { signal: s.signal });
      let name: string | undefined;
      try {
        name = found.tags.find((t) => t === normalizeName(arg));
      } catch {
        name = undefined;
      }
      list.push(exportEntryFor(found, arg, name !== undefined ? [name] : [], { format, platform }));
    }
    const dest = path.resolve(s.cwd, file);
    if (format === 'oci') await exportOciArchive(s.store, list, dest, { compression: 'gzip', signal: s.signal });
    else await exportDockerArchive(s.store, list.flatMap((e) => (isExportIndex(e) ? [] : [e])), dest, { signal: s.signal });
  });
}

export interface ImageInfo {
  /** The config digest; of a multi-platform image, its index digest (as `tsbuild images` shows). */
  readonly imageId: string;
  /** `os/arch[/variant]` of each image it stands for (several for a multi-platform image). */
  readonly platforms: readonly string[];
  /** Full references (docker.io/library/x:tag), sorted; empty for a dangling image. */
  readonly tags: readonly string[];
  /** Uncompressed size of its layers. */
  readonly size: number;
  readonly created: string | undefined;
}

/** The images of the store, tagged first (by name), then dangling, as `tsbuild images` lists them. */
export async function images(options: StoreOptions = {}): Promise<ImageInfo[]> {
  return withStore('images', options, STORE_KEYS, async (s) => {
    const { imagePlatform, listStoreImages, storeImageId } = await import('../image/index.js');
    const all = await listStoreImages(s.store, { signal: s.signal });
    return all.map((i) => ({
      imageId: storeImageId(i),
      platforms: i.index !== undefined ? i.index.images.map((x) => formatPlatform(x.platform)) : [formatPlatform(imagePlatform(i.image.config))],
      tags: i.tags,
      size: i.size,
      created: i.image.config.created,
    }));
  });
}
