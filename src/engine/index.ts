export { build, type BuildEnv, type BuildResult } from './engine.js';
export type { BuildRequest, OutputSpec, Compression, DockerfileSource } from './request.js';
export type { BuildEvent, BuildReporter } from './events.js';
import type { lowerDirsFor as LowerDirsFor } from './snapshots.js';
export { leaseLayers } from './lease-layers.js';
export { openSshSources, type SshSources } from './ssh.js';
export { parseAddHost, type ExtraHost } from './extra-hosts.js';
export { mergeUlimits, parseAllow, parseShmSize, parseUlimit, type Entitlement, type RunResources } from './run-resources.js';

/** Overlay lower dirs for a layer stack (snapshots.ts); loaded on use, as it pulls in the layer and sandbox code. */
export async function lowerDirsFor(...args: Parameters<typeof LowerDirsFor>): ReturnType<typeof LowerDirsFor> {
  return (await import('./snapshots.js')).lowerDirsFor(...args);
}

export { checkDockerfile, collectBuildChecks, reportBuildChecks } from './build-checks.js';
export { archiveKind, unpackArchive } from './add-sources.js';
