import type { Readable } from 'node:stream';

/**
 * The sandbox contract: one RUN step in, an exit code out. The engine (engine/) owns
 * everything around it (cache keys, snapshots in the store, turning the upper directory into
 * a layer); a Runner only executes.
 */

/** An overlay of layer snapshots: the step writes into `upperDir`, which then *is* the change. */
export interface OverlayRootfs {
  /** Unpacked layer directories, bottom first (base image layer 0 ... top), absolute paths. */
  readonly lowerDirs: readonly string[];
  /** Empty directory that receives the step's changes (overlayfs upperdir). */
  readonly upperDir: string;
  /** Empty directory on the same file system as upperDir (overlayfs workdir). */
  readonly workDir: string;
}

/** A plain directory used as the root, written in place (copy-and-walk fallback, chroot, none). */
export interface DirRootfs {
  readonly dir: string;
}

export type StepRootfs = OverlayRootfs | DirRootfs;

export function isOverlayRootfs(r: StepRootfs): r is OverlayRootfs {
  return 'upperDir' in r;
}

export interface StepUser {
  readonly uid: number;
  readonly gid: number;
  readonly additionalGids?: readonly number[];
}

export interface StepMount {
  readonly type: 'bind' | 'tmpfs';
  /** Host path for bind mounts. */
  readonly source?: string;
  /** Absolute path inside the root. */
  readonly target: string;
  readonly readonly: boolean;
}

export interface RunSpec {
  readonly rootfs: StepRootfs;
  /** argv, already including the shell for the shell form (`["/bin/sh", "-c", "..."]`). */
  readonly args: readonly string[];
  /** `KEY=value` strings, exactly the environment the process gets (nothing inherited). */
  readonly env: readonly string[];
  /** Absolute working directory inside the root; must exist (WORKDIR creates it). */
  readonly cwd: string;
  readonly user: StepUser;
  readonly network: 'host' | 'none';
  readonly mounts?: readonly StepMount[];
  readonly hostname?: string;
  readonly stdout?: (chunk: Buffer) => void;
  readonly stderr?: (chunk: Buffer) => void;
  /** Piped to the process's stdin (`tsbuild run -i`); without it stdin is /dev/null. */
  readonly stdin?: Readable;
  /**
   * Give the process a pseudo-terminal as stdin, stdout and stderr (`tsbuild run -t`, made by
   * script(1)); all its output then arrives on `stdout`. `stdin`, if given, must be a TTY
   * stream: the terminal is shared with the process, not piped.
   */
  readonly tty?: boolean;
  /** Mount the root read-only (`tsbuild run --read-only`); RUN steps never set it. */
  readonly readonlyRoot?: boolean;
  /** Size in bytes of the /dev/shm tmpfs (`--shm-size`); default DEFAULT_SHM_SIZE. */
  readonly shmSize?: number;
  /** Resource limits of the step (`--ulimit`); without them the caller's limits are inherited. */
  readonly ulimits?: readonly Ulimit[];
  /** `RUN --security=insecure`: every capability the host grants, /proc/sys writable (insecure.ts). */
  readonly security?: 'sandbox' | 'insecure';
  /**
   * The step's fsync, fdatasync, syncfs, sync and sync_file_range return at once without
   * writing anything back (suppress-sync.ts): build steps, whose trees never outlive a crash.
   * Only the sandbox runners (bwrap, runc) can; chroot and none run the calls as they are.
   */
  readonly suppressSync?: boolean;
}

/** docker's `--ulimit` names (go-units ulimitNameMapping; `as` is left out there too). */
export type UlimitName = 'core' | 'cpu' | 'data' | 'fsize' | 'locks' | 'memlock' | 'msgqueue' | 'nice' | 'nofile' | 'nproc' | 'rss' | 'rtprio' | 'rttime' | 'sigpending' | 'stack';

/** One resource limit in the units setrlimit(2) takes; -1 is unlimited (RLIM_INFINITY), as docker's. */
export interface Ulimit {
  readonly name: UlimitName;
  readonly soft: number;
  readonly hard: number;
}

/** BuildKit's (and runc's, docker's) /dev/shm size when none is asked for: 64 MiB. */
export const DEFAULT_SHM_SIZE = 64 * 1024 * 1024;

export interface RunResult {
  readonly exitCode: number;
  /** Set when the top process died of a signal the runtime did not turn into an exit code. */
  readonly signal?: string;
}

/**
 * Signals received by tsbuild that belong to the step's process (`tsbuild run`, as docker's
 * sig-proxy): while subscribed, the listener gets them instead of tsbuild acting on them.
 */
export interface SignalSource {
  /** Returns the unsubscribe function. */
  subscribe(listener: (sig: NodeJS.Signals) => void): () => void;
}

export interface RunOptions {
  readonly signal?: AbortSignal | undefined;
  /**
   * Deliver these to the step's main process, which then decides: the run ends when it exits
   * (its exit code, 128+N when signal N killed it). Without it only `signal` (abort) stops a step.
   */
  readonly forwardSignals?: SignalSource | undefined;
}

export type RunnerKind = 'bwrap' | 'runc' | 'chroot' | 'none';

/**
 * Executes one step. Contract: when `run` settles (resolved or rejected, including on abort),
 * no process of the step is alive and no mount of the step exists on the host.
 * A non-zero exit code is a result, not an error; errors are for a sandbox that could not
 * start (SANDBOX_FAILED, SANDBOX_ID_MAPPING) or an abort (AbortError).
 */
export interface Runner {
  readonly kind: RunnerKind;
  run(step: RunSpec, opts: RunOptions): Promise<RunResult>;
}

/** One contiguous range of an ID map: container IDs [containerId, containerId+size) -> host IDs. */
export interface IdRange {
  readonly containerId: number;
  readonly hostId: number;
  readonly size: number;
}

/**
 * How container IDs map to host IDs. `identity` when running as root (no user namespace).
 * Rootless, as podman and `unshare --map-auto --map-root-user` do: container 0 is the
 * invoking user, container 1.. are the subordinate range (so container uid N>0 is host
 * subuid_base + N - 1).
 */
export interface IdMapping {
  readonly kind: 'identity' | 'subordinate' | 'single';
  readonly uids: readonly IdRange[];
  readonly gids: readonly IdRange[];
}

export type Isolation = 'auto' | 'sandbox' | 'chroot' | 'none';

/**
 * Docker's default masks (moby's oci/defaults.go): host kernel interfaces /proc would otherwise
 * expose are hidden (a file under /dev/null, a directory under an empty read-only tmpfs), and
 * these are read-only. Both runners apply them to every step but an insecure one (BuildKit's
 * WithInsecureSpec drops them too).
 */
export const MASKED_PATHS: readonly string[] = ['/proc/acpi', '/proc/kcore', '/proc/keys', '/proc/latency_stats', '/proc/timer_list', '/proc/timer_stats', '/proc/sched_debug', '/proc/scsi', '/sys/firmware'];
export const READONLY_PATHS: readonly string[] = ['/proc/asound', '/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'];
