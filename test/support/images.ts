import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { readLocalImage, sealImage, type LocalImage } from '../../src/image/index.js';
import type { ImageConfig, Platform } from '../../src/oci/index.js';
import type { Store, StoredLayer } from '../../src/store/index.js';

/**
 * Makes an image in a store from layer contents (bytes, or a size for random bytes streamed
 * in 1 MiB pieces), tagged `name`. Registries treat layers as opaque blobs, so random bytes
 * are as good as tars for transport tests (and incompressible, the worst case for gzip).
 */
export async function makeStoreImage(
  store: Store,
  name: string,
  layers: readonly (Buffer | number)[],
  opts: { readonly platform?: Platform; readonly label?: string } = {},
): Promise<LocalImage> {
  const stored: StoredLayer[] = [];
  for (const l of layers) {
    const info = Buffer.isBuffer(l) ? await store.blobs.putBytes(l) : await store.blobs.putBlob(randomStream(l));
    stored.push({ diffId: info.digest, size: info.size });
  }
  const platform = opts.platform ?? { os: 'linux', architecture: 'amd64' };
  const config: ImageConfig = {
    architecture: platform.architecture,
    os: platform.os,
    ...(platform.variant !== undefined ? { variant: platform.variant } : {}),
    created: '2024-01-01T00:00:00Z',
    config: { Env: ['PATH=/bin'], ...(opts.label !== undefined ? { Labels: { test: opts.label } } : {}) },
    rootfs: { type: 'layers', diff_ids: stored.map((s) => s.diffId) },
    history: stored.map(() => ({ created: '2024-01-01T00:00:00Z', created_by: 'test' })),
  };
  const sealed = await sealImage(store, config, stored);
  await store.setTag(name, sealed.manifestDescriptor);
  return readLocalImage(store, sealed.manifestDescriptor, { name });
}

export function randomStream(size: number): Readable {
  let left = size;
  return new Readable({
    read() {
      if (left <= 0) {
        this.push(null);
        return;
      }
      const n = Math.min(left, 1024 * 1024);
      left -= n;
      this.push(randomBytes(n));
    },
  });
}
