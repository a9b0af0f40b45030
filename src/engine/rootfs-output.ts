import { createWriteStream } from 'node:fs';
import fsp from 'node:fs/promises';
import { applyLayer, layerFromDirectory, writeLayer } from '../layer/index.js';
import type { Digest } from '../oci/index.js';
import type { Store } from '../store/index.js';

/**
 * `--output type=local,dest=DIR`: the image's root filesystem, every layer applied in order
 * by the safe applier (whiteouts honoured, nothing written outside DIR).
 */
export async function materializeRootfs(store: Store, diffIds: readonly Digest[], dest: string, opts: { signal?: AbortSignal | undefined }): Promise<void> {
  await fsp.mkdir(dest, { recursive: true });
  const sameOwner = process.getuid?.() === 0;
  for (const d of diffIds) {
    await applyLayer(await store.blobs.openBlob(d, { signal: opts.signal }), dest, { sameOwner, ...(opts.signal ? { signal: opts.signal } : {}) });
  }
}

/** `--output type=tar,dest=FILE`: the root filesystem as one deterministic tar. */
export async function writeRootfsTar(store: Store, diffIds: readonly Digest[], dest: string, opts: { signal?: AbortSignal | undefined; sourceDateEpoch?: number | undefined }): Promise<void> {
  const tmp = await store.makeTempDir('rootfs');
  const out = `${dest}.tmp-${process.pid}`;
  try {
    await materializeRootfs(store, diffIds, tmp, opts);
    const file = createWriteStream(out);
    const epoch = opts.sourceDateEpoch;
    await writeLayer(layerFromDirectory(tmp, { ...(epoch !== undefined ? { sourceDateEpoch: epoch } : {}), ...(opts.signal ? { signal: opts.signal } : {}) }), file, {
      ...(epoch !== undefined ? { sourceDateEpoch: epoch } : {}),
      ...(opts.signal ? { signal: opts.signal } : {}),
    });
    await fsp.rename(out, dest);
  } catch (e) {
    await fsp.rm(out, { force: true });
    throw e;
  } finally {
    await store.removeTree(tmp);
  }
}
