export { build, type BuildEnv, type BuildResult } from './engine.js';
export type { BuildRequest, OutputSpec, Compression, DockerfileSource } from './request.js';
export type { BuildEvent, BuildReporter } from './events.js';
import type { leaseLayers as LeaseLayers, lowerDirsFor as LowerDirsFor } from './snapshots.js';
export { openSshSources, type SshSources } from './ssh.js';

/** Overlay lower dirs for a layer stack (snapshots.ts); loaded on use, as it pulls in the layer and sandbox code. */
export async function lowerDirsFor(...args: Parameters<typeof LowerDirsFor>): ReturnType<typeof LowerDirsFor> {
  return (await import('./snapshots.js')).lowerDirsFor(...args);
}

/** Hold a layer stack's blobs and snapshots in a lease (snapshots.ts); loaded on use. */
export async function leaseLayers(...args: Parameters<typeof LeaseLayers>): ReturnType<typeof LeaseLayers> {
  return (await import('./snapshots.js')).leaseLayers(...args);
}
