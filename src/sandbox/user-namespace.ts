import { TsbuildError } from '../errors.js';
import { runChild, type ChildOptions } from './child.js';
import { probeSandbox, userNamespaceArgs, type SandboxCapabilities } from './probe.js';
import type { IdMapping, IdRange, RunResult } from './types.js';

/**
 * Container ID -> host ID under `ranges`; undefined when unmapped. Identity when no ranges
 * (running as root).
 */
export function containerToHost(ranges: readonly IdRange[], id: number): number | undefined {
  if (ranges.length === 0) return id;
  for (const r of ranges) if (id >= r.containerId && id < r.containerId + r.size) return r.hostId + (id - r.containerId);
  return undefined;
}

/** Host ID -> container ID under `ranges` (what a layer tar records); undefined when unmapped. */
export function hostToContainer(ranges: readonly IdRange[], id: number): number | undefined {
  if (ranges.length === 0) return id;
  for (const r of ranges) if (id >= r.hostId && id < r.hostId + r.size) return r.containerId + (id - r.hostId);
  return undefined;
}

/** Throws SANDBOX_ID_MAPPING when a step needs IDs the mapping lacks (single-ID fallback). */
export function assertMapped(mapping: IdMapping, uid: number, gids: readonly number[], caps?: SandboxCapabilities): void {
  const missingU = containerToHost(mapping.uids, uid) === undefined;
  const missingG = gids.filter((g) => containerToHost(mapping.gids, g) === undefined);
  if (!missingU && missingG.length === 0) return;
  const what = [missingU ? `uid ${uid}` : '', missingG.length ? `gid ${missingG.join(',')}` : ''].filter(Boolean).join(' and ');
  const user = caps?.user ?? 'USER';
  throw new TsbuildError('SANDBOX_ID_MAPPING', `the step runs as ${what}, which the user namespace cannot map`, {
    hint:
      mapping.kind === 'single'
        ? `only one ID is mapped because ${user} has no subordinate range (${caps?.subordinateIds.reason ?? '/etc/subuid'}); fix: ${caps?.subordinateIds.hint ?? `usermod --add-subuids 200000-265535 --add-subgids 200000-265535 ${user}`}`
        : 'the subordinate range in /etc/subuid and /etc/subgid is too small for this ID',
  });
}

export interface UserNamespaceOptions extends Pick<ChildOptions, 'signal' | 'cwd' | 'stdin' | 'stdout' | 'stderr'> {
  /** Capabilities to use; probed (cached) when absent. */
  readonly capabilities?: SandboxCapabilities;
}

/**
 * Run a host command inside the build's user namespace (root: directly, no namespace). This
 * is how rootless code must touch snapshot trees: extracting a layer (copy-up of a file whose
 * owner is not mapped fails with EOVERFLOW, DESIGN.md "Rootless"), reading files owned by
 * subordinate IDs, deleting them. Inside, the caller is container root with all capabilities
 * over the mapped IDs, and sees container IDs, not host IDs.
 */
export async function runInUserNamespace(cmd: string, args: readonly string[], opts: UserNamespaceOptions = {}): Promise<RunResult> {
  const caps = opts.capabilities ?? (await probeSandbox({ signal: opts.signal }));
  if (caps.isRoot) return runChild(cmd, args, opts);
  if (!caps.userNamespaces.ok || !caps.tools.unshare) {
    throw new TsbuildError('SANDBOX_UNAVAILABLE', `cannot enter a user namespace: ${caps.userNamespaces.reason ?? 'unshare missing'}`, {
      ...(caps.userNamespaces.hint ? { hint: caps.userNamespaces.hint } : {}),
    });
  }
  const argv = [...userNamespaceArgs(caps.idMapping), '--', cmd, ...args];
  // Killed with tsbuild (setpriv's parent-death signal survives unshare's exec, as for the
  // runners): a SIGKILLed pull or build leaves no worker unpacking or deleting on its own.
  if (caps.tools.setpriv) return runChild(caps.tools.setpriv, ['--pdeathsig', 'KILL', '--', caps.tools.unshare, ...argv], opts);
  return runChild(caps.tools.unshare, argv, opts);
}
