/**
 * What a build and `prune` clear that the store's gc cannot see. Each loads only the module it
 * needs, on use (start-up time of a cached build).
 */

/** Removes the step dirs (outside the store, in the temp dir) of tsbuilds that died (SIGKILL). */
export async function sweepDeadRuns(): Promise<number> {
  return (await import('../sandbox/step-dir.js')).sweepDeadStepDirs();
}

/** The store's tree remover for any process, also for trees of subordinate IDs (snapshot/host-fs.ts). */
export async function removeTreeAnyOwner(dir: string, signal?: AbortSignal): Promise<void> {
  return (await import('../snapshot/index.js')).removeTreeAnyOwner(dir, signal);
}
