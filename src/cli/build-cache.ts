import { lstat, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { listStepCache as listEntries } from '../engine/index.js';
import type { Digest } from '../oci/index.js';
import type { Store } from '../store/index.js';

/**
 * The build cache as prune and df see it. The step cache (meta/step.<key>.json) belongs to
 * cache/ and is read through its parser (the engine's front door); its layers are blobs that
 * no image may reference. Cache mounts (RUN --mount=type=cache) live in
 * ROOT/cache-mounts/<id>/ (engine/run-mounts.ts).
 */
export interface StepCacheEntry {
  /** meta name without .json: `step.<hex>`. */
  readonly name: string;
  /** The layer the step made; undefined for a step that made none (or an unreadable entry). */
  readonly diffId: Digest | undefined;
  readonly size: number;
  readonly mtimeMs: number;
}

export async function listStepCache(store: Store, signal?: AbortSignal): Promise<StepCacheEntry[]> {
  return (await listEntries(store, signal)).map((e) => ({
    name: e.name,
    diffId: e.record?.kind === 'layer' ? e.record.diffId : undefined,
    size: e.record?.kind === 'layer' ? e.record.size : 0,
    mtimeMs: e.mtimeMs,
  }));
}

export function cacheMountsDir(store: Store): string {
  return join(store.root, 'cache-mounts');
}

export async function listCacheMounts(store: Store): Promise<Array<{ path: string; mtimeMs: number }>> {
  const dir = cacheMountsDir(store);
  const names = await readdir(dir).catch(() => [] as string[]);
  const out: Array<{ path: string; mtimeMs: number }> = [];
  for (const n of names.sort()) {
    const st = await lstat(join(dir, n)).catch(() => undefined);
    if (st?.isDirectory()) out.push({ path: join(dir, n), mtimeMs: st.mtimeMs });
  }
  return out;
}

/** Bytes of a directory tree (regular files, each inode once); for snapshots and cache mounts. */
export async function treeSize(dir: string, signal?: AbortSignal): Promise<number> {
  let total = 0;
  const seen = new Set<number>();
  const walk = async (d: string): Promise<void> => {
    signal?.throwIfAborted();
    const entries = await readdir(d, { withFileTypes: true }).catch(() => []);
    for (const e of entries) {
      const p = join(d, e.name);
      if (e.isDirectory()) await walk(p);
      else if (e.isFile()) {
        const st = await lstat(p).catch(() => undefined);
        if (st && !seen.has(st.ino)) {
          seen.add(st.ino);
          total += st.size;
        }
      }
    }
  };
  await walk(dir);
  return total;
}
