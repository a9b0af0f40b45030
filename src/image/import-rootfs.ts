import { createReadStream } from 'node:fs';
import type { Readable } from 'node:stream';
import type { ContainerConfig, ImageConfig, Platform } from '../oci/index.js';
import type { Store } from '../store/index.js';
import type { StoredImage } from '../store/index.js';
import { sealImage } from './seal.js';

export interface ImportOptions {
  readonly platform: Platform;
  /** Config of the new image (docker import --change), e.g. { Cmd: ['sh'] }. */
  readonly config?: ContainerConfig;
  /** RFC 3339; with SOURCE_DATE_EPOCH the import is reproducible. */
  readonly created: string;
  readonly comment?: string;
  readonly signal?: AbortSignal | undefined;
}

/** The PATH docker and BuildKit give an image that sets none. */
export const DEFAULT_PATH = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/**
 * `tsbuild import FILE REF` (as `docker import`): one layer from a root filesystem tarball
 * (plain or gzip), stored uncompressed, with a fresh config. Used to make base images
 * without a registry (busybox from Debian's busybox-static, Debian from debootstrap).
 */
export async function importRootfsTar(store: Store, file: string, opts: ImportOptions): Promise<StoredImage> {
  const head = await firstBytes(file);
  // zlib on use: the image/ front door is loaded by commands that never gunzip.
  const gzip = head[0] === 0x1f && head[1] === 0x8b ? await import('node:zlib') : undefined;
  let source: Readable = createReadStream(file);
  if (gzip) {
    const gunzip = gzip.createGunzip();
    source.on('error', (e) => gunzip.destroy(e));
    source = source.pipe(gunzip);
  }
  const layer = await store.blobs.putBlob(source, { signal: opts.signal });
  const config: ImageConfig = {
    created: opts.created,
    architecture: opts.platform.architecture,
    os: opts.platform.os,
    ...(opts.platform.variant ? { variant: opts.platform.variant } : {}),
    config: { Env: [DEFAULT_PATH], ...opts.config },
    rootfs: { type: 'layers', diff_ids: [layer.digest] },
    history: [{ created: opts.created, created_by: 'tsbuild import', ...(opts.comment ? { comment: opts.comment } : {}) }],
  };
  return sealImage(store, config, [{ diffId: layer.digest, size: layer.size }], { signal: opts.signal });
}

async function firstBytes(file: string): Promise<Buffer> {
  const { open } = await import('node:fs/promises');
  const h = await open(file, 'r');
  try {
    const buf = Buffer.alloc(2);
    await h.read(buf, 0, 2, 0);
    return buf;
  } finally {
    await h.close();
  }
}
