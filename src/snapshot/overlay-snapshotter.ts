import type { StoredLayer } from '../image/index.js';
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
      const lowerDirs = await lowerDirsFor(store, hostFs, chain.layers, chain.indexes, opts.signal);
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

/**
 * Overlay lower directories for a stack of layers, built once and kept in the store's
 * snapshots/:
 *  - a layer with no whiteouts is unpacked alone into snapshots/<diffId>;
 *  - a RUN layer's snapshot is the overlay upper dir of the step itself (StepSnapshot.commit),
 *    whose whiteouts are overlay's own 0/0 devices and opaque xattrs;
 *  - a layer with OCI whiteouts and no snapshot (a pulled or loaded layer) cannot stand
 *    alone as a lower dir, so everything up to it is flattened into one snapshot named by
 *    the chain of diff IDs.
 * Layers are unpacked through the host filesystem capability (in the user namespace for an
 * ordinary user, where their owners are real: DESIGN.md "Rootless").
 */
async function lowerDirsFor(store: Store, hostFs: HostFilesystem, layers: readonly StoredLayer[], indexes: readonly LayerIndex[], signal?: AbortSignal): Promise<string[]> {
  let lowers: string[] = [];
  for (let i = 0; i < layers.length; i++) {
    const layer = layers[i]!;
    if (await store.hasSnapshot(layer.diffId)) {
      lowers.push(store.snapshotPath(layer.diffId));
      continue;
    }
    const index = indexes[i];
    const clean = index !== undefined && index.whiteouts.length === 0 && index.opaqueDirs.length === 0;
    if (clean) {
      lowers.push(await unpackInto(store, hostFs, [layer.diffId], layer.diffId, signal));
      continue;
    }
    const chain = chainId(layers.slice(0, i + 1).map((l) => l.diffId));
    lowers = [await unpackInto(store, hostFs, layers.slice(0, i + 1).map((l) => l.diffId), chain, signal)];
  }
  return lowers;
}

async function unpackInto(store: Store, hostFs: HostFilesystem, diffIds: readonly Digest[], name: Digest, signal?: AbortSignal): Promise<string> {
  if (await store.hasSnapshot(name)) return store.snapshotPath(name);
  const tmp = await store.makeTempDir('snapshot');
  try {
    for (const d of diffIds) await hostFs.unpackLayer(store, d, tmp, signal);
    await store.commitSnapshot(tmp, name, { signal });
  } catch (e) {
    await hostFs.removeTree(tmp).catch(() => undefined);
    throw e;
  }
  return store.snapshotPath(name);
}

