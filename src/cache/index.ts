export { cacheKeyFor, type StepKeyInput } from './cache-key.js';
