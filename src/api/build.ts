import path from 'node:path';
import type { Writable } from 'node:stream';
import type { Logger } from 'pino';
import { TsbuildError } from '../errors.js';
import type { BuildEvent, BuildRequest, OutputSpec } from '../engine/index.js';
import type { RegistryClient } from '../registry/index.js';
import { normalizeName } from '../image/index.js';
import { asCancelled, buildEnvFor, parsePlatforms, parseBuildArgs, parseLabels, parseSecrets, readDockerfile, resolveContextDir, runBuild, withDefaultOutputs, type BuildOutcome } from './build-request.js';
import { parseCacheExport, parseCacheImport, type CacheExportSpec, type CacheImportSpec } from '../remote-cache/index.js';
import { checkKeys, optBoolean, optChoice, optList, optPairs, optString } from './options.js';
import { parseOutputFlag } from './parse-output.js';
import { defaultLogger, openRegistryClient, openStoreAt, resolveStoreRoot, type CredentialsProvider } from './store.js';
import { createReporter } from './progress.js';
import { createdTime, sourceDateEpoch } from './source-date.js';

/**
 * Options of `build()`: what `tsbuild build` takes, typed. Lists accept an array or the
 * string forms CI passes (one item per line; tags, platforms and outputs also comma-separated,
 * as docker/build-push-action reads them). Paths are relative to `cwd`.
 */
export interface BuildOptions {
  /** Build context directory. Default: `cwd`. */
  readonly context?: string;
  /** Dockerfile path. Default: CONTEXT/Dockerfile. */
  readonly file?: string;
  /** Names of the image, e.g. `localhost:5000/app:v1` (`busybox` means docker.io/library/busybox:latest). */
  readonly tags?: string | readonly string[];
  /** Build arguments: { NAME: 'value' }, or `NAME=VALUE` strings (`NAME` alone takes it from `env`). */
  readonly buildArgs?: Readonly<Record<string, string>> | string | readonly string[];
  /** Build this stage (and what it needs) only. */
  readonly target?: string;
  /** buildx `--output` values: `type=oci,dest=out.tar`, `type=local,dest=dir`, `type=image`, ... Default: the local store. */
  readonly outputs?: string | readonly string[];
  /** Push every tag to its registry after the build. */
  readonly push?: boolean;
  /** Base images: `missing` (default: the store first), `always`, `never`; `true` means always. */
  readonly pull?: boolean | 'missing' | 'always' | 'never';
  /** Do not use the step cache. */
  readonly noCache?: boolean;
  /**
   * buildx `--cache-from` / `--cache-to` values: `type=registry,ref=REF[,mode=min|max]...`,
   * `type=local,src=DIR` / `type=local,dest=DIR`, `type=inline`, or a bare reference
   * (docs/remote-cache.md). A kind tsbuild does not have (gha, s3, azblob) is UNSUPPORTED.
   */
  readonly cacheFrom?: string | readonly string[];
  readonly cacheTo?: string | readonly string[];
  /** Secrets for RUN --mount=type=secret: `id=ID,src=FILE` or `id=ID,env=VAR` strings. Never in a layer, log or error. */
  readonly secrets?: string | readonly string[];
  /**
   * Target platforms (`linux/amd64`, `linux/arm64`, ...). Several give one image per platform
   * and an OCI image index; a foreign platform's RUN steps run under qemu-user (binfmt_misc).
   */
  readonly platforms?: string | readonly string[];
  /** Labels set on the image: { KEY: 'value' } or `KEY=VALUE` strings. */
  readonly labels?: Readonly<Record<string, string>> | string | readonly string[];
  /** Network of RUN steps. Default: the host's. */
  readonly network?: 'default' | 'host' | 'none';
  /** How RUN steps are isolated (as `--isolation`). Default auto. */
  readonly isolation?: 'auto' | 'sandbox' | 'chroot' | 'none';
  /**
   * Progress rendered as text to `progressOutput` (default process.stderr): `plain`, `tty`,
   * `json` (one event per line, as `--progress json`), `quiet` (warnings only), `auto`, or
   * `none` (default: nothing is written; events still go to `onEvent`).
   */
  readonly progress?: 'none' | 'auto' | 'plain' | 'tty' | 'json' | 'quiet';
  readonly progressOutput?: Writable;
  /** Receives the engine's typed events (the objects `--progress json` prints) as they happen. */
  readonly onEvent?: (event: BuildEvent) => void;
  /** Write the image ID / buildx's metadata JSON to these files as well. */
  readonly iidFile?: string;
  readonly metadataFile?: string;
  /** Cancels the build (as Ctrl-C does): the promise rejects with CANCELLED. */
  readonly signal?: AbortSignal;
  /** The store directory. Default: $TSBUILD_ROOT, else $XDG_DATA_HOME/tsbuild, else ~/.local/share/tsbuild. */
  readonly root?: string;
  /** Registry credentials. Default: the auth files docker login / docker/login-action write. */
  readonly credentials?: CredentialsProvider;
  /** Registries reached without TLS verification or over plain HTTP (loopback ones always are). */
  readonly insecureRegistries?: readonly string[];
  /** Extra CA certificates (PEM files) to trust. */
  readonly caFiles?: readonly string[];
  /** Seconds since the epoch: clamps file times and sets `created` (SOURCE_DATE_EPOCH). Default: from `env`. */
  readonly sourceDateEpoch?: number;
  /** The directory relative paths start from. Default: process.cwd(). */
  readonly cwd?: string;
  /** The environment (build args and secrets by name, auth files, PATH of the sandbox tools). Default: process.env. */
  readonly env?: NodeJS.ProcessEnv;
  /** A pino logger for the structured log. Default: silent. */
  readonly logger?: Logger;
}

/** What `build()` resolves to. */
export type BuildResult = BuildOutcome;

const BUILD_KEYS: readonly (keyof BuildOptions)[] = [
  'context', 'file', 'tags', 'buildArgs', 'target', 'outputs', 'push', 'pull', 'noCache', 'cacheFrom', 'cacheTo', 'secrets', 'platforms', 'labels', 'network',
  'isolation', 'progress', 'progressOutput', 'onEvent', 'iidFile', 'metadataFile', 'signal', 'root', 'credentials', 'insecureRegistries', 'caFiles',
  'sourceDateEpoch', 'cwd', 'env', 'logger',
];

/** Checks one `--cache-from`/`--cache-to` value (buildx's grammar); USAGE or UNSUPPORTED when it cannot be used. */
export function checkCacheSpec(spec: string, flag: 'cache-from' | 'cache-to', cwd = process.cwd()): CacheImportSpec | CacheExportSpec {
  return flag === 'cache-from' ? parseCacheImport(spec, cwd) : parseCacheExport(spec, cwd);
}

/** The options checked and turned into the engine's request; the same helpers as `tsbuild build`. */
async function requestFor(o: Record<string, unknown>, cwd: string, env: NodeJS.ProcessEnv): Promise<BuildRequest> {
  // Every option is checked before anything is read: a mistake is reported as itself.
  const context = optString(o, 'context') ?? '.';
  const file = optString(o, 'file');
  const platforms = parsePlatforms(optList(o, 'platforms', { commas: true }));
  const cacheFrom = optList(o, 'cacheFrom', { commas: false }).map((c) => parseCacheImport(c, cwd));
  const cacheTo = optList(o, 'cacheTo', { commas: false }).map((c) => parseCacheExport(c, cwd));
  const tags = optList(o, 'tags', { commas: true }).map((t) => normalizeName(t));
  const outputs: OutputSpec[] = withDefaultOutputs(tags, optList(o, 'outputs', { commas: false }).map((s) => parseOutputFlag(s, cwd)));
  const push = optBoolean(o, 'push') ?? false;
  if (push && tags.length === 0) throw new TsbuildError('USAGE', 'push needs at least one tag to push to');
  const pullOpt = o['pull'];
  const pull = pullOpt === true ? 'always' : pullOpt === false || pullOpt === undefined ? 'missing' : optChoice(o, 'pull', ['missing', 'always', 'never'] as const)!;
  const target = optString(o, 'target');
  const iidFile = optString(o, 'iidFile');
  const metadataFile = optString(o, 'metadataFile');
  const epochOpt = o['sourceDateEpoch'];
  if (epochOpt !== undefined && !(typeof epochOpt === 'number' && Number.isInteger(epochOpt) && epochOpt >= 0)) throw new TsbuildError('USAGE', 'option "sourceDateEpoch" must be a whole number of seconds');
  const epoch = (epochOpt as number | undefined) ?? sourceDateEpoch(env);
  const network = optChoice(o, 'network', ['default', 'host', 'none'] as const);
  const isolation = optChoice(o, 'isolation', ['auto', 'sandbox', 'chroot', 'none'] as const);
  const buildArgs = parseBuildArgs(optPairs(o, 'buildArgs'), env);
  const labels = parseLabels(optPairs(o, 'labels'));
  const noCache = optBoolean(o, 'noCache') ?? false;
  const secretSpecs = optList(o, 'secrets', { commas: false });
  const contextDir = await resolveContextDir(context, cwd);
  const dockerfile = await readDockerfile({ contextDir, file, cwd });
  return {
    contextDir,
    dockerfile,
    tags,
    ...(target ? { target } : {}),
    buildArgs,
    labels,
    noCache,
    pull,
    push,
    outputs,
    ...(iidFile ? { iidFile: path.resolve(cwd, iidFile) } : {}),
    ...(metadataFile ? { metadataFile: path.resolve(cwd, metadataFile) } : {}),
    ...(epoch !== undefined ? { sourceDateEpoch: epoch } : {}),
    secrets: await parseSecrets(secretSpecs, env, cwd),
    network: network === 'none' ? 'none' : 'host',
    ...(isolation !== undefined ? { isolation } : {}),
    ...(platforms !== undefined ? { platforms } : {}),
    ...(cacheFrom.length > 0 ? { cacheFrom } : {}),
    ...(cacheTo.length > 0 ? { cacheTo } : {}),
  };
}

/** Checks the options every call shares (a wrong kind here would otherwise surface as an internal error). */
export function checkCommon(o: Record<string, unknown>): void {
  optString(o, 'root');
  optString(o, 'cwd');
  const env = o['env'];
  if (env !== undefined && (env === null || typeof env !== 'object')) throw new TsbuildError('USAGE', 'option "env" must be an object of environment variables');
  const c = o['credentials'];
  if (c !== undefined && typeof c !== 'function' && !(c !== null && typeof c === 'object' && typeof (c as { get?: unknown }).get === 'function')) {
    throw new TsbuildError('USAGE', 'option "credentials" must be a function (registry) => credential, or an object with get(registry)');
  }
  for (const name of ['insecureRegistries', 'caFiles']) {
    const v = o[name];
    if (v !== undefined && !(Array.isArray(v) && v.every((x) => typeof x === 'string'))) throw new TsbuildError('USAGE', `option ${JSON.stringify(name)} must be an array of strings`);
  }
}

/**
 * Builds an image from a Dockerfile, as `tsbuild build` does, and resolves to its image ID,
 * manifest digest and buildx-style metadata. Rejects with a TsbuildError (code, hint, and the
 * Dockerfile location where there is one): USAGE for an unknown or mistyped option,
 * CANCELLED when `signal` aborts (the sandbox is stopped and temporary files removed first).
 *
 * @example
 *   const { imageId } = await build({ context: '.', tags: ['localhost:5000/app:v1'], push: true, onEvent: (e) => console.log(e) });
 */
export async function build(options: BuildOptions): Promise<BuildResult> {
  if (options === null || typeof options !== 'object') throw new TsbuildError('USAGE', 'build() takes an options object');
  checkKeys(options, BUILD_KEYS, 'build()');
  const o = options as Record<string, unknown>;
  const signal = options.signal ?? new AbortController().signal;
  if (!(signal instanceof AbortSignal)) throw new TsbuildError('USAGE', 'option "signal" must be an AbortSignal');
  if (options.onEvent !== undefined && typeof options.onEvent !== 'function') throw new TsbuildError('USAGE', 'option "onEvent" must be a function');
  checkCommon(o);
  const env = options.env ?? process.env;
  const cwd = options.cwd ?? process.cwd();
  const progress = optChoice(o, 'progress', ['none', 'auto', 'plain', 'tty', 'json', 'quiet'] as const) ?? 'none';
  try {
    signal.throwIfAborted();
    const req = await requestFor(o, cwd, env);
    const render = progress === 'none' ? undefined : createReporter(progress, options.progressOutput ?? process.stderr);
    const onEvent = options.onEvent;
    let logger = options.logger;
    const log = (): Logger => (logger ??= defaultLogger());
    let registry: Promise<RegistryClient> | undefined;
    const store = await openStoreAt(resolveStoreRoot(options.root, { env, cwd }), signal);
    try {
      return await runBuild(
        req,
        buildEnvFor({
          store,
          signal,
          report: (e) => {
            render?.(e);
            onEvent?.(e);
          },
          created: req.sourceDateEpoch !== undefined ? new Date(req.sourceDateEpoch * 1000).toISOString().replace(/\.000Z$/, 'Z') : createdTime(env),
          logger: log,
          registry: () =>
            (registry ??= openRegistryClient({ env, credentials: options.credentials, insecureRegistries: options.insecureRegistries, caFiles: options.caFiles, logger: log(), signal })),
          toolPath: env.PATH,
          binfmtDir: env.TSBUILD_BINFMT_MISC,
        }),
      );
    } finally {
      if (registry) await (await registry.catch(() => undefined))?.close();
    }
  } catch (err) {
    throw asCancelled(err, signal);
  }
}
