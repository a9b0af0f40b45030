import { isDigest, type Digest } from '../oci/index.js';
import type { CacheKey } from './cache-key.js';
import { parseKeyInputsSummary, type KeyInputsSummary } from './key-explain.js';

/**
 * A step cache entry, `meta/step.<key hex>.json`: the layer a step made (`{diffId, size}`), or
 * `{empty: true}` for a step that changed nothing. Written by LocalStepCache.record; read by the
 * build (lookups), `prune` and `df` (the layers it keeps), through parseStepRecord only.
 * `inputs` (optional; records of earlier releases have none) is the summary of what the key was
 * made of, read only to explain a later miss (key-explain.ts); a lookup ignores it.
 */
export type StepRecord = ({ readonly kind: 'layer'; readonly diffId: Digest; readonly size: number } | { readonly kind: 'empty' }) & {
  readonly inputs?: KeyInputsSummary | undefined;
};

/** The meta name (without .json) of a key's entry. */
export function stepRecordName(key: CacheKey): string {
  return `step.${key.slice('sha256:'.length)}`;
}

/** True for the meta file names of step cache entries (`step.<hex>.json`). */
export function isStepRecordFile(file: string): boolean {
  return file.startsWith('step.') && file.endsWith('.json');
}

/** A stored entry as read from disk; undefined for anything else (a torn or foreign file). */
export function parseStepRecord(doc: unknown): StepRecord | undefined {
  if (typeof doc !== 'object' || doc === null) return undefined;
  const r = doc as { diffId?: unknown; size?: unknown; empty?: unknown; inputs?: unknown };
  // A malformed summary is dropped, never the entry: the layer is what the entry is for.
  const inputs = r.inputs === undefined ? undefined : parseKeyInputsSummary(r.inputs);
  const extra = inputs ? { inputs } : {};
  if (r.empty === true) return { kind: 'empty', ...extra };
  if (typeof r.diffId === 'string' && isDigest(r.diffId) && typeof r.size === 'number') return { kind: 'layer', diffId: r.diffId, size: r.size, ...extra };
  return undefined;
}

/** The stored form of an entry (the bytes earlier releases wrote, plus `inputs` when known). */
export function formatStepRecord(record: StepRecord): ({ diffId: Digest; size: number } | { empty: true }) & { inputs?: KeyInputsSummary } {
  const extra = record.inputs ? { inputs: record.inputs } : {};
  return record.kind === 'empty' ? { empty: true, ...extra } : { diffId: record.diffId, size: record.size, ...extra };
}
