import type { CacheKey } from '../cache/index.js';

/**
 * Steps being executed right now, by cache key, across every build that shares this object
 * (the builds of one env: a compose project's services, the stages of one build). A build
 * that misses the cache on a key another build is executing waits for it, then looks the key
 * up again and takes the recorded result as a hit (BuildKit's solver merges equal vertices
 * the same way). When the running step fails, nothing was recorded: the waiter runs it
 * itself, and fails as its own step would.
 */
export class InFlightSteps {
  readonly #running = new Map<CacheKey, Promise<void>>();
  readonly #recorded = new Set<CacheKey>();

  /** Settles (never rejects) when the build executing `key` is done with it; undefined when none is. */
  running(key: CacheKey): Promise<void> | undefined {
    return this.#running.get(key);
  }

  /**
   * Whether a build of this env executed `key` and recorded its result: a --no-cache build
   * takes that result (made in this run, not an earlier one), as BuildKit merges equal
   * vertices of one solve whatever the cache settings.
   */
  recorded(key: CacheKey): boolean {
    return this.#recorded.has(key);
  }

  /**
   * Marks `key` as executing until `done(recorded)` is called (`true` after its result is
   * recorded, `false` on failure). Synchronous, so a caller that found `running(key)` undefined
   * and starts at once cannot race another. When another build already executes it, nothing is
   * marked and `done` only notes a recorded result.
   */
  start(key: CacheKey): (recorded: boolean) => void {
    if (this.#running.has(key)) {
      return (recorded) => {
        if (recorded) this.#recorded.add(key);
      };
    }
    let settle!: () => void;
    const p = new Promise<void>((resolve) => (settle = resolve));
    this.#running.set(key, p);
    return (recorded) => {
      if (recorded) this.#recorded.add(key);
      if (this.#running.get(key) === p) this.#running.delete(key);
      settle();
    };
  }
}
