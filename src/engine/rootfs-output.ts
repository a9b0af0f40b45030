import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import fsp from 'node:fs/promises';
import { applyLayer, layerFromDirectory, writeLayer } from '../layer/index.js';
import type { Digest } from '../oci/index.js';
import type { Store } from '../store/index.js';

/**
 * `--output type=local,dest=DIR`: the image's root filesystem, every layer applied in order
 * by the safe applier (whiteouts honoured, nothing written outside DIR). `dropSpecial`: the
 * directory is for the host, not a sandbox: no device nodes, no setuid/setgid bits, no file
 * capabilities (see ApplyLayerOptions), each reported through `onWarning`.
 */
export async function materializeRootfs(
  store: Store,
  diffIds: readonly Digest[],
  dest: string,
  opts: { signal?: AbortSignal | undefined; dropSpecial?: boolean | undefined; onWarning?: ((message: string) => void) | undefined },
): Promise<void> {
  await fsp.mkdir(dest, { recursive: true });
  const sameOwner = process.getuid?.() === 0;
  for (const d of diffIds) {
    await applyLayer(await store.blobs.openBlob(d, { signal: opts.signal }), dest, {
      sameOwner,
      ...(opts.signal ? { signal: opts.signal } : {}),
      ...(opts.dropSpecial ? { dropSpecial: true, onWarning: opts.onWarning } : {}),
    });
  }
}

/** `--output type=tar,dest=FILE`: the root filesystem as one deterministic tar. */
export async function writeRootfsTar(store: Store, diffIds: readonly Digest[], dest: string, opts: { signal?: AbortSignal | undefined; sourceDateEpoch?: number | undefined }): Promise<void> {
  return writeRootfsTrees(store, [{ subdir: '', diffIds }], dest, opts);
}

/**
 * Several root filesystems in one tar, each under its directory (a multi-platform build's
 * `type=tar`: `linux_amd64/`, `linux_arm64/`, as buildx writes it).
 */
export async function writeRootfsTrees(store: Store, trees: ReadonlyArray<{ readonly subdir: string; readonly diffIds: readonly Digest[] }>, dest: string, opts: { signal?: AbortSignal | undefined; sourceDateEpoch?: number | undefined }): Promise<void> {
  const tmp = await store.makeTempDir('rootfs');
  // Unpredictable and O_EXCL: a symlink planted beside dest can never be opened and written through.
  const out = `${dest}.tmp-${process.pid}-${randomBytes(6).toString('hex')}`;
  try {
    for (const t of trees) await materializeRootfs(store, t.diffIds, t.subdir === '' ? tmp : path.join(tmp, t.subdir), opts);
    const file = createWriteStream(out, { flags: 'wx' });
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
