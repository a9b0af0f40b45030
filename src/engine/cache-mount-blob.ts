import { createHash, randomBytes } from 'node:crypto';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { TsbuildError, isAbortError } from '../errors.js';
import type { StoredLayer } from '../image/index.js';
import { layerFromDirectory } from '../layer/index.js';
import { isDigest, type Digest } from '../oci/index.js';
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
    if (!(await hasEntries(dir))) return undefined;
    return await packTree(store, dir, opts);
  } finally {
    release?.();
  }
}

async function hasEntries(dir: string): Promise<boolean> {
  const names = await fsp.readdir(dir).catch((e: NodeJS.ErrnoException) => {
    if (e.code === 'ENOENT') return [] as string[];
    throw e;
  });
  return names.length > 0;
}

/** The tar of `dir` (the caller holds the mount's lock). */
async function packTree(store: Store, dir: string, opts: CacheMountBlobOptions): Promise<StoredLayer> {
  const entries: HostLayerEntry[] = [];
  const owner = (uid: number, gid: number) => opts.hostFs.imageOwner(uid, gid);
  for await (const e of layerFromDirectory(dir, { prefix: ROOT_NAME, signal: opts.signal, ownership: (st) => owner(st.uid, st.gid) })) {
    const { source: _source, ...rest } = e;
    entries.push(e.type === 'file' ? { ...rest, sourcePath: path.join(dir, e.path.slice(ROOT_NAME.length + 1)) } : rest);
  }
  return opts.hostFs.writeLayer(store, entries, { signal: opts.signal });
}

/**
 * The blob a mount's tree was last packed into or restored from, with the tree's stamp then:
 * `cache-mounts/<id hash>.blob.json`, beside the mount (and its `.lock`). An export whose tree
 * has the same stamp reuses the blob instead of reading every file again.
 */
interface PackedRecord {
  readonly stamp: string;
  readonly diffId: Digest;
  readonly size: number;
}

function recordFile(dir: string): string {
  return `${dir}.blob.json`;
}

async function readPacked(dir: string): Promise<PackedRecord | undefined> {
  const text = await fsp.readFile(recordFile(dir), 'utf8').catch(() => undefined);
  if (text === undefined || text.length > 4096) return undefined;
  try {
    const r = JSON.parse(text) as Partial<PackedRecord>;
    return typeof r.stamp === 'string' && typeof r.diffId === 'string' && isDigest(r.diffId) && typeof r.size === 'number' ? { stamp: r.stamp, diffId: r.diffId, size: r.size } : undefined;
  } catch {
    return undefined;
  }
}

/** Written through a temp name; a record that cannot be written only costs a pack next time. */
async function writePacked(dir: string, record: PackedRecord): Promise<void> {
  const file = recordFile(dir);
  const tmp = `${file}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  try {
    await fsp.writeFile(tmp, JSON.stringify(record));
    await fsp.rename(tmp, file);
  } catch {
    await fsp.rm(tmp, { force: true }).catch(() => undefined);
  }
}

/**
 * A cheap stat index of a tree: every entry's path, type and mode, owner, size, mtime, ctime and
 * inode (nanoseconds), hashed in sorted order; no file is read. Any write to the tree changes a
 * ctime (which no user call can set back), a rename or removal changes the listing, so an equal
 * stamp means the tree is as it was.
 */
export async function treeStamp(dir: string, signal?: AbortSignal): Promise<string> {
  const hash = createHash('sha256');
  const visit = async (abs: string, rel: string): Promise<void> => {
    signal?.throwIfAborted();
    const st = await fsp.lstat(abs, { bigint: true });
    hash.update(`${JSON.stringify(rel)} ${st.mode} ${st.uid} ${st.gid} ${st.size} ${st.mtimeNs} ${st.ctimeNs} ${st.ino} ${st.nlink}\n`);
    if (!st.isDirectory()) return;
    for (const name of (await fsp.readdir(abs)).sort()) await visit(path.join(abs, name), rel === '' ? name : `${rel}/${name}`);
  };
  await visit(dir, '');
  return `sha256:${hash.digest('hex')}`;
}

/**
 * Cache mount `id` as a blob for an export, held in the session's lease from before the export
 * reads it to the session's end (so a concurrent `prune` cannot remove it mid-upload). When the
 * tree is unchanged since it was last packed or restored here (treeStamp), that blob is reused
 * (`reused: true`) instead of packing the tree again; when that blob is gone (pruned), the tree
 * is packed. Undefined when the mount does not exist or is empty.
 */
export async function cacheMountBlob(session: BuildSession, id: string): Promise<{ readonly layer: StoredLayer; readonly reused: boolean } | undefined> {
  const { store, signal } = session;
  const dir = cacheDir(store, id);
  const hostFs = await session.hostFs();
  await fsp.mkdir(path.dirname(dir), { recursive: true });
  const release = await holdCacheLock(dir, { wait: true, signal });
  try {
    if (!(await hasEntries(dir))) return undefined;
    const what = `cache mount ${JSON.stringify(id)}`;
    // Taken before packing: a write during the pack makes the next export pack again.
    const stamp = await treeStamp(dir, signal);
    const known = await readPacked(dir);
    if (known?.stamp === stamp && (await store.blobs.hasBlob(known.diffId))) {
      const layer: StoredLayer = { diffId: known.diffId, size: known.size };
      try {
        // Held, then checked again: a prune between the look and the hold shows here.
        await session.holdLayers([layer], what, false);
        return { layer, reused: true };
      } catch (e) {
        if (!(e instanceof TsbuildError && e.code === 'BLOB_NOT_FOUND') || (await store.blobs.hasBlob(known.diffId))) throw e;
      }
    }
    // A blob written now is young (gc's grace keeps it); held from here on, it stays however
    // long the upload takes. Only a prune told to ignore the grace (`--filter until=0s`) can
    // take it between the write and the hold: then it is packed once more.
    for (let attempt = 1; ; attempt++) {
      const layer = await packTree(store, dir, { hostFs, signal });
      try {
        await session.holdLayers([layer], what, false);
      } catch (e) {
        if (attempt < 2 && e instanceof TsbuildError && e.code === 'BLOB_NOT_FOUND' && !(await store.blobs.hasBlob(layer.diffId))) continue;
        throw e;
      }
      await writePacked(dir, { stamp, diffId: layer.diffId, size: layer.size });
      return { layer, reused: false };
    }
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
    // The tree is the blob's now: an export before anything writes to it reuses the blob.
    const size = (await store.blobs.statBlob(diffId))?.size;
    if (size !== undefined) await writePacked(dir, { stamp: await treeStamp(dir, opts.signal), diffId, size });
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
