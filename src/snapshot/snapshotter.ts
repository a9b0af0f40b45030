import type { LazyLayerIndex, StoredLayer } from '../image/index.js';
import type { Digest } from '../oci/index.js';
import type { RunnerKind, StepMount, StepRootfs } from '../sandbox/index.js';
import type { ChangeEntry } from './capture.js';

/** The layers a step runs on, bottom first, with their entry indexes. */
export interface LayerChain {
  readonly layers: readonly StoredLayer[];
  readonly indexes: readonly LazyLayerIndex[];
}

/** What a root for one process is prepared for. */
export interface PrepareOptions {
  /** The runner that will run on it: chroot and none mount nothing, so mount points are made in the tree. */
  readonly runner: RunnerKind;
  /** Paths the step's mounts cover (absolute, in the container), besides the ones every runner mounts. */
  readonly mountPoints: readonly string[];
  /** The step's mounts (a bind of a file makes a file mount point). */
  readonly mounts: readonly StepMount[];
  readonly signal?: AbortSignal | undefined;
}

/**
 * The root filesystem of one RUN step (or one `tsbuild run`), from prepare to commit or
 * discard. Contract: `discard()` is always called (in a finally) and removes whatever was not
 * committed; after `commit` the tree belongs to the store.
 */
export interface StepSnapshot {
  /** What the runner runs on. */
  readonly rootfs: StepRootfs;
  /**
   * The step's changes, once it ran (what prepare put in the tree for the run is taken out
   * first), iterated once: an overlay snapshot yields them as it reads its listing, so a step
   * that wrote 50,000 files does not hold them in one more array.
   */
  capture(): Promise<Iterable<ChangeEntry> | AsyncIterable<ChangeEntry>>;
  /** Keeps the tree for later steps, as the state after `layer` (undefined: the step changed nothing). */
  commit(layer: Digest | undefined): Promise<void>;
  discard(): Promise<void>;
}

/**
 * How a step's root filesystem is made and its change found: `overlay` (lower dirs of kept
 * layer snapshots, the upper dir is the change) or `copy` (a kept merged tree written in place,
 * the change found by a stat walk). One per build, chosen from the sandbox probe.
 */
export interface Snapshotter {
  readonly kind: 'overlay' | 'copy';
  prepare(chain: LayerChain, opts: PrepareOptions): Promise<StepSnapshot>;
}
