export type { IgnorePattern, MatchInfo } from './dockerignore.js';
export { IgnoreMatcher, parseDockerignore, patternsFromList, readDockerignore, readIgnoreLines } from './dockerignore.js';
export type { ContextEntry, WalkContextOptions } from './walk.js';
export { walkContext, walkContextSync } from './walk.js';
export { readDirectoryNames } from './file-names.js';
export { checkoutGit, contextKind, fetchDispatcherInit, fetchRemoteContext, parseGitRef, redactUrl } from './remote-context.js';
export type { CheckoutOptions, ContextKind, FetchedContext, FetchOptions, GitRef } from './remote-context.js';
