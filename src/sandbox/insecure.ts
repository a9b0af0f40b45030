import { readFileSync } from 'node:fs';

/**
 * `RUN --security=insecure` (BuildKit's entitlements.WithInsecureSpec: every capability, no
 * masked or read-only /proc paths, no seccomp), within what this host lets tsbuild give:
 *  - capabilities: as root, those in tsbuild's own bounding set (a capability it lacks, such
 *    as CAP_SYS_RESOURCE in a container, cannot be granted); as an ordinary user, all of them,
 *    but inside the build's user namespace, where they act only on what that namespace owns;
 *  - /proc/sys writable: for root, the host's sysctls (as a privileged container); rootless,
 *    only the sysctls of the step's own IPC namespace (kernel.shm*, kernel.msg*, fs.mqueue.*):
 *    the kernel refuses writes to those the initial namespaces own;
 *  - no device nodes beyond the sandbox's default /dev, and /sys stays unmounted (README).
 */

/** Capability names by number (capabilities(7)), 0 .. CAP_CHECKPOINT_RESTORE (40). */
export const CAPABILITY_NAMES = [
  'CAP_CHOWN', 'CAP_DAC_OVERRIDE', 'CAP_DAC_READ_SEARCH', 'CAP_FOWNER', 'CAP_FSETID', 'CAP_KILL', 'CAP_SETGID', 'CAP_SETUID',
  'CAP_SETPCAP', 'CAP_LINUX_IMMUTABLE', 'CAP_NET_BIND_SERVICE', 'CAP_NET_BROADCAST', 'CAP_NET_ADMIN', 'CAP_NET_RAW', 'CAP_IPC_LOCK', 'CAP_IPC_OWNER',
  'CAP_SYS_MODULE', 'CAP_SYS_RAWIO', 'CAP_SYS_CHROOT', 'CAP_SYS_PTRACE', 'CAP_SYS_PACCT', 'CAP_SYS_ADMIN', 'CAP_SYS_BOOT', 'CAP_SYS_NICE',
  'CAP_SYS_RESOURCE', 'CAP_SYS_TIME', 'CAP_SYS_TTY_CONFIG', 'CAP_MKNOD', 'CAP_LEASE', 'CAP_AUDIT_WRITE', 'CAP_AUDIT_CONTROL', 'CAP_SETFCAP',
  'CAP_MAC_OVERRIDE', 'CAP_MAC_ADMIN', 'CAP_SYSLOG', 'CAP_WAKE_ALARM', 'CAP_BLOCK_SUSPEND', 'CAP_AUDIT_READ', 'CAP_PERFMON', 'CAP_BPF',
  'CAP_CHECKPOINT_RESTORE',
] as const;

/**
 * The capability set an insecure step gets under runc: rootless, every capability this kernel
 * has (the user namespace's full set); as root, those of tsbuild's bounding set, since runc
 * cannot grant one its caller lacks.
 */
export function insecureCapabilities(rootless: boolean, statusText?: string): string[] {
  const last = Number(readFileSync('/proc/sys/kernel/cap_last_cap', 'utf8').trim());
  const known = CAPABILITY_NAMES.slice(0, Math.min(last, CAPABILITY_NAMES.length - 1) + 1);
  if (rootless) return [...known];
  const m = /^CapBnd:\s*([0-9a-f]+)$/m.exec(statusText ?? readFileSync('/proc/self/status', 'utf8'));
  if (!m) return [...known];
  const bounding = BigInt(`0x${m[1]}`);
  return known.filter((_, i) => ((bounding >> BigInt(i)) & 1n) === 1n);
}
