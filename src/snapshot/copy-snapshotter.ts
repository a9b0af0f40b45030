import fsp from 'node:fs/promises';
import path from 'node:path';
import { sha256Digest, type Digest } from '../oci/index.js';
import { DEFAULT_MOUNT_POINTS, type SandboxCapabilities, type StepMount } from '../sandbox/index.js';
import type { ChangeEntry } from './capture.js';
import { provisionChroot, unprovisionChroot } from './chroot-provision.js';
import { diffCopyRootfs, indexTree, makeMountPoints, parseStatIndex, removeMountPoints, serializeStatIndex, type StatIndex } from './copy-diff.js';
import type { Store } from '../store/index.js';
import type { HostFilesystem } from './host-fs.js';
import type { LayerChain, PrepareOptions, Snapshotter, StepSnapshot } from './snapshotter.js';

/**
 * Copy-and-walk snapshots (DESIGN.md: where overlay cannot be mounted, and always for
 * --isolation=chroot|none): the stage's root filesystem is a plain directory the step writes
 * in place; the change is found by walking the tree and comparing it with a stat index taken
 * before (copy-diff.ts).
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
export function copySnapshotter(store: Store, hostFs: HostFilesystem, capabilities: SandboxCapabilities): Snapshotter {
  return {
    kind: 'copy',
    async prepare(chain: LayerChain, opts: PrepareOptions): Promise<StepSnapshot> {
      const mountPoints = [...DEFAULT_MOUNT_POINTS, ...opts.mountPoints];
      const diffIds = chain.layers.map((l) => l.diffId);
      const copyOpts = { capabilities, signal: opts.signal };
      const tree = await claimRootfs(store, hostFs, diffIds, copyOpts);
      let kept = false;
      let made: Awaited<ReturnType<typeof makeMountPoints>> | undefined;
      let chrooted: Awaited<ReturnType<typeof provisionChroot>> | undefined;
      let after: StatIndex | undefined;
      try {
        // Mount points made here, not by the runtime, so their parents' mtimes can be put back.
        const namespaced = opts.runner === 'bwrap' || opts.runner === 'runc'; // chroot and none mount nothing
        made = await makeMountPoints(tree.root, namespaced ? await mountPointKinds(mountPoints, opts.mounts) : [], copyOpts);
        // chroot (and none as root) cannot mount: /dev's devices and the resolver files are
        // made in the tree for the step instead, and taken out again before the diff.
        chrooted = !namespaced && capabilities.isRoot ? await provisionChroot(tree.root, { signal: opts.signal }) : undefined;
      } catch (e) {
        await hostFs.removeTree(tree.container).catch(() => undefined);
        throw e;
      }
      return {
        rootfs: { dir: tree.root },
        async capture(): Promise<ChangeEntry[]> {
          const chrootTouched = chrooted ? await unprovisionChroot(tree.root, chrooted, tree.index) : new Set<string>();
          chrooted = undefined;
          const touched = new Set([...(made ? await removeMountPoints(tree.root, made, tree.index, copyOpts) : []), ...chrootTouched]);
          made = undefined;
          const diff = await diffCopyRootfs(tree.root, tree.index, { ...copyOpts, mountPoints, ignoreCtime: touched });
          after = diff.after as StatIndex;
          return diff.changes;
        },
        async commit(layer) {
          if (after === undefined) throw new Error('internal: commit before capture');
          await fsp.writeFile(path.join(tree.container, INDEX_FILE), serializeStatIndex(after), { mode: 0o600 });
          await store.commitSnapshot(tree.container, rootfsTreeId(layer ? [...diffIds, layer] : diffIds), { signal: opts.signal });
          kept = true;
        },
        async discard() {
          // A failed or cancelled step leaves a half-written tree: it goes. chroot's devices are
          // taken out first (they are device nodes the removal would otherwise meet).
          if (chrooted) await unprovisionChroot(tree.root, chrooted, tree.index).catch(() => undefined);
          if (!kept) await hostFs.removeTree(tree.container).catch(() => undefined);
        },
      };
    },
  };
}

/** The claimed store temp dir (`root/` and `index.jsonl`), its root filesystem and stat index. */
interface CopyRootfs {
  readonly container: string;
  readonly root: string;
  readonly index: StatIndex;
}

const INDEX_FILE = 'index.jsonl';

/** Name of the kept merged tree of a chain of layers (not a layer digest). */
function rootfsTreeId(diffIds: readonly Digest[]): Digest {
  return sha256Digest(`tsbuild-rootfs:${diffIds.join(',')}`);
}

interface ClaimOptions {
  readonly capabilities: SandboxCapabilities;
  readonly signal?: AbortSignal | undefined;
}

/** A private merged tree for `diffIds` (bottom first), with its stat index. */
async function claimRootfs(store: Store, hostFs: HostFilesystem, diffIds: readonly Digest[], opts: ClaimOptions): Promise<CopyRootfs> {
  for (let n = diffIds.length; n >= 0; n--) {
    opts.signal?.throwIfAborted();
    const container = store.tempPath('rootfs');
    try {
      await fsp.rename(store.snapshotPath(rootfsTreeId(diffIds.slice(0, n))), container);
    } catch {
      continue; // not kept (or claimed by another build just now)
    }
    try {
      return await complete(store, hostFs, container, diffIds.slice(n), n === diffIds.length, opts);
    } catch (e) {
      await hostFs.removeTree(container).catch(() => undefined);
      throw e;
    }
  }
  const container = await store.makeTempDir('rootfs');
  try {
    await fsp.mkdir(path.join(container, 'root'), { mode: 0o755 });
    return await complete(store, hostFs, container, diffIds, false, opts);
  } catch (e) {
    await hostFs.removeTree(container).catch(() => undefined);
    throw e;
  }
}

async function complete(store: Store, hostFs: HostFilesystem, container: string, missing: readonly Digest[], indexed: boolean, opts: ClaimOptions): Promise<CopyRootfs> {
  const root = path.join(container, 'root');
  for (const d of missing) await hostFs.unpackLayer(store, d, root, opts.signal);
  let index: StatIndex | undefined;
  if (indexed && missing.length === 0) {
    index = await fsp
      .readFile(path.join(container, INDEX_FILE), 'utf8')
      .then(parseStatIndex)
      .catch(() => undefined); // unreadable index: walk again
  }
  await fsp.rm(path.join(container, INDEX_FILE), { force: true });
  index ??= await indexTree(root, { capabilities: opts.capabilities, signal: opts.signal });
  return { container, root, index };
}

/** Which mount points are files (the resolver files, a bind of a file) and which directories. */
async function mountPointKinds(targets: readonly string[], mounts: readonly StepMount[]): Promise<Array<{ path: string; dir: boolean }>> {
  const files = new Set(['/etc/resolv.conf', '/etc/hosts']);
  const out: Array<{ path: string; dir: boolean }> = [];
  for (const t of targets) {
    if (t === '/etc/hostname') continue; // never mounted by our runners
    const m = mounts.find((x) => x.target === t);
    const dir = m?.source ? await fsp.stat(m.source).then((s) => s.isDirectory(), () => true) : !files.has(t);
    // The resolver files are bound only where the host has them (bwrap's --ro-bind-try).
    if (files.has(t) && !m && !(await fsp.stat(t).then(() => true, () => false))) continue;
    out.push({ path: t, dir });
  }
  return out;
}
