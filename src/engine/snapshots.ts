import type { Digest } from '../oci/index.js';
import { applyLayer } from '../layer/index.js';
import type { LayerIndex } from '../layer/layer-index.js';
import { TsbuildError } from '../errors.js';
import type { Store } from '../store/index.js';
import type { StoredLayer } from '../image/index.js';
import { userNamespaceRemoveTree, type SandboxCapabilities } from '../sandbox/index.js';
import { unpackInNamespace } from './rootless.js';
import { chainId } from './lease-layers.js';

export { chainId, leaseLayers } from './lease-layers.js';

/**
 * Overlay lower directories for a stack of layers (DESIGN.md "Snapshots come from
 * overlayfs"), built once and kept in the store's snapshots/:
 *  - a layer with no whiteouts is unpacked alone into snapshots/<diffId>;
 *  - a RUN layer's snapshot is the overlay upper dir of the step itself (kept by runRun),
 *    whose whiteouts are overlay's own 0/0 devices and opaque xattrs;
 *  - a layer with OCI whiteouts and no snapshot (a pulled or loaded layer) cannot stand
 *    alone as a lower dir, so everything up to it is flattened into one snapshot named by
 *    the chain of diff IDs.
 * As an unprivileged user (`rootless` given) layers are unpacked inside the user namespace,
 * where their owners are real (DESIGN.md "Rootless").
 */
export async function lowerDirsFor(
  store: Store,
  layers: readonly StoredLayer[],
  indexes: readonly LayerIndex[],
  signal?: AbortSignal,
  rootless?: SandboxCapabilities,
): Promise<string[]> {
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
      lowers.push(await unpackInto(store, [layer.diffId], layer.diffId, signal, rootless));
      continue;
    }
    const chain = chainId(layers.slice(0, i + 1).map((l) => l.diffId));
    lowers = [await unpackInto(store, layers.slice(0, i + 1).map((l) => l.diffId), chain, signal, rootless)];
  }
  return lowers;
}

async function unpackInto(store: Store, diffIds: readonly Digest[], name: Digest, signal?: AbortSignal, rootless?: SandboxCapabilities): Promise<string> {
  if (await store.hasSnapshot(name)) return store.snapshotPath(name);
  const tmp = await store.makeTempDir('snapshot');
  try {
    for (const d of diffIds) {
      if (rootless) await unpackInNamespace(rootless, store, d, tmp, signal);
      else await applyLayer(await store.blobs.openBlob(d, { signal }), tmp, { sameOwner: true, ...(signal ? { signal } : {}) });
    }
    await store.commitSnapshot(tmp, name, { signal });
  } catch (e) {
    await (rootless ? userNamespaceRemoveTree(rootless)(tmp) : store.removeTree(tmp)).catch(() => undefined);
    throw e;
  }
  return store.snapshotPath(name);
}
