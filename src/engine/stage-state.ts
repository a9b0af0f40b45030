import type { StateKey } from '../cache/index.js';
import type { ImageConfig } from '../oci/index.js';
import type { LazyLayerIndex, StoredLayer } from '../image/index.js';
import { RootfsView } from '../image/index.js';

/**
 * The running state of a stage between two steps: an immutable value, replaced by each
 * step (no 30-field mutable dispatcher state, STYLE.md).
 */
export interface StageState {
  readonly config: ImageConfig;
  readonly layers: readonly StoredLayer[];
  /** Read when a step asks (viewOf, a RUN's lower layers): a cached build reads none. */
  readonly indexes: readonly LazyLayerIndex[];
  /** Cache key of the state: the base image's identity, then one key per step. */
  readonly key: StateKey;
  /** CMD was set in this stage (ENTRYPOINT then keeps it). */
  readonly cmdSet: boolean;
  /**
   * The image the stage started FROM (or the stage it is built on did), as FROM named it: only
   * to say "base image REF changed digest" when a step misses (cache-explain.ts).
   */
  readonly base?: { readonly ref: string; readonly digest: string } | undefined;
}

const views = new WeakMap<StageState, Promise<RootfsView>>();

/** The merged filesystem of the state's layers, built once per state (reading their indexes). */
export function viewOf(state: StageState): Promise<RootfsView> {
  let v = views.get(state);
  if (!v) {
    v = Promise.all(state.indexes.map((index) => index())).then((indexes) => new RootfsView(indexes));
    v.catch(() => views.delete(state));
    views.set(state, v);
  }
  return v;
}

export function emptyConfig(platform: { architecture: string; os: string; variant?: string }): ImageConfig {
  return {
    architecture: platform.architecture,
    os: platform.os,
    ...(platform.variant ? { variant: platform.variant } : {}),
    config: {},
    rootfs: { type: 'layers', diff_ids: [] },
    history: [],
  };
}
