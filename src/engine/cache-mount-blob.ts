import { randomBytes } from 'node:crypto';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { TsbuildError, isAbortError } from '../errors.js';
import type { StoredLayer } from '../image/index.js';
import { layerFromDirectory } from '../layer/index.js';
import type { Digest } from '../oci/index.js';
import type { HostFilesystem, HostLayerEntry } from '../snapshot/index.js';
import type { Store } from '../store/index.js';
import { cacheDir, holdCacheLock } from './run-mounts.js';
import type { BuildSession } from './session.js';

/**
 * A `RUN --mount=type=cache` directory as a blob, to travel with an exported cache (issue "cache
 * that travels", exported cache mounts). The blob is an uncompressed tar of the directory in
 * layer form (the mount's root as `cache/`, then its tree in sorted order, owners as steps see
 * them), stored like a layer: written to a temp file, hashed on the way, visible only once its
 * digest is known. Restoring unpacks it next to the mount and renames it into place, so a mount
 * is either absent, the old one, or the whole restored tree.
 */

/** The tar's top directory: the mount's root, with its mode and owner. */
const ROOT_NAME = 'cache';

export interface CacheMountBlobOptions {
  readonly hostFs: HostFilesystem;
  readonly signal?: AbortSignal | undefined;
}

/**
 * Packs cache mount `id` of `store` into a blob in the store, holding the mount's lock (a
 * sharing=locked step waits; a shared one may still write, as with any copy of a live cache).
 * Undefined when the mount does not exist or is empty: there is nothing to export.
 */
export async function packCacheMount(store: Store, id: string, opts: CacheMountBlobOptions): Promise<StoredLayer | undefined> {
  const dir = cacheDir(store, id);
  await fsp.mkdir(path.dirname(dir), { recursive: true });
  const release = await holdCacheLock(dir, { wait: true, signal: opts.signal });
  try {
    const names = await fsp.readdir(dir).catch((e: NodeJS.ErrnoException) => {
      if (e.code === 'ENOENT') return [] as string[];
      throw e;
    });
    if (names.length === 0) return undefined;
    const entries: HostLayerEntry[] = [];
    const owner = (uid: number, gid: number) => opts.hostFs.imageOwner(uid, gid);
    for await (const e of layerFromDirectory(dir, { prefix: ROOT_NAME, signal: opts.signal, ownership: (st) => owner(st.uid, st.gid) })) {
      const { source: _source, ...rest } = e;
      entries.push(e.type === 'file' ? { ...rest, sourcePath: path.join(dir, e.path.slice(ROOT_NAME.length + 1)) } : rest);
    }
    return await opts.hostFs.writeLayer(store, entries, { signal: opts.signal, what: `cache mount ${JSON.stringify(id)}` });
  } finally {
    release?.();
  }
}

/**
 * Restores cache mount `id` from the blob `diffId` (in the store; verified when it was put
 * there): unpacked into a fresh directory beside the mount, then renamed into place under the
 * mount's lock. A mount that exists and is not empty is kept (`kept`): on one machine the local
 * cache is at least as fresh as an imported one. Nothing half-written is left on any failure.
 */
export async function restoreCacheMount(store: Store, id: string, diffId: Digest, opts: CacheMountBlobOptions): Promise<'restored' | 'kept'> {
  const dir = cacheDir(store, id);
  await fsp.mkdir(path.dirname(dir), { recursive: true });
  const release = await holdCacheLock(dir, { wait: true, signal: opts.signal });
  const staging = `${dir}.restore-${randomBytes(6).toString('hex')}`;
  try {
    const existing = await fsp.readdir(dir).catch((e: NodeJS.ErrnoException) => {
      if (e.code === 'ENOENT') return undefined;
      throw e;
    });
    if (existing !== undefined && existing.length > 0) return 'kept';
    await fsp.mkdir(staging);
    await opts.hostFs.unpackLayer(store, diffId, staging, opts.signal);
    const root = path.join(staging, ROOT_NAME);
    const st = await fsp.lstat(root).catch(() => undefined);
    if (!st?.isDirectory()) throw new TsbuildError('LAYER_INVALID', `cache mount blob ${diffId} has no ${ROOT_NAME}/ directory: it is not a packed cache mount`);
    if (existing !== undefined) await fsp.rmdir(dir);
    await fsp.rename(root, dir);
    return 'restored';
  } finally {
    await opts.hostFs.removeTree(staging, undefined).catch(() => undefined);
    release?.();
  }
}

/**
 * Before the first RUN of a build that mounts cache `id`: when the local mount is absent or
 * empty, the first cache source that carries the id (--cache-from, in order) gives its blob,
 * which is restored into place. Only a build that mounts the id pays for it. A blob that cannot
 * be fetched or unpacked is a warning: the mount starts empty and the build goes on.
 */
export async function importCacheMount(session: BuildSession, id: string): Promise<void> {
  const sources = session.cacheSources.filter((s) => s.cacheMount !== undefined);
  if (sources.length === 0) return;
  const names = await fsp.readdir(cacheDir(session.store, id)).catch(() => [] as string[]);
  if (names.length > 0) return;
  for (const source of sources) {
    try {
      const found = await source.cacheMount!(id, { signal: session.signal });
      if (found === undefined) continue;
      const r = await restoreCacheMount(session.store, id, found.diffId, { hostFs: await session.hostFs(), signal: session.signal });
      if (r === 'restored') session.report({ type: 'info', message: `cache mount ${JSON.stringify(id)} restored from ${source.label ?? source.name}` });
    } catch (e) {
      if (isAbortError(e) || session.signal.aborted) throw e;
      session.warn(`${source.name}: cache mount ${JSON.stringify(id)} cannot be restored, it starts empty: ${e instanceof Error ? e.message : String(e)}`);
    }
    return;
  }
}
