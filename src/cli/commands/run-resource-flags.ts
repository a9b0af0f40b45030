import { mergeUlimits, parseAllow, parseShmSize, parseUlimit, type RunResources } from '../../engine/index.js';

/**
 * `--shm-size`, `--ulimit` and `--allow` of `tsbuild build` as a request field (nothing when
 * none is given). A limit above what this host lets tsbuild set is refused here, before the
 * build starts (exit 2), not at the first RUN step.
 */
export async function runResourcesFromFlags(flags: { shmSize: string | undefined; ulimit: readonly string[]; allow: readonly string[] }): Promise<{ runResources?: RunResources }> {
  const shmSize = flags.shmSize === undefined ? undefined : parseShmSize(flags.shmSize);
  const ulimits = mergeUlimits(flags.ulimit.map(parseUlimit));
  const allow = parseAllow(flags.allow);
  if (ulimits.length > 0) {
    // Loaded only then: the sandbox code is not needed to parse flags.
    const { assertUlimitsAllowed } = await import('../../sandbox/index.js');
    assertUlimitsAllowed(ulimits, { rootless: process.getuid?.() !== 0 });
  }
  if (shmSize === undefined && ulimits.length === 0 && allow.size === 0) return {};
  return { runResources: { ...(shmSize !== undefined ? { shmSize } : {}), ...(ulimits.length > 0 ? { ulimits } : {}), ...(allow.size > 0 ? { allow } : {}) } };
}
