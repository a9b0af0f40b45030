/**
 * sandbox/: runs one process in isolation on a root filesystem it is given (an overlay of
 * lower dirs with an upper dir, or a plain directory) and knows nothing of the store; the
 * trees themselves and turning their change into a layer are snapshot/'s (DESIGN.md
 * "Snapshots come from overlayfs", "Rootless"). Front door (STYLE.md 2).
 *
 * Typical use (engine/session.ts, engine/run-step.ts):
 *   const caps = await probeSandbox({ signal, path });
 *   const { runner, snapshots } = selectRunner({ capabilities: caps, isolation, runtime, warn });
 *   await runner.run({ rootfs: { lowerDirs, upperDir, workDir }, args, env, cwd, user, network }, { signal });
 * Rootless, anything that touches the trees (layer extraction, reading files owned by
 * subordinate IDs, deleting) goes through runInUserNamespace (snapshot/host-fs.ts does).
 *
 * Host tools used (Debian packages): bubblewrap, runc, util-linux (unshare, setpriv, mount),
 * uidmap (newuidmap/newgidmap), findutils (find), attr (getfattr: node has no xattr API).
 *
 * Known gaps (marked here so they are not forgotten):
 *  - DEBT(#19): bwrap with a non-root USER runs bwrap as that user: the step dir (tmpDir,
 *    default the OS temp dir) and the sources of bind mounts must be traversable by that user.
 *    Inside, supplementary groups are effective but `id` shows them as 65534 (bwrap's nested
 *    user namespace maps only the user's own gid). runc has neither limitation.
 *  - DEBT(#14): /sys is not mounted in the bwrap and runc sandboxes.
 *  - DEBT(#19): chroot and none isolation: no /proc, no PID namespace (setsid daemons escape),
 *    no RUN --mount; /dev's basic devices and the resolver files are made in the tree for each
 *    step and removed after it (snapshot/chroot-provision.ts), not mounted.
 *  - DEBT(#14): captured layers carry only the security.capability xattr (as docker and
 *    BuildKit); other xattrs a step sets are dropped, and applying a layer sets only that one.
 */
export type { DirRootfs, IdMapping, IdRange, Isolation, OverlayRootfs, RunOptions, RunResult, Runner, RunnerKind, RunSpec, SignalSource, StepMount, StepRootfs, StepUser, Ulimit, UlimitName } from './types.js';
export { DEFAULT_SHM_SIZE, isOverlayRootfs } from './types.js';
export { assertUlimitsAllowed } from './rlimits.js';
export { describeCapabilities, parseSubordinateIds, probeSandbox, type Capability, type HostTools, type ProbeOptions, type SandboxCapabilities, type SubordinateRange } from './probe.js';
export { assertMapped, containerToHost, hostToContainer, runInUserNamespace, type UserNamespaceOptions } from './user-namespace.js';
export { DEFAULT_MOUNT_POINTS, prepareOverlay, type PreparedOverlay } from './overlay.js';
export { BINFMT_MISC_DIR, COMMON_PLATFORMS, describePlatformSupport, platformSupport, type EmulationOptions, type PlatformSupport } from './emulation.js';
export { runChild, type ChildOptions } from './child.js';
export { createBwrapRunner, DEFAULT_CAPABILITIES, type BwrapRunnerOptions } from './bwrap-runner.js';
export { createRuncRunner, runtimeConfig, type RuncRunnerOptions } from './runc-runner.js';
export { createChrootRunner, createHostRunner, type ChrootRunnerOptions } from './chroot-runner.js';
export { makeStepDir, sweepDeadStepDirs, type StepDirKind } from './step-dir.js';
export { selectRunner, type RunnerSelection, type SelectRunnerOptions, type SnapshotMode } from './select-runner.js';
