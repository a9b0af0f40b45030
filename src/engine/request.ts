import type { ExtraHost } from './extra-hosts.js';
import type { RunResources } from './run-resources.js';
import type { BuildSecret } from './run-mounts.js';

/**
 * What `tsbuild build` is asked to do, after the CLI has turned flags into values.
 * Small, typed, no yargs in sight (STYLE.md 10).
 */
export type Compression = 'gzip' | 'zstd' | 'uncompressed';

export type OutputSpec =
  | { readonly type: 'image' } // the local store, under the request's tags
  | { readonly type: 'oci'; readonly dest: string; readonly compression: Compression; readonly level?: number }
  | { readonly type: 'oci-layout'; readonly dest: string; readonly compression: Compression; readonly level?: number }
  | { readonly type: 'docker'; readonly dest: string; readonly compression: Compression }
  | { readonly type: 'local'; readonly dest: string; readonly preserveSpecial?: boolean } // device nodes, setuid/setgid, file capabilities
  | { readonly type: 'tar'; readonly dest: string }
  /**
   * Pushed to a registry and not kept in the local store (buildx's `type=registry`, or
   * `type=image,push=true`): to `name` (a full reference), else to every tag. Layers only a
   * cache source has (lazy hits) are mounted from it, or fetched then (docs/remote-cache.md).
   */
  | { readonly type: 'registry'; readonly name?: string; readonly compression: Compression; readonly level?: number };

export interface DockerfileSource {
  /** Shown in errors, e.g. "Dockerfile" or "ci/Dockerfile.release". */
  readonly name: string;
  /** Absolute path, when the Dockerfile is a file (used for NAME.dockerignore). */
  readonly path?: string;
  readonly text: Buffer;
}

export interface BuildRequest {
  readonly contextDir: string;
  readonly dockerfile: DockerfileSource;
  /** Full references, e.g. docker.io/library/app:v2. */
  readonly tags: readonly string[];
  readonly target?: string;
  readonly buildArgs: ReadonlyMap<string, string>;
  readonly labels: Readonly<Record<string, string>>;
  /** `--annotation`: on the image manifest, and on its descriptor in OCI outputs' index. */
  readonly annotations?: import('../image/index.js').ImageAnnotations;
  readonly noCache: boolean;
  /** `--pull`: base images from the store first (missing), always from the registry, or never. */
  readonly pull?: 'missing' | 'always' | 'never';
  /** `--push`: push every tag after the build. */
  readonly push?: boolean;
  /** `--no-cache-filter`: stages (names or indexes) whose steps never use the cache. */
  readonly noCacheFilter?: readonly string[];
  readonly outputs: readonly OutputSpec[];
  readonly iidFile?: string;
  readonly metadataFile?: string;
  /** `--secret id=...`: for RUN --mount=type=secret; never in a layer, key, history or log. */
  readonly secrets?: ReadonlyMap<string, BuildSecret>;
  /** `--ssh ID[=...]`: host agent sockets per id, for RUN --mount=type=ssh. */
  readonly sshSockets?: ReadonlyMap<string, string>;
  /** `--runtime`: the sandbox of RUN steps. */
  readonly runtime?: 'bwrap' | 'runc';
  /** `--isolation`: auto steps down where the host does not allow the sandbox. */
  readonly isolation?: 'auto' | 'sandbox' | 'chroot' | 'none';
  /** `TSBUILD_SNAPSHOTTER`: force overlay or copy-and-walk snapshots for RUN (default auto). */
  readonly snapshotter?: 'auto' | 'overlay' | 'copy';
  /** `TSBUILD_RUN_SYNC`: RUN steps' sync calls made no-ops (default) or made as they are. */
  readonly runSync?: 'suppress' | 'keep';
  /** `--add-host`: names RUN steps resolve through /etc/hosts. */
  readonly extraHosts?: readonly ExtraHost[];
  /** `--shm-size`, `--ulimit`, `--allow`: what RUN steps run with. */
  readonly runResources?: RunResources;
  /** `--network`: the default network of RUN steps. */
  readonly network?: 'host' | 'none';
  /** `--build-context NAME=VALUE`: named contexts (remote ones already fetched to a directory). */
  readonly namedContexts?: ReadonlyMap<string, import('./named-contexts.js').NamedContext>;
  /**
   * `--platform`: the target platforms. Undefined or empty: the env's (the host's). Several: one
   * image per platform and an OCI image index naming them.
   */
  readonly platforms?: readonly import('../oci/index.js').Platform[];
  /** Seconds since the epoch; clamps file mtimes and sets `created`. */
  readonly sourceDateEpoch?: number;
  /** `--cache-from`: build caches read after the local step cache, in order. */
  readonly cacheFrom?: readonly import('../remote-cache/index.js').CacheImportSpec[];
  /** `--cache-to`: where this build's cache is exported after the image is delivered. */
  readonly cacheTo?: readonly import('../remote-cache/index.js').CacheExportSpec[];
}
