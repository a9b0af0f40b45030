import type { CacheKey, StepKeyInputs } from '../cache/index.js';
import type { ShellLex } from '../dockerfile/index.js';
import type { LazyLayerIndex, StoredLayer } from '../image/index.js';
import type { Step } from '../plan/index.js';
import type { SourceRoot } from './copy-sources.js';
import type { ExtraHost } from './extra-hosts.js';
import type { RunResources } from './run-resources.js';
import type { FileDigests } from './file-digests.js';
import type { BuildSecret } from './run-mounts.js';
import type { BuildSession } from './session.js';
import type { StageState } from './stage-state.js';

/**
 * The step protocol (BuildKit's split of an op's CacheMap from its Exec). Each step kind is a
 * module that turns its expanded step into a PreparedStep: what its cache key is made of
 * (typed key inputs) and how it executes. Only the dispatcher (dispatch.ts) runs key ->
 * lookup -> execute -> record, and holds what a hit or a new layer needs in the lease.
 */
export interface StepModule<S extends Step> {
  prepare(step: S, ctx: StepContext): Promise<PreparedStep>;
}

/** What the build is made from, the same for every step (the request, turned into values). */
export interface BuildInputs {
  /** The Dockerfile's name as errors show it. */
  readonly file: string;
  readonly lex: ShellLex;
  readonly contextDir: string;
  /** The build context as COPY reads it (.dockerignore applied). */
  readonly contextRoot: SourceRoot;
  /** Content digests of context files (the stat index). */
  readonly digests: FileDigests;
  /** RFC 3339 time stamped on the image and its history. */
  readonly created: string;
  readonly sourceDateEpoch?: number | undefined;
  readonly secrets: ReadonlyMap<string, BuildSecret>;
  readonly sshSockets?: ReadonlyMap<string, string> | undefined;
  /** `--add-host`: entries every RUN step finds in its /etc/hosts. */
  readonly extraHosts?: readonly ExtraHost[] | undefined;
  /** `--shm-size`, `--ulimit`, `--allow`: what every RUN step runs with (run-resources.ts). */
  readonly runResources?: RunResources | undefined;
  /** `--network`: what RUN without --network (or with --network=default) gets. */
  readonly defaultNetwork: 'host' | 'none';
}

export interface StepContext {
  readonly session: BuildSession;
  /**
   * The platform of the step's stage as keys write it (linux/arm64): FROM --platform, else the
   * target's. A stage on $BUILDPLATFORM keys the same in every target's build, so it runs once.
   */
  readonly platformText: string;
  readonly inputs: BuildInputs;
  /** The state the step starts from. */
  readonly state: StageState;
  /** --no-cache, or --no-cache-filter naming the stage: nothing is looked up. */
  readonly noCache: boolean;
  /** Output of a running process (for progress). */
  readonly onOutput: (stream: 'stdout' | 'stderr', text: string) => void;
}

/** A layer a step made, with its entry index. */
export interface MadeLayer {
  readonly layer: StoredLayer;
  readonly index: LazyLayerIndex;
}

/** A step that edits the config only: keyed, never looked up nor recorded (it changes no file). */
export interface ConfigChange {
  readonly kind: 'config';
  readonly keyInputs: StepKeyInputs;
  /** The state after the step (the dispatcher sets its key). */
  apply(state: StageState): StageState;
}

/** A step that may make a layer: looked up by its key, executed on a miss, recorded. */
export interface LayerChange {
  readonly kind: 'layer';
  /**
   * What the key is made of; undefined when it is learnt while executing (COPY with --no-cache
   * reads each file once, for the layer, and takes its digest from the same bytes).
   */
  readonly keyInputs: StepKeyInputs | undefined;
  /**
   * The key, when the step knows it without its inputs (a COPY --from whose source and parent
   * layers were seen before, copy-step.ts): looked up as it is. `execute` then learns the
   * inputs, which make the same key.
   */
  readonly key?: CacheKey | undefined;
  /** The history entry's created_by. */
  readonly history: string;
  /**
   * The layer is made on an empty tree (COPY/ADD --link): its key has no parent, and the
   * dispatcher keys the state after it by the parent and that key together (linkedStateKey).
   */
  readonly linked?: boolean | undefined;
  /** Runs the step (on a miss only): the layer it made, or undefined when it changed nothing. */
  execute(): Promise<{ readonly made: MadeLayer | undefined; readonly keyInputs?: StepKeyInputs }>;
  /** A config edit after the layer, hit or miss (WORKDIR sets the working directory). */
  readonly after?: ((state: StageState) => StageState) | undefined;
  /** Frees what preparing took (RUN's mount locks, agent proxies), hit or miss. */
  readonly release?: (() => void) | undefined;
}

export type PreparedStep = ConfigChange | LayerChange;
