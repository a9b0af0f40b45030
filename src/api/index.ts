/**
 * tsbuild as a library: `import { build, pull, push, load, save, images } from 'tsbuild'`.
 * The package root (package.json "exports") is this file. The CLI is a thin layer over the
 * same helpers (build-request.ts, store.ts): flags become the engine's request here as typed
 * options do, so both reject the same mistakes with the same error codes.
 *
 * Contract: every function rejects with a TsbuildError (`code`, `hint`, and `location` for a
 * Dockerfile problem); an aborted `signal` rejects with code CANCELLED.
 */
export { build, checkCacheSpec, type BuildOptions, type BuildResult } from './build.js';
export { images, load, pull, push, save, type ImageInfo, type LoadedImageInfo, type PullResult, type PushResult, type RegistryOptions, type StoreOptions } from './images.js';
export type { CredentialsProvider } from './store.js';
export { TsbuildError, isTsbuildError, type ErrorCode, type SourceLocation } from '../errors.js';
export type { BuildEvent } from '../engine/index.js';
export type { Credential, CredentialSource, PullProgress, PushProgress } from '../registry/index.js';
export type { PullUnpackProgress } from '../snapshot/index.js';

// For the CLI and the Action (cmd/): the shared construction of a build's request and environment.
export {
  asCancelled,
  buildEnvFor,
  parsePlatforms,
  parseBuildArgs,
  parseLabels,
  parseSecrets,
  readDockerfile,
  resolveContextDir,
  runBuild,
  runSyncFromEnv,
  snapshotterFromEnv,
  withDefaultOutputs,
  type BuildOutcome,
} from './build-request.js';
export { splitList } from './options.js';
export { parseOutputFlag } from './parse-output.js';
export { createReporter, type ProgressMode } from './progress.js';
export { createdTime, sourceDateEpoch } from './source-date.js';
export { defaultLogger, openRegistryClient, openStoreAt, resolveStoreRoot } from './store.js';
