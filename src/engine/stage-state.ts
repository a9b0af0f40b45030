import type { StateKey } from '../cache/index.js';
import type { ImageConfig } from '../oci/index.js';
import type { LazyLayerIndex, StoredLayer } from '../image/index.js';
import { readViewRecord, RootfsView, saveViewRecord, UnrecordedLookup } from '../image/index.js';
import type { Store } from '../store/index.js';

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

/**
 * `use` run against the state's merged filesystem (a COPY's destination and its parents, a
 * WORKDIR's directory). Answers an earlier build recorded for the same layers
 * (image/view-record.ts) come first, and no layer index is read: a cached rebuild on a Debian
 * base reads none of its 800 KB. A question the record cannot answer sends `use` again to the
 * view read from the layers' indexes, and what that view found is added to the record. So
 * `use` must not change anything before its last lookup.
 */
export async function lookInto<T>(state: StageState, store: Store, use: (view: RootfsView) => T | Promise<T>, signal?: AbortSignal): Promise<T> {
  const diffIds = state.layers.map((l) => l.diffId);
  if (diffIds.length === 0) return use(await viewOf(state));
  const known = await readViewRecord(store, diffIds, signal);
  if (known !== undefined && !views.has(state)) {
    try {
      return await use(RootfsView.replay(known.lookups));
    } catch (e) {
      if (!(e instanceof UnrecordedLookup)) throw e;
    }
  }
  const view = await viewOf(state);
  const out = await use(view);
  // A memo: if it cannot be written, the next build reads the indexes again.
  await saveViewRecord(store, diffIds, { lookups: view.lookups() }, known, signal).catch(() => undefined);
  return out;
}

/**
 * The text of a small file of the state's merged filesystem (/etc/passwd and /etc/group for a
 * `--chown` name or a USER), or undefined where there is none: from the record of the state's
 * layers when an earlier build read it (image/view-record.ts), else from `read` (which scans the
 * layer that holds it), and then recorded.
 */
export async function readRecordedFile(state: StageState, store: Store, p: string, read: () => Promise<string | undefined>, signal?: AbortSignal): Promise<string | undefined> {
  const diffIds = state.layers.map((l) => l.diffId);
  if (diffIds.length === 0) return read();
  const known = await readViewRecord(store, diffIds, signal);
  if (known?.files.has(p)) return known.files.get(p);
  const text = await read();
  await saveViewRecord(store, diffIds, { files: [[p, text]] }, known, signal).catch(() => undefined);
  return text;
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
