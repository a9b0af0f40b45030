import { lstat, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { isDigest, type Digest } from '../oci/index.js';
import type { Store } from '../store/index.js';

/**
 * The build cache as prune and df see it. The step cache is meta/step.<key>.json -> {diffId,
 * size} or {empty:true} (engine/run-step.ts writes it); its layers are blobs that no image may
 * reference. Cache mounts (RUN --mount=type=cache) live in ROOT/cache-mounts/<id>/
 * (engine/run-mounts.ts). Both formats belong to engine/; this only reads them.
 */
export interface StepCacheEntry {
  /** meta name without .json: `step.<hex>`. */
  readonly name: string;
  readonly diffId: Digest | undefined;
  readonly size: number;
  readonly mtimeMs: number;
}

export async function listStepCache(store: Store, signal?: AbortSignal): Promise<StepCacheEntry[]> {
  const names = await readdir(store.paths.meta).catch(() => [] as string[]);
  const out: StepCacheEntry[] = [];
  for (const file of names.sort()) {
    if (!file.startsWith('step.') || !file.endsWith('.json')) continue;
    const name = file.slice(0, -'.json'.length);
    const st = await lstat(join(store.paths.meta, file)).catch(() => undefined);
    if (!st) continue;
    const doc = (await store.readMeta(name, { signal, maxBytes: 64 * 1024 }).catch(() => undefined)) as { diffId?: unknown; size?: unknown } | undefined;
    const diffId = typeof doc?.diffId === 'string' && isDigest(doc.diffId) ? doc.diffId : undefined;
    out.push({ name, diffId, size: typeof doc?.size === 'number' ? doc.size : 0, mtimeMs: st.mtimeMs });
  }
  return out;
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
