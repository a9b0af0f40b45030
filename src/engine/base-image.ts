import { imageStateKey } from '../cache/index.js';
import { TsbuildError, withLocation, type SourceLocation } from '../errors.js';
import { lazyLayerIndex } from '../image/index.js';
import { findLocalImage, type LocalImage } from '../image/index.js';
import { formatPlatform, parseReference, platformMatches } from '../oci/index.js';
import type { PullOptions, RegistryClient } from '../registry/index.js';
import type { Platform } from '../oci/index.js';
import type { Store } from '../store/index.js';
import { emptyConfig, type StageState } from './stage-state.js';

export type PullPolicy = 'missing' | 'always' | 'never';

export interface ImageSource {
  readonly store: Store;
  readonly platform: Platform;
  readonly pull: PullPolicy;
  /**
   * The image must be for `platform` (a build for named platforms, FROM --platform): a local
   * image for another one is not used (pulled instead, where the policy allows). Otherwise a
   * single-platform local image is used whatever its platform, as docker's classic builder does.
   */
  readonly strictPlatform?: boolean;
  /** The registry client, created on first use (a build from local images never makes one). */
  registry(): Promise<RegistryClient>;
  readonly signal?: AbortSignal | undefined;
  /** Told as a pulled image's layers are stored (the session unpacks them for its RUN steps). */
  readonly onImageLayers?: PullOptions['onImageLayers'];
}

/**
 * `found` (findImage's answer for `ref`) with the Dockerfile location of the FROM or COPY
 * --from that uses it on its error.
 */
export function locatedImage(found: Promise<LocalImage>, ref: string, location: SourceLocation): Promise<LocalImage> {
  return withLocation(location, () => found, {
    prefix: `FROM ${ref}: `,
    hint: 'add it with `tsbuild load -i IMAGE.tar`, `tsbuild import ROOTFS.tar NAME` or `tsbuild pull NAME`',
  });
}

/**
 * An image for FROM or COPY --from: the local store first (pull policy "missing", as docker
 * and podman do), else pulled from its registry; "always" pulls, "never" never does.
 */
export async function findImage(src: ImageSource, ref: string): Promise<LocalImage> {
  let mismatch: LocalImage | undefined;
  // A multi-platform image of the store without this platform: pulled where the policy allows
  // (the registry's index may have it), else that miss is the error.
  let indexMiss: TsbuildError | undefined;
  if (src.pull !== 'always') {
    const local = await findLocalImage(src.store, ref, { platform: src.platform, ...(src.signal ? { signal: src.signal } : {}) }).catch((e: unknown) => {
      if (!(e instanceof TsbuildError && e.code === 'IMAGE_NOT_FOUND') || src.pull === 'never') throw e;
      indexMiss = e;
      return undefined;
    });
    if (local && (src.strictPlatform !== true || platformMatches(src.platform, imagePlatform(local)))) return local;
    mismatch = local;
    if (/^[a-f0-9]{12,64}$/.test(ref.replace(/^sha256:/, '')) && src.pull === 'never') {
      throw new TsbuildError('IMAGE_NOT_FOUND', `image ${JSON.stringify(ref)} is not in the local store`);
    }
  }
  if (mismatch !== undefined) {
    const have = formatPlatform(imagePlatform(mismatch));
    if (src.pull === 'never') throw notForPlatform(ref, have, src.platform);
    try {
      return await pullBase(src, ref);
    } catch (e) {
      // The registry's own answer (its index lacks the platform, and which it has) says it best.
      if (src.signal?.aborted || (e instanceof TsbuildError && e.code === 'PLATFORM_UNAVAILABLE')) throw e;
      throw notForPlatform(ref, have, src.platform, e);
    }
  }
  if (indexMiss !== undefined) {
    const miss = indexMiss;
    try {
      return await pullBase(src, ref);
    } catch (e) {
      if (src.signal?.aborted || (e instanceof TsbuildError && e.code === 'PLATFORM_UNAVAILABLE')) throw e;
      throw new TsbuildError('PLATFORM_UNAVAILABLE', `${miss.message}; pulling it failed: ${e instanceof Error ? e.message : String(e)}`, { ...(miss.hint !== undefined ? { hint: miss.hint } : {}), cause: e });
    }
  }
  if (src.pull === 'never') {
    throw new TsbuildError('IMAGE_NOT_FOUND', `image ${JSON.stringify(ref)} is not in the local store and --pull=never forbids pulling it`, {
      hint: 'add it with `tsbuild pull`, `tsbuild load -i IMAGE.tar` or `tsbuild import ROOTFS.tar NAME`',
    });
  }
  return pullBase(src, ref);
}

async function pullBase(src: ImageSource, ref: string): Promise<LocalImage> {
  // undici and the registry client load only when a pull is needed (start-up time).
  const { resolveBaseImage } = await import('../registry/index.js');
  return resolveBaseImage(src.store, await src.registry(), parseReference(ref), {
    policy: src.pull === 'never' ? 'missing' : src.pull,
    platform: src.platform,
    signal: src.signal,
    ...(src.onImageLayers ? { onImageLayers: src.onImageLayers } : {}),
  });
}

/** The platform an image's config names. */
export function imagePlatform(image: LocalImage): Platform {
  const c = image.config;
  return { os: c.os, architecture: c.architecture, ...(c.variant !== undefined && c.variant !== '' ? { variant: c.variant } : {}) };
}

function notForPlatform(ref: string, have: string, want: Platform, cause?: unknown): TsbuildError {
  const why = cause instanceof Error ? `; pulling one failed: ${cause.message}` : '';
  return new TsbuildError('PLATFORM_UNAVAILABLE', `image ${JSON.stringify(ref)} in the local store is for ${have}, not ${formatPlatform(want)}${why}`, {
    hint: `put an image index with ${formatPlatform(want)} under that name (tsbuild pull --platform, or a registry that has it), or build for ${have}`,
    ...(cause !== undefined ? { cause } : {}),
  });
}

/** The start state of a stage FROM an image. */
export async function stateFromImage(store: Store, image: LocalImage, ref: string, signal?: AbortSignal): Promise<StageState> {
  const layers = image.manifest.layers.map((l, i) => {
    const diffId = image.config.rootfs.diff_ids[i];
    if (!diffId || diffId !== l.digest) {
      throw new TsbuildError('STORE_CORRUPT', `image ${ref}: layer ${i} of the stored manifest is not its uncompressed diff ID`, {
        hint: 'remove the image and load or pull it again',
      });
    }
    return { diffId, size: l.size };
  });
  return {
    config: image.config,
    layers,
    indexes: layers.map((l) => lazyLayerIndex(store, l.diffId, { signal })),
    key: imageStateKey(image.manifestDescriptor.digest),
    cmdSet: false,
    base: { ref, digest: image.manifestDescriptor.digest },
  };
}

export function scratchState(platform: Platform): StageState {
  return { config: emptyConfig(platform), layers: [], indexes: [], key: 'scratch', cmdSet: false };
}
