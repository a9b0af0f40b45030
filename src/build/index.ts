export { build, type BuildEnv, type BuildResult } from './engine.js';
export type { BuildRequest, OutputSpec, Compression, DockerfileSource } from './request.js';
export type { BuildEvent, BuildReporter } from './events.js';
export { leaseLayers, lowerDirsFor } from './snapshots.js';
export { openSshSources, type SshSources } from './ssh.js';
