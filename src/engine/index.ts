/**
 * engine/: builds images from a request (parse -> plan -> stages -> seal -> outputs) and runs
 * commands in images, over a BuildSession. Front door (STYLE.md 2): the CLI reaches the sandbox,
 * snapshots, the step cache and image internals through here only.
 */
export { build, type BuildEnv, type BuildResult } from './engine.js';
export type { BuildRequest, OutputSpec, Compression, DockerfileSource } from './request.js';
export type { BuildEvent, BuildReporter } from './events.js';
export type { BuildSecret } from './run-mounts.js';
export { runImage, type RunImageEnv, type RunImageRequest } from './run-image.js';
export { openSshSources, type SshSources } from './ssh.js';
export { parseAddHost, type ExtraHost } from './extra-hosts.js';
export { mergeUlimits, parseAllow, parseShmSize, parseUlimit, type Entitlement, type RunResources } from './run-resources.js';
export { listStepCache, pruneLastKeyRecords, type CacheHit, type CacheKey, type CacheSource, type StepCacheEntry } from '../cache/index.js';
export type { StepMount } from '../sandbox/index.js';

export { removeTreeAnyOwner, sweepDeadRuns } from './housekeeping.js';
export { checkDockerfile, collectBuildChecks, reportBuildChecks } from './build-checks.js';
export { archiveKind, unpackArchive } from './add-sources.js';
export type { NamedContext } from './named-contexts.js';
export { InFlightSteps } from './in-flight.js';
