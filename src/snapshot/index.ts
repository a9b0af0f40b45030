/**
 * snapshot/: the root filesystems steps run on and how their changes become layers
 * (DESIGN.md "Snapshots come from overlayfs", "Rootless"). Front door (STYLE.md 2).
 *
 *   const hostFs = await hostFilesystem({ toolPath });          // root, user-namespace or unprivileged
 *   const snapshotter = await createSnapshotter('overlay', store, hostFs, capabilities);
 *   const snap = await snapshotter.prepare({ layers, indexes }, { runner, mountPoints, mounts, signal });
 *   try { run on snap.rootfs; const changes = await snap.capture(); ...; await snap.commit(layer) }
 *   finally { await snap.discard() }
 *
 * sandbox/ runs the process; this folder owns the trees in the store it runs on. The functions
 * below load their modules on first use: a fully cached build loads neither the layer code nor
 * the sandbox (start-up time), though it names snapshots for its lease.
 */
import type { StoredLayer } from '../image/index.js';
import type { LayerEntry } from '../layer/index.js';
import type { SandboxCapabilities } from '../sandbox/index.js';
import type { Store } from '../store/index.js';
import type { HostFilesystem } from './host-fs.js';
import type { Snapshotter } from './snapshotter.js';
import type { Digest } from '../oci/index.js';
import type { LayerIndex } from '../layer/layer-index.js';
import type { EnsureLowerDirsOptions } from './overlay-snapshotter.js';
import type { PullUnpacker, PullUnpackOptions } from './pull-unpack.js';

export { chainId, snapshotNamesFor } from './names.js';
export type { HostFilesystem, HostLayerEntry } from './host-fs.js';
export type { LayerChain, PrepareOptions, Snapshotter, StepSnapshot } from './snapshotter.js';
export type { ChangeEntry } from './capture.js';
export type { EnsureLowerDirsOptions } from './overlay-snapshotter.js';
export type { PullingImage, PullUnpacker, PullUnpackOptions, PullUnpackProgress } from './pull-unpack.js';

/** This process's host filesystem capability (host-fs.ts), chosen once per tool PATH. */
export async function hostFilesystem(opts: { readonly toolPath?: string | undefined; readonly signal?: AbortSignal | undefined } = {}): Promise<HostFilesystem> {
  return (await import('./host-fs.js')).hostFilesystem(opts);
}

/** The snapshotter of a kind, over `store`, touching trees through `hostFs`. */
export async function createSnapshotter(kind: 'overlay' | 'copy', store: Store, hostFs: HostFilesystem, capabilities: SandboxCapabilities): Promise<Snapshotter> {
  if (kind === 'overlay') return (await import('./overlay-snapshotter.js')).overlaySnapshotter(store, hostFs, capabilities);
  return (await import('./copy-snapshotter.js')).copySnapshotter(store, hostFs, capabilities);
}

/**
 * The overlay lower dirs of a stack of stored layers, made where missing and kept in the
 * store's snapshots/ (overlay-snapshotter.ts): what a RUN step runs on, and what a pull
 * unpacks ahead of it.
 */
export async function ensureLowerDirs(
  store: Store,
  hostFs: HostFilesystem,
  diffIds: readonly Digest[],
  indexOf: (i: number) => LayerIndex | undefined | Promise<LayerIndex | undefined>,
  opts: EnsureLowerDirsOptions = {},
): Promise<string[]> {
  return (await import('./overlay-snapshotter.js')).ensureLowerDirs(store, hostFs, diffIds, indexOf, opts);
}

/** Unpacks the layers a pull stores into build snapshots while it downloads (pull-unpack.ts). */
export async function pullUnpacker(store: Store, opts: PullUnpackOptions = {}): Promise<PullUnpacker> {
  return (await import('./pull-unpack.js')).pullUnpacker(store, opts);
}

/** The store's tree remover for any process (OpenStoreOptions.removeTree); see host-fs.ts. */
export async function removeTreeAnyOwner(dir: string, signal?: AbortSignal): Promise<void> {
  return (await import('./host-fs.js')).removeTreeAnyOwner(dir, signal);
}

/** Writes layer entries straight into the store (store-layer.ts). */
export async function writeLayerToStore(
  store: Store,
  entries: AsyncIterable<LayerEntry> | Iterable<LayerEntry>,
  opts: { readonly sourceDateEpoch?: number | undefined; readonly signal?: AbortSignal | undefined },
): Promise<StoredLayer> {
  return (await import('./store-layer.js')).writeLayerToStore(store, entries, opts);
}
