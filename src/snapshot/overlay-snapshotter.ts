import type { LayerIndex } from '../layer/layer-index.js';
import type { Digest } from '../oci/index.js';
import { DEFAULT_MOUNT_POINTS, type SandboxCapabilities } from '../sandbox/index.js';
import { captureUpperDir, pruneMountPoints } from './capture.js';
import type { Store } from '../store/index.js';
import type { HostFilesystem } from './host-fs.js';
import { chainId } from './names.js';
import type { LayerChain, PrepareOptions, Snapshotter, StepSnapshot } from './snapshotter.js';

/**
 * Overlay snapshots (DESIGN.md "Snapshots come from overlayfs"): the step runs on an overlay of
 * kept layer snapshots; its upper dir is the change, and becomes the snapshot of its layer.
 */
export function overlaySnapshotter(store: Store, hostFs: HostFilesystem, capabilities: SandboxCapabilities): Snapshotter {
  return {
    kind: 'overlay',
    async prepare(chain: LayerChain, opts: PrepareOptions): Promise<StepSnapshot> {
      const mountPoints = [...DEFAULT_MOUNT_POINTS, ...opts.mountPoints];
      const lowerDirs = await ensureLowerDirs(store, hostFs, chain.layers.map((l) => l.diffId), (i) => chain.indexes[i]?.(), { signal: opts.signal });
      const upperDir = await store.makeTempDir('upper');
      const workDir = await store.makeTempDir('work').catch(async (e: unknown) => {
        await hostFs.removeTree(upperDir).catch(() => undefined);
        throw e;
      });
      const captureOpts = { capabilities, lowerDirs, mountPoints, ...(opts.signal ? { signal: opts.signal } : {}) };
      let committed = false;
      /** Mount points the capture left out, for commit to delete. */
      let dropped: ReadonlySet<string> | undefined;
      return {
        rootfs: { lowerDirs, upperDir, workDir },
        async capture() {
          return captureUpperDir(upperDir, { ...captureOpts, onDropped: (d) => (dropped = d) });
        },
        async commit(layer) {
          // The upper dir is the next steps' lower dir: kept as this layer's snapshot, holding
          // exactly what the layer holds. A step that changed nothing keeps nothing.
          if (layer === undefined) return;
          await pruneMountPoints(upperDir, captureOpts, dropped);
          await store.commitSnapshot(upperDir, layer, { signal: opts.signal });
          committed = true;
        },
        async discard() {
          if (!committed) await hostFs.removeTree(upperDir).catch(() => undefined);
          await hostFs.removeTree(workDir).catch(() => undefined);
        },
      };
    },
  };
}

/** What ensureLowerDirs is told and tells as it goes. */
export interface EnsureLowerDirsOptions {
  readonly signal?: AbortSignal | undefined;
  /**
   * Resolves once layer `i`'s blob is in the store: a pull still downloading the layers above
   * unpacks the ones it has (default: every layer is stored already).
   */
  readonly stored?: ((i: number) => Promise<void>) | undefined;
  /** Told when layer `i`'s tree starts being written and when its lower dir is in place. */
  readonly onLayer?: ((i: number, status: 'extracting' | 'unpacked') => void) | undefined;
}

/**
 * Overlay lower directories for a stack of layers (bottom first), built once and kept in the
 * store's snapshots/; the same names whoever asks first, a RUN step or a pull:
 *  - a layer with no whiteouts is unpacked alone into snapshots/<diffId>;
 *  - a RUN layer's snapshot is the overlay upper dir of the step itself (StepSnapshot.commit),
 *    whose whiteouts are overlay's own 0/0 devices and opaque xattrs;
 *  - a layer with OCI whiteouts and no snapshot (a pulled or loaded layer) cannot stand
 *    alone as a lower dir, so everything up to it is flattened into one snapshot named by
 *    the chain of diff IDs.
 * Layers are unpacked through the host filesystem capability (in the user namespace for an
 * ordinary user, where their owners are real: DESIGN.md "Rootless"), each into a temp dir
 * committed with one rename (never a half-written snapshot). `indexOf(i)` is asked only for
 * a layer that has no snapshot yet. Two callers of one process wanting the same snapshot
 * share one unpack (a RUN step waits for the unpack its base image's pull started).
 */
export async function ensureLowerDirs(
  store: Store,
  hostFs: HostFilesystem,
  diffIds: readonly Digest[],
  indexOf: (i: number) => LayerIndex | undefined | Promise<LayerIndex | undefined>,
  opts: EnsureLowerDirsOptions = {},
): Promise<string[]> {
  const { signal } = opts;
  let lowers: string[] = [];
  for (let i = 0; i < diffIds.length; i++) {
    await opts.stored?.(i);
    const diffId = diffIds[i]!;
    if (await store.hasSnapshot(diffId)) {
      lowers.push(store.snapshotPath(diffId));
      opts.onLayer?.(i, 'unpacked');
      continue;
    }
    const index = await indexOf(i);
    const clean = index !== undefined && index.whiteouts.length === 0 && index.opaqueDirs.length === 0;
    const onStart = (): void => opts.onLayer?.(i, 'extracting');
    if (clean) {
      lowers.push(await unpackInto(store, hostFs, [diffId], diffId, { signal, onStart }));
    } else {
      const below = diffIds.slice(0, i + 1);
      lowers = [await unpackInto(store, hostFs, below, chainId(below), { signal, onStart })];
    }
    opts.onLayer?.(i, 'unpacked');
  }
  return lowers;
}

/** Unpacks in progress in this process, by store root and snapshot name. */
const unpacking = new Map<string, Promise<string>>();

async function unpackInto(store: Store, hostFs: HostFilesystem, diffIds: readonly Digest[], name: Digest, opts: { readonly signal?: AbortSignal | undefined; readonly onStart?: () => void }): Promise<string> {
  const key = `${store.root}\0${name}`;
  let started = false;
  const start = (): void => {
    if (!started) opts.onStart?.();
    started = true;
  };
  const running = unpacking.get(key);
  if (running !== undefined) {
    start();
    // The other caller's unpack failed or was cancelled (its signal, not ours): ours is tried.
    const done = await running.catch(() => undefined);
    if (done !== undefined) return done;
    opts.signal?.throwIfAborted();
  }
  if (await store.hasSnapshot(name)) return store.snapshotPath(name);
  const again = unpacking.get(key);
  if (again !== undefined && again !== running) return again;
  start();
  const p = (async () => {
    const tmp = await store.makeTempDir('snapshot');
    try {
      for (const d of diffIds) await hostFs.unpackLayer(store, d, tmp, opts.signal);
      await store.commitSnapshot(tmp, name, { signal: opts.signal });
    } catch (e) {
      await hostFs.removeTree(tmp).catch(() => undefined);
      throw e;
    }
    return store.snapshotPath(name);
  })();
  unpacking.set(key, p);
  try {
    return await p;
  } finally {
    if (unpacking.get(key) === p) unpacking.delete(key);
  }
}
