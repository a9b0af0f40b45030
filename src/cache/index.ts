/**
 * cache/: cache keys and where step results are found (DESIGN.md "Cache keys"). Front door.
 */
export { KEY_SCHEME, cacheKeyFor, imageStateKey, linkedStateKey, type CacheKey, type CopiedEntry, type CopySource, type MountSource, type StateKey, type StepKeyInputs, type StepKind } from './cache-key.js';
export { firstHit, lookupInOrder, type CacheHit, type CacheSource } from './cache-source.js';
export { LocalStepCache, listStepCache, pruneLastKeyRecords, type StepCacheEntry } from './local-step-cache.js';
export { explainMiss, formatExplainMap, parseExplainMap, parseKeyInputsSummary, stepIdentityText, summarizeKeyInputs, type ExplainContext, type FilesSummary, type KeyInputsSummary, type StepIdentity } from './key-explain.js';
export { parseStepRecord, type StepRecord } from './step-record.js';
