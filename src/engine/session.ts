import { setMaxListeners } from 'node:events';
import { LocalStepCache, type CacheHit, type CacheKey, type CacheSource, type KeyInputsSummary, type StateKey, type StepRecord } from '../cache/index.js';
import { TsbuildError, type SourceLocation } from '../errors.js';
import type { StoredLayer } from '../image/index.js';
import type { LocalImage } from '../image/index.js';
import type { Descriptor, Platform } from '../oci/index.js';
import { formatPlatform } from '../oci/index.js';
import type { SourceRef } from '../plan/index.js';
import type { RegistryClient } from '../registry/index.js';
import type { Runner, SandboxCapabilities } from '../sandbox/index.js';
import { hostFilesystem, type HostFilesystem, type PullUnpacker, type Snapshotter } from '../snapshot/index.js';
import { Lease, type Store } from '../store/index.js';
import { findImage, locatedImage, stateFromImage, type PullPolicy } from './base-image.js';
import type { SourceRoot } from './copy-sources.js';
import type { BuildEvent, BuildReporter } from './events.js';
import { claimLeased, deferLayers, leaseLayers } from './lease-layers.js';
import type { StageState } from './stage-state.js';
import { InFlightSteps } from './in-flight.js';
import { namedContextRoot, type NamedContext } from './named-contexts.js';

/** What RUN steps (and `tsbuild run`) run with: probed and selected once per session. */
export interface BuildSandbox {
  readonly runner: Runner;
  readonly capabilities: SandboxCapabilities;
  readonly snapshotter: Snapshotter;
  readonly hostFs: HostFilesystem;
}

export interface SessionOptions {
  readonly store: Store;
  readonly signal: AbortSignal;
  readonly report: BuildReporter;
  readonly platform: Platform;
  /**
   * Base images must be for the platform asked (a build for named platforms): a local image for
   * another one is not used. Default false: a local single-platform image is used as it is.
   */
  readonly strictPlatform?: boolean | undefined;
  /** Names the build's steps in progress (`linux/arm64`) when several platforms build at once. */
  readonly stepPrefix?: string | undefined;
  /** Progress ids, shared by the sessions of one multi-platform build so that they do not collide. */
  readonly stepIds?: (() => number) | undefined;
  /** The registry client for pulls and pushes, created on first use. */
  readonly registry?: (() => Promise<RegistryClient>) | undefined;
  /** Base images: from the store first (missing), always pulled, or never. */
  readonly pull?: PullPolicy | undefined;
  /** The caller's PATH: where the sandbox looks for bwrap, runc and the other host tools. */
  readonly toolPath?: string | undefined;
  /** How RUN steps run: `--runtime`, `--isolation`, TSBUILD_SNAPSHOTTER. */
  readonly runtime?: 'bwrap' | 'runc' | undefined;
  readonly isolation?: 'auto' | 'sandbox' | 'chroot' | 'none' | undefined;
  readonly snapshotter?: 'auto' | 'overlay' | 'copy' | undefined;
  /** TSBUILD_RUN_SYNC: RUN steps' sync calls made no-ops (default) or made as they are. */
  readonly runSync?: 'suppress' | 'keep' | undefined;
  /** Cache sources asked after the local step cache, in order. */
  readonly cacheSources?: readonly CacheSource[] | undefined;
  /** Steps executing now in the builds sharing this env (compose services); default: this build's own. */
  readonly inFlight?: InFlightSteps | undefined;
  /** `--build-context NAME=VALUE`: names that replace images of the same name. */
  readonly namedContexts?: ReadonlyMap<string, NamedContext> | undefined;
}

/**
 * The resources of one build (or one `tsbuild run`), as named methods: the store and the lease
 * that keeps what the build uses out of a concurrent rmi's and prune's reach, temporary
 * directories, the stages' states and their files on disk, the sandbox (probed once), the host
 * filesystem capability, base images, the cache sources, progress. `close()` gives everything
 * back; nothing else in the engine holds a resource across steps.
 */
export class BuildSession {
  readonly store: Store;
  /** Aborted by the caller, or by the first stage that fails (fail fast, as BuildKit). */
  readonly signal: AbortSignal;
  readonly platform: Platform;
  /** The platform as keys and messages write it (linux/amd64). */
  readonly platformText: string;
  /** Where step results are recorded; the first of `cacheSources`. */
  readonly stepCache: LocalStepCache;
  readonly cacheSources: readonly CacheSource[];
  /** Steps executing now, shared with the env's other builds: one execution per key at a time. */
  readonly inFlight: InFlightSteps;
  readonly #opts: SessionOptions;
  readonly #failFast = new AbortController();
  readonly #lease: Lease;
  readonly #owned: Array<{ readonly dir: string; readonly remove: (dir: string) => Promise<void> }> = [];
  readonly #roots = new Map<string, Promise<SourceRoot>>();
  readonly #found = new Map<string, Promise<LocalImage>>();
  readonly #stages = new Map<number, StageState>();
  readonly #used = new Map<CacheKey, StepRecord>();
  /** Lazy cache hits whose bytes no one has read yet, by diff ID. */
  readonly #lazy = new Map<string, { readonly layer: StoredLayer; readonly fetch: () => Promise<void>; readonly keys: Array<{ readonly key: CacheKey; readonly inputs: KeyInputsSummary | undefined }> }>();
  #sandbox: Promise<BuildSandbox> | undefined;
  #hostFs: Promise<HostFilesystem> | undefined;
  #pullUnpacker: PullUnpacker | undefined;
  #stepId = 0;

  constructor(opts: SessionOptions) {
    this.#opts = opts;
    this.store = opts.store;
    this.signal = AbortSignal.any([opts.signal, this.#failFast.signal]);
    // Every step, layer fetch and unpack in flight listens on it (streams, pipelines, child
    // processes): dozens at once are the normal case, not a leak, and Node's warning would be
    // printed to the user (MaxListenersExceededWarning).
    setMaxListeners(0, this.signal);
    this.platform = opts.platform;
    this.platformText = formatPlatform(opts.platform);
    this.stepCache = new LocalStepCache(opts.store);
    this.cacheSources = [this.stepCache, ...(opts.cacheSources ?? [])];
    this.inFlight = opts.inFlight ?? new InFlightSteps();
    // What the session uses and makes (base layers, step layers and their snapshots, the sealed
    // image until it is tagged) is held in one lease (store/lease.ts). Layers found in the store
    // (a base image, cache hits) are deferred into it and written with the next layer a step
    // makes, the next claim, or the image at the end: a fully cached build writes it once.
    this.#lease = new Lease(opts.store);
  }

  // --- progress ---

  report(event: BuildEvent): void {
    const prefix = this.#opts.stepPrefix;
    this.#opts.report(prefix !== undefined && (event.type === 'step-start' || event.type === 'step-cached') ? { ...event, name: `[${prefix}] ${event.name}` } : event);
  }

  warn(message: string, location?: SourceLocation): void {
    this.report({ type: 'warning', message, ...(location ? { location } : {}) });
  }

  /** A fresh id for a step's progress events. */
  nextStepId(): number {
    return this.#opts.stepIds ? this.#opts.stepIds() : ++this.#stepId;
  }

  /** True when the caller cancelled (not a sibling stage's failure). */
  get cancelled(): boolean {
    return this.#opts.signal.aborted;
  }

  /** Stops every other stage: one of them failed. */
  failFast(): void {
    this.#failFast.abort();
  }

  // --- the lease ---

  /**
   * Holds a stack of layers: `found` ones (in the store already: a base, a cache hit) are
   * deferred into the lease, made ones written into it at once (lease-layers.ts).
   */
  async holdLayers(layers: readonly StoredLayer[], what: string, found: boolean): Promise<void> {
    // Lazy cache hits are not in the store yet: held once fetched (claim).
    const here = this.#lazy.size === 0 ? layers : layers.filter((l) => !this.#lazy.has(l.diffId));
    if (found) deferLayers(this.#lease, here, what);
    else await leaseLayers(this.#lease, this.store, here, what, this.signal);
  }

  /**
   * Before a step (or an output) reads `layers` (default: every layer of the build): fetches
   * the lazy cache hits among them, then writes what was deferred into the lease and checks it
   * is still there. `fetch: false` (an image only pushed, never read here): the lazy hits stay
   * lazy, fetched by a later claim if the push needs their bytes.
   */
  async claim(layers?: readonly StoredLayer[], opts: { readonly fetch?: boolean } = {}): Promise<void> {
    const lazy = opts.fetch === false ? [] : [...this.#lazy].filter(([d]) => layers === undefined || layers.some((l) => l.diffId === d));
    if (lazy.length > 0) {
      await Promise.all(lazy.map(([, l]) => l.fetch()));
      for (const [d, l] of lazy) {
        this.#lazy.delete(d);
        deferLayers(this.#lease, [l.layer], 'a cache hit');
        for (const { key, inputs } of l.keys) await this.stepCache.record(key, { kind: 'layer', diffId: l.layer.diffId, size: l.layer.size, ...(inputs ? { inputs } : {}) });
      }
    }
    return claimLeased(this.#lease, this.store, this.signal);
  }

  /** Holds an image (the sealed target until it is tagged, the image `tsbuild run` runs). */
  async holdImage(manifest: Descriptor): Promise<void> {
    await this.#lease.hold({ roots: [manifest] }, { signal: this.signal });
  }

  // --- cache ---

  /**
   * The first hit of the cache sources, in order (the sources only answer; what a hit needs is
   * done here): a hit of an imported source is kept in the local step cache, a lazy one once its
   * bytes are fetched (claim); every hit is noted for --cache-to.
   */
  async lookup(key: CacheKey): Promise<CacheHit | undefined> {
    return (await this.lookupWithSource(key))?.hit;
  }

  /**
   * As lookup, with the label of the source that answered (`local`, `registry REF`, `local DIR`);
   * `imported`: a source other than the local step cache answered (the hit is now recorded, or
   * will be once its bytes are fetched, in the local step cache).
   */
  async lookupWithSource(key: CacheKey): Promise<{ readonly hit: CacheHit; readonly source: string; readonly imported: boolean } | undefined> {
    let hit: CacheHit | undefined;
    let local = true;
    let answered: CacheSource | undefined;
    for (const source of this.cacheSources) {
      hit = await source.lookup(key, { signal: this.signal });
      answered = source;
      if (hit !== undefined) break;
      local = false;
    }
    if (hit === undefined || answered === undefined) return undefined;
    const source = answered.label ?? answered.name;
    // An imported hit keeps the inputs its source's entry carries, so a later miss of the step
    // on this machine can say what changed (cache-explain.ts).
    const inputs = local ? undefined : await answered.inputsOf?.(key, { signal: this.signal }).catch(() => undefined);
    const record: StepRecord = { ...(hit.kind === 'layer' ? { kind: 'layer', diffId: hit.layer.diffId, size: hit.layer.size } : { kind: 'empty' }), ...(inputs ? { inputs } : {}) };
    this.#used.set(key, record);
    if (hit.kind === 'layer' && hit.fetch !== undefined && !this.#lazy.has(hit.layer.diffId) && !(await this.store.blobs.hasBlob(hit.layer.diffId))) {
      // Recorded in the local step cache once its bytes are here (claim).
      this.#lazy.set(hit.layer.diffId, { layer: hit.layer, fetch: hit.fetch, keys: [{ key, inputs }] });
    } else if (hit.kind === 'layer' && this.#lazy.has(hit.layer.diffId)) {
      this.#lazy.get(hit.layer.diffId)!.keys.push({ key, inputs });
    } else if (!local) {
      // An imported hit is kept in the local step cache: the next build here finds it without the source.
      await this.stepCache.record(key, record);
    }
    return { hit, source, imported: !local };
  }

  /**
   * The key each step of this build ended with (hit or made), by step identity text: the
   * `explain` map an export of this build's cache carries, so a miss on another machine can say
   * why (cache-explain.ts).
   */
  readonly stepKeys = new Map<string, CacheKey>();

  /**
   * The cache mount ids this build's RUN steps mounted, each with its import from the cache
   * sources (started by the first RUN that mounts it): what `--cache-to ...,mounts=all` exports.
   */
  readonly cacheMounts = new Map<string, Promise<void>>();

  async record(key: CacheKey, record: StepRecord): Promise<void> {
    await this.stepCache.record(key, record);
    this.#used.set(key, record);
  }

  /** The inputs summary of a key: the local step record's, else the first cache source's that has one. */
  async inputsOf(key: CacheKey): Promise<KeyInputsSummary | undefined> {
    for (const source of this.cacheSources) {
      const found = source === this.stepCache ? await this.stepCache.inputsOf(key, { signal: this.signal }).catch(() => undefined) : await source.inputsOf?.(key, { signal: this.signal });
      if (found !== undefined) return found;
    }
    return undefined;
  }

  /** The step results this build used or made, by key (what --cache-to exports). */
  usedSteps(): ReadonlyMap<CacheKey, StepRecord> {
    return this.#used;
  }

  /**
   * The copy aliases (engine/copy-step.ts copyAlias) this build reached each key by, newest
   * first: what --cache-to exports with the key's entry.
   */
  readonly #aliases = new Map<CacheKey, string[]>();

  noteAlias(alias: string, key: CacheKey): void {
    const list = this.#aliases.get(key) ?? [];
    if (!list.includes(alias)) this.#aliases.set(key, [alias, ...list]);
  }

  aliasesOf(key: CacheKey): readonly string[] | undefined {
    return this.#aliases.get(key);
  }

  /** The key an imported cache holds under copy alias `alias` (the first source that has it). */
  async importedAliasKey(alias: string): Promise<CacheKey | undefined> {
    for (const source of this.cacheSources) {
      if (source === this.stepCache || source.aliasKey === undefined) continue;
      const key = await source.aliasKey(alias, { signal: this.signal }).catch(() => undefined);
      if (key !== undefined) return key;
    }
    return undefined;
  }

  // --- temporary directories ---

  /** A private directory in the store's tmp, removed by close(). */
  async tempDir(kind: string): Promise<string> {
    const dir = await this.store.makeTempDir(kind);
    this.#owned.push({ dir, remove: (d) => this.store.removeTree(d) });
    return dir;
  }

  // --- images and stages ---

  /**
   * An image for FROM or COPY --from, by the pull policy (base-image.ts): found (or pulled)
   * once per session and reference, however many stages and steps use it.
   */
  resolveImage(ref: string, location: SourceLocation, platform?: Platform): Promise<LocalImage> {
    const named = this.#opts.namedContexts?.get(ref);
    // FROM a directory context is a COPY of it (stages.ts); its files are read by sourceRoot.
    if (named?.kind === 'dir') return Promise.reject(new Error(`internal: build context ${JSON.stringify(ref)} is a directory, not an image`));
    const real = named?.kind === 'image' ? named.ref : ref;
    return locatedImage(this.#find(real, platform), real, location);
  }

  /**
   * Starts finding the images a stage will read (the plan's imageSources: COPY --from and RUN
   * --mount from= an image), so that a pull overlaps the steps before their use. Errors are
   * reported where the image is used, with that step's location.
   */
  prefetchImages(refs: readonly string[]): void {
    for (const ref of refs) {
      const named = this.#opts.namedContexts?.get(ref);
      if (named?.kind === 'dir') continue;
      this.#find(named?.kind === 'image' ? named.ref : ref).catch(() => undefined);
    }
  }

  /** The directory of a named build context that is one (`--build-context NAME=DIR`); else undefined. */
  namedDirectory(ref: string): { readonly dir: string; readonly value: string } | undefined {
    const named = this.#opts.namedContexts?.get(ref);
    return named?.kind === 'dir' ? named : undefined;
  }

  /** An image reference as progress shows it: a named context's image, with the context's name. */
  imageText(ref: string): string {
    const named = this.#opts.namedContexts?.get(ref);
    return named?.kind === 'image' ? `${named.ref} [context ${ref}]` : ref;
  }

  /** The start state of a stage FROM an image. */
  async stateFromImage(ref: string, location: SourceLocation, platform?: Platform): Promise<StageState> {
    return stateFromImage(this.store, await this.resolveImage(ref, location, platform), ref, this.signal);
  }

  /** `platform`: a stage's FROM --platform (always strict); default the session's. */
  #find(ref: string, platform?: Platform): Promise<LocalImage> {
    const id = platform === undefined ? ref : `${ref}\0${formatPlatform(platform)}`;
    let p = this.#found.get(id);
    if (!p) {
      p = findImage(platform === undefined ? this.#images() : { ...this.#images(), platform, strictPlatform: true }, ref);
      this.#found.set(id, p);
    }
    return p;
  }

  stageDone(index: number, state: StageState): void {
    this.#stages.set(index, state);
  }

  /** The final state of a stage built earlier in this session. */
  stageState(index: number, location?: SourceLocation): StageState {
    const s = this.#stages.get(index);
    if (!s) throw new TsbuildError('STAGE_NOT_FOUND', `stage ${index} is not built before this step`, { ...(location ? { location } : {}) });
    return s;
  }

  /**
   * The key and layers of a stage, an image or scratch as a source, without unpacking anything
   * (copy-step.ts keys a COPY --from by them before it reads the files); undefined for a
   * directory named context, which has no state.
   */
  async sourceState(source: Exclude<SourceRef, { kind: 'context' }>, location: SourceLocation): Promise<{ key: StateKey; layers: readonly StoredLayer[] } | undefined> {
    switch (source.kind) {
      case 'scratch':
        return { key: 'scratch', layers: [] };
      case 'stage': {
        const s = this.stageState(source.index, location);
        return { key: s.key, layers: s.layers };
      }
      case 'image': {
        if (this.#opts.namedContexts?.get(source.ref)?.kind === 'dir') return undefined;
        const image = await this.resolveImage(source.ref, location);
        return { key: `image:${image.manifestDescriptor.digest}`, layers: image.config.rootfs.diff_ids.map((diffId) => ({ diffId, size: 0 })) };
      }
      default:
        return source satisfies never;
    }
  }

  /**
   * The files of a stage, an image or scratch on disk (COPY --from, RUN --mount from=), with
   * the key of their state; each unpacked once per session. A directory named context has no
   * state key (undefined): like the main context, its files' content digests key the step.
   */
  async sourceRoot(source: Exclude<SourceRef, { kind: 'context' }>, location: SourceLocation): Promise<{ root: SourceRoot; key: StateKey | undefined }> {
    const named = source.kind === 'image' ? this.#opts.namedContexts?.get(source.ref) : undefined;
    if (source.kind === 'image' && named?.kind === 'dir') return { root: await namedContextRoot(source.ref, named.dir, this.signal), key: undefined };
    // Every other source has a state.
    const state = (await this.sourceState(source, location))!;
    switch (source.kind) {
      case 'scratch':
        return { root: { dir: await this.tempDir('scratch'), kind: 'stage', label: 'scratch' }, key: state.key };
      case 'stage':
        return { root: await this.#unpacked(`stage:${state.key}`, `stage ${source.index}`, state.layers), key: state.key };
      case 'image':
        await this.holdLayers(state.layers, `image ${source.ref}`, false);
        return { root: await this.#unpacked(state.key, `image ${source.ref}`, state.layers), key: state.key };
      default:
        return source satisfies never;
    }
  }

  #unpacked(id: string, label: string, layers: readonly StoredLayer[]): Promise<SourceRoot> {
    let p = this.#roots.get(id);
    if (!p) {
      p = (async () => {
        // The layers may be cache hits, deferred into the lease (or lazy): held from here on.
        await this.claim(layers);
        const hostFs = await this.hostFs();
        const dir = await this.store.makeTempDir('from');
        this.#owned.push({ dir, remove: (d) => hostFs.removeTree(d) });
        for (const l of layers) await hostFs.unpackLayer(this.store, l.diffId, dir, this.signal);
        // Unpacked in the user namespace, owners show on the host as subordinate IDs: mapped
        // back for COPY --from.
        return hostFs.kind === 'user-namespace' ? { dir, kind: 'stage', label, mapOwner: (uid: number, gid: number) => hostFs.imageOwner(uid, gid) } : { dir, kind: 'stage', label };
      })();
      this.#roots.set(id, p);
    }
    return p;
  }

  // --- host capabilities ---

  /** How trees of image files are touched on this host (snapshot/host-fs.ts), chosen once. */
  hostFs(): Promise<HostFilesystem> {
    return (this.#hostFs ??= hostFilesystem({ toolPath: this.#opts.toolPath, signal: this.signal }));
  }

  /** Whether RUN steps' sync calls return at once (sandbox/suppress-sync.ts). */
  get suppressSync(): boolean {
    return this.#opts.runSync !== 'keep';
  }

  /** The sandbox: probed and selected on first use (a build without RUN never probes). */
  sandbox(): Promise<BuildSandbox> {
    return (this.#sandbox ??= (async () => {
      const { probeSandbox, selectRunner } = await import('../sandbox/index.js');
      const { createSnapshotter } = await import('../snapshot/index.js');
      const capabilities = await probeSandbox({ signal: this.signal, path: this.#opts.toolPath });
      const sel = selectRunner({
        capabilities,
        isolation: this.#opts.isolation ?? 'auto',
        warn: (message) => this.warn(message),
        ...(this.#opts.runtime ? { runtime: this.#opts.runtime } : {}),
        ...(this.#opts.snapshotter ? { snapshotter: this.#opts.snapshotter } : {}),
      });
      const hostFs = await this.hostFs();
      return { runner: sel.runner, capabilities, hostFs, snapshotter: await createSnapshotter(sel.snapshots, this.store, hostFs, capabilities) };
    })());
  }

  /**
   * From now on a base image this session pulls is unpacked into the snapshots its RUN steps
   * start from while its later layers download (snapshot/ pullUnpacker), where this build's
   * sandbox uses overlay snapshots; a RUN step on it waits for that unpack instead of starting
   * its own. For a plan with RUN steps (a build without them never probes the sandbox).
   */
  async unpackPulledImages(): Promise<void> {
    if (this.#pullUnpacker) return;
    const { pullUnpacker } = await import('../snapshot/index.js');
    this.#pullUnpacker = await pullUnpacker(this.store, {
      signal: this.signal,
      hostFs: async () => {
        const sandbox = await this.sandbox();
        return sandbox.snapshotter.kind === 'overlay' ? sandbox.hostFs : undefined;
      },
    });
  }

  /** Releases the lease and removes every temporary directory; never throws. */
  async close(): Promise<void> {
    // An unpack no RUN step waited for (its steps were cache hits) is not finished for nothing.
    await this.#pullUnpacker?.finish('failed').catch(() => undefined);
    await this.#lease.release().catch(() => undefined);
    for (const { dir, remove } of this.#owned.splice(0)) await remove(dir).catch(() => undefined);
  }

  #images() {
    const opts = this.#opts;
    return {
      store: this.store,
      platform: this.platform,
      strictPlatform: opts.strictPlatform === true,
      pull: opts.pull ?? 'missing',
      registry: () => {
        if (!opts.registry) throw new TsbuildError('UNSUPPORTED', 'this build has no registry access configured');
        return opts.registry();
      },
      signal: this.signal,
      ...(this.#pullUnpacker ? { onImageLayers: this.#pullUnpacker.onImageLayers } : {}),
    };
  }
}
