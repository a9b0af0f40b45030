import type { SourceLocation } from '../errors.js';

/**
 * What the engine reports while it works. The engine emits typed events; a reporter in
 * cli/ renders them (plain lines, tty, json). The engine never writes text itself.
 */
export type BuildEvent =
  | { readonly type: 'step-start'; readonly id: number; readonly name: string; readonly location?: SourceLocation }
  /** A step found in a cache; `source` names where (`local`, `registry REF`, `local DIR`). */
  | { readonly type: 'step-cached'; readonly id: number; readonly name: string; readonly hit?: true; readonly source?: string }
  /**
   * A step that runs instead of hitting the cache, before it runs: why (`/src/app.py changed`,
   * `build arg VERSION changed`, `no cache entry`...). `source` names the cache whose record of
   * the step's last key the reason compares with.
   */
  | { readonly type: 'step-miss'; readonly id: number; readonly hit: false; readonly reason: string; readonly source?: string }
  | { readonly type: 'step-done'; readonly id: number; readonly durationMs: number }
  | { readonly type: 'step-error'; readonly id: number; readonly message: string }
  | { readonly type: 'step-log'; readonly id: number; readonly stream: 'stdout' | 'stderr'; readonly text: string }
  | { readonly type: 'warning'; readonly message: string; readonly location?: SourceLocation }
  | { readonly type: 'info'; readonly message: string };

export type BuildReporter = (event: BuildEvent) => void;
