import { TsbuildError, type SourceLocation } from '../errors.js';
import { viewOfLayers } from '../image/layer-index-cache.js';
import { findLocalImage } from '../image/local-image.js';
import type { Platform } from '../oci/index.js';
import type { Store } from '../store/index.js';
import { emptyConfig, type StageState } from './stage-state.js';

/**
 * The start state of a stage FROM an image of the local store. Images resolve locally
 * first (pull policy "missing", as docker and podman do).
 * DEBT(issue 4): a missing image is pulled from its registry once the registry client lands;
 * until then the error says how to get the image into the store.
 */
export async function stateFromImage(store: Store, ref: string, platform: Platform, location: SourceLocation, signal?: AbortSignal): Promise<StageState> {
  let image;
  try {
    image = await findLocalImage(store, ref, { platform, ...(signal ? { signal } : {}) });
  } catch (e) {
    if (e instanceof TsbuildError && !e.location) throw new TsbuildError(e.code, e.message, { location, hint: e.hint, cause: e });
    throw e;
  }
  if (!image) {
    throw new TsbuildError('IMAGE_NOT_FOUND', `base image ${JSON.stringify(ref)} is not in the local store`, {
      location,
      hint: 'add it with `tsbuild load -i IMAGE.tar`, `tsbuild import ROOTFS.tar NAME` or `tsbuild pull NAME`',
    });
  }
  const layers = image.manifest.layers.map((l, i) => {
    const diffId = image.config.rootfs.diff_ids[i];
    if (!diffId || diffId !== l.digest) {
      throw new TsbuildError('STORE_CORRUPT', `image ${ref}: layer ${i} of the stored manifest is not its uncompressed diff ID`, {
        hint: 'remove the image and load or pull it again',
      });
    }
    return { diffId, size: l.size };
  });
  const { indexes } = await viewOfLayers(store, layers.map((l) => l.diffId), { signal });
  return {
    config: image.config,
    layers,
    indexes,
    key: `image:${image.manifestDescriptor.digest}`,
    cmdSet: false,
  };
}

export function scratchState(platform: Platform): StageState {
  return { config: emptyConfig(platform), layers: [], indexes: [], key: 'scratch', cmdSet: false };
}
