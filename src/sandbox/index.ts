/**
 * sandbox/: runs one RUN step in isolation on an overlay of layer snapshots and hands back
 * the upper directory as the change (DESIGN.md "Snapshots come from overlayfs", "Rootless").
 * Front door (STYLE.md 2).
 *
 * Typical use by the engine:
 *   const caps = await probeSandbox({ signal });
 *   const { runner, snapshots } = selectRunner({ capabilities: caps, isolation, runtime, warn });
 *   await runner.run({ rootfs: { lowerDirs, upperDir, workDir }, args, env, cwd, user, network }, { signal });
 *   for await (const change of captureUpperDir(upperDir, { capabilities: caps, lowerDirs })) ...
 *   await pruneMountPoints(upperDir, { capabilities: caps, lowerDirs }); // then keep it as a snapshot
 * Rootless, anything that touches snapshot trees (layer extraction, reading files owned by
 * subordinate IDs, deleting) goes through runInUserNamespace / userNamespaceRemoveTree.
 *
 * Host tools used (Debian packages): bubblewrap, runc, util-linux (unshare, setpriv, mount),
 * uidmap (newuidmap/newgidmap), findutils (find), attr (getfattr: node has no xattr API).
 *
 * Known gaps (marked here so they are not forgotten):
 *  - bwrap with a non-root USER runs bwrap as that user: the step dir (tmpDir, default the OS
 *    temp dir) and the sources of bind mounts must be traversable by that user.
 *    Inside, supplementary groups are effective but `id` shows them as 65534 (bwrap's nested
 *    user namespace maps only the user's own gid). runc has neither limitation.
 *  - /sys is not mounted in the bwrap and runc sandboxes.
 *  - chroot and none isolation: no /proc, no PID namespace (setsid daemons escape), no RUN
 *    --mount; /dev's basic devices and the resolver files are made in the tree for each step
 *    and removed after it (chroot-provision.ts), not mounted.
 *  - Captured layers carry only the security.capability xattr (as docker and BuildKit); other
 *    xattrs a step sets are dropped, and applying a layer sets only that one (setfattr).
 *  - Rootless capture lists the upper dir inside the namespace, but ChangeEntry.sourcePath is
 *    a host path: a file of another ID with mode 0600 must be read inside the namespace too
 *    (the layer writer should run there, e.g. runInUserNamespace(process.execPath, [...])).
 */
export type { DirRootfs, IdMapping, IdRange, Isolation, OverlayRootfs, RunOptions, RunResult, Runner, RunnerKind, RunSpec, SignalSource, StepMount, StepRootfs, StepUser, Ulimit, UlimitName } from './types.js';
export { DEFAULT_SHM_SIZE, isOverlayRootfs } from './types.js';
export { assertUlimitsAllowed } from './rlimits.js';
export { describeCapabilities, parseSubordinateIds, probeSandbox, type Capability, type HostTools, type ProbeOptions, type SandboxCapabilities, type SubordinateRange } from './probe.js';
export { assertMapped, containerToHost, hostToContainer, removeTreeAnyOwner, runInUserNamespace, userNamespaceRemoveTree, type UserNamespaceOptions } from './user-namespace.js';
export { captureUpperDir, collectChanges, DEFAULT_MOUNT_POINTS, prepareOverlay, pruneMountPoints, type CaptureOptions, type ChangeEntry, type PreparedOverlay } from './overlay.js';
export { createBwrapRunner, DEFAULT_CAPABILITIES, type BwrapRunnerOptions } from './bwrap-runner.js';
export { createRuncRunner, runtimeConfig, type RuncRunnerOptions } from './runc-runner.js';
export { createChrootRunner, createHostRunner, type ChrootRunnerOptions } from './chroot-runner.js';
export { makeStepDir, sweepDeadStepDirs, type StepDirKind } from './step-dir.js';
export { provisionChroot, unprovisionChroot, type ChrootProvision } from './chroot-provision.js';
export { selectRunner, type RunnerSelection, type SelectRunnerOptions, type Snapshotter } from './select-runner.js';
export { diffCopyRootfs, indexTree, makeMountPoints, parseStatIndex, prepareCopyRootfs, removeMountPoints, serializeStatIndex, type CopyOptions, type MadeMountPoints, type StatIndex } from './copy-diff.js';
export type { RawEntry } from './overlay.js';
