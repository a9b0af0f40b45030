export type { IgnorePattern, MatchInfo } from './dockerignore.js';
export { IgnoreMatcher, parseDockerignore, patternsFromList, readDockerignore, readIgnoreLines } from './dockerignore.js';
export type { ContextEntry, WalkContextOptions } from './walk.js';
export { walkContext } from './walk.js';
