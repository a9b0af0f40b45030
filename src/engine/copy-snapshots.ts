import fsp from 'node:fs/promises';
import path from 'node:path';
import { applyLayer } from '../layer/index.js';
import { sha256Digest, type Digest } from '../oci/index.js';
import { indexTree, parseStatIndex, serializeStatIndex, userNamespaceRemoveTree, type SandboxCapabilities, type StatIndex } from '../sandbox/index.js';
import type { Store } from '../store/index.js';
import { unpackInNamespace } from './rootless.js';

/**
 * Copy-and-walk snapshots (DESIGN.md: where overlay cannot be mounted, and always for
 * --isolation=chroot|none): the stage's root filesystem is a plain directory the step writes
 * in place; the change is found by walking the tree and comparing it with a stat index taken
 * before (sandbox/copy-diff.ts).
 *
 * The merged tree of a chain of layers is kept in the store between steps and builds, with
 * its stat index, as snapshots/<id> = { root/, index.jsonl } where id = rootfsTreeId(chain).
 * A step claims the tree of its parent chain (one rename, so two builds never share one),
 * and after the step commits it under the chain that includes its layer. So a run of RUN
 * steps unpacks the image once, and each step costs one stat walk plus reading the files it
 * changed; files whose stat did not change are never read again. A chain with no kept tree
 * starts from the longest kept prefix (then the layers after it are applied and the tree is
 * walked again), else from nothing. gc removes these trees like any unreferenced snapshot.
 */
export interface CopyRootfs {
  /** The claimed store temp dir: `root/` and `index.jsonl`. */
  readonly container: string;
  /** The root filesystem the step runs on. */
  readonly root: string;
  /** Stat index of `root` as it is now. */
  readonly index: StatIndex;
}

const INDEX_FILE = 'index.jsonl';

/** Name of the kept merged tree of a chain of layers (not a layer digest). */
export function rootfsTreeId(diffIds: readonly Digest[]): Digest {
  return sha256Digest(`tsbuild-rootfs:${diffIds.join(',')}`);
}

export interface ClaimOptions {
  readonly capabilities: SandboxCapabilities;
  readonly signal?: AbortSignal | undefined;
}

/** A private merged tree for `diffIds` (bottom first), with its stat index. */
export async function claimRootfs(store: Store, diffIds: readonly Digest[], opts: ClaimOptions): Promise<CopyRootfs> {
  const caps = opts.capabilities;
  const rootless = caps.isRoot ? undefined : caps;
  const remove = rootless ? userNamespaceRemoveTree(rootless) : (p: string) => store.removeTree(p);
  for (let n = diffIds.length; n >= 0; n--) {
    opts.signal?.throwIfAborted();
    const container = store.tempPath('rootfs');
    try {
      await fsp.rename(store.snapshotPath(rootfsTreeId(diffIds.slice(0, n))), container);
    } catch {
      continue; // not kept (or claimed by another build just now)
    }
    try {
      return await complete(store, container, diffIds.slice(n), n === diffIds.length, opts);
    } catch (e) {
      await remove(container).catch(() => undefined);
      throw e;
    }
  }
  const container = await store.makeTempDir('rootfs');
  try {
    await fsp.mkdir(path.join(container, 'root'), { mode: 0o755 });
    return await complete(store, container, diffIds, false, opts);
  } catch (e) {
    await remove(container).catch(() => undefined);
    throw e;
  }
}

async function complete(store: Store, container: string, missing: readonly Digest[], indexed: boolean, opts: ClaimOptions): Promise<CopyRootfs> {
  const root = path.join(container, 'root');
  const caps = opts.capabilities;
  for (const d of missing) {
    if (!caps.isRoot) await unpackInNamespace(caps, store, d, root, opts.signal);
    else await applyLayer(await store.blobs.openBlob(d, { signal: opts.signal }), root, { sameOwner: true, ...(opts.signal ? { signal: opts.signal } : {}) });
  }
  let index: StatIndex | undefined;
  if (indexed && missing.length === 0) {
    index = await fsp
      .readFile(path.join(container, INDEX_FILE), 'utf8')
      .then(parseStatIndex)
      .catch(() => undefined); // unreadable index: walk again
  }
  await fsp.rm(path.join(container, INDEX_FILE), { force: true });
  index ??= await indexTree(root, { capabilities: caps, signal: opts.signal });
  return { container, root, index };
}

/** Keeps the tree (now the state after the step) and its index for the chain `diffIds`. */
export async function keepRootfs(store: Store, tree: CopyRootfs, index: StatIndex, diffIds: readonly Digest[], signal?: AbortSignal): Promise<void> {
  await fsp.writeFile(path.join(tree.container, INDEX_FILE), serializeStatIndex(index), { mode: 0o600 });
  await store.commitSnapshot(tree.container, rootfsTreeId(diffIds), { signal });
}
