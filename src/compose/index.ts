export { loadComposeProject, discoverComposeFiles, normalizeProjectName, type ComposeOptions, type ComposeProject } from './load-project.js';
export { composeBuildPlan, type ComposeBuild, type ComposeBuildPlan, type ComposeSecret } from './service-build.js';
export { interpolate, parseEnvFile } from './interpolate.js';
