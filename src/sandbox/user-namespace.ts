import { TsbuildError } from '../errors.js';
import { removeTreeDefault } from '../store/index.js';
import { captureChild, runChild, type ChildOptions } from './child.js';
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
  return runChild(caps.tools.unshare, [...userNamespaceArgs(caps.idMapping), '--', cmd, ...args], opts);
}

/**
 * A `removeTree` for the store (OpenStoreOptions.removeTree): as root the default remover; as
 * a user, `rm -rf` inside the user namespace, where directories owned by subordinate IDs and
 * overlay's mode-000 work/work directory are removable.
 */
let probed: Promise<SandboxCapabilities> | undefined;

/**
 * The store's tree remover for an ordinary user: fs.rm first (what the user owns), and where
 * that is refused (snapshots and cache mounts hold files of subordinate IDs, made by rootless
 * steps) rm -rf inside a user namespace of the user's range, where those IDs are the user's
 * own. The sandbox is probed only then, once per process. As root, plain fs.rm.
 */
export async function removeTreeAnyOwner(path: string, signal?: AbortSignal): Promise<void> {
  try {
    await removeTreeDefault(path, signal);
    return;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (process.getuid?.() === 0 || (code !== 'EACCES' && code !== 'EPERM')) throw e;
  }
  probed ??= probeSandbox({ signal });
  const caps = await probed;
  if (!caps.userNamespaces.ok) {
    throw new TsbuildError('STORE_IO', `cannot remove ${path}: it holds files of other user IDs (from rootless RUN steps), and no user namespace is available to remove them`, {
      hint: caps.userNamespaces.hint ?? 'remove it as root',
    });
  }
  await userNamespaceRemoveTree(caps)(path, signal);
}

export function userNamespaceRemoveTree(caps: SandboxCapabilities): (path: string, signal?: AbortSignal) => Promise<void> {
  if (caps.isRoot) return removeTreeDefault;
  return async (path, signal) => {
    const r = await captureChild(caps.tools.unshare ?? 'unshare', [...userNamespaceArgs(caps.idMapping), '--', 'rm', '-rf', '--', path], { signal });
    if (r.exitCode !== 0) {
      throw new TsbuildError('STORE_IO', `cannot remove ${path} in the user namespace: ${r.stderr.trim()}`);
    }
  };
}
