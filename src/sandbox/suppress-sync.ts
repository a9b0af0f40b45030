/**
 * RUN steps' sync calls made no-ops: fsync, fdatasync, syncfs, sync and sync_file_range return
 * success at once, without writing anything back (as systemd-nspawn --suppress-sync, or
 * eatmydata without the LD_PRELOAD). What a step writes counts once it is in the step's layer,
 * which the store writes and syncs (blob-store.ts); a step cut short by a crash runs again. The
 * step's programs would wait for the disk: dpkg syncs every file it unpacks and its database
 * after each package (`force-unsafe-io` stops only the first), about 1,250 fsync calls for an
 * `apt-get install python3` on Debian bookworm.
 *
 * msync stays: it also answers whether memory is mapped (ENOMEM), which libunwind and some
 * garbage collectors ask it. A file opened with O_SYNC or O_DSYNC still writes through.
 *
 * The filter is classic BPF, as seccomp(2) and bwrap's --seccomp take it: for this host's
 * architecture only (a 32-bit or foreign-ABI call passes through and really syncs; an emulated
 * step's syncs are made by qemu, a host process, and are caught).
 */

/** seccomp's AUDIT_ARCH value, the OCI runtime spec's name and the sync calls' numbers. */
interface Arch {
  readonly audit: number;
  readonly oci: string;
  readonly syscalls: Readonly<Record<SyncCall, number>>;
}

/** Per Node architecture (process.arch). */
const ARCHES: Readonly<Record<string, Arch>> = {
  // arch/x86/entry/syscalls/syscall_64.tbl
  x64: { audit: 0xc000003e, oci: 'SCMP_ARCH_X86_64', syscalls: { fsync: 74, fdatasync: 75, sync: 162, sync_file_range: 277, syncfs: 306 } },
  // include/uapi/asm-generic/unistd.h
  arm64: { audit: 0xc00000b7, oci: 'SCMP_ARCH_AARCH64', syscalls: { sync: 81, fsync: 82, fdatasync: 83, sync_file_range: 84, syncfs: 267 } },
};

export type SyncCall = 'fsync' | 'fdatasync' | 'sync' | 'sync_file_range' | 'syncfs';
export const SYNC_CALLS: readonly SyncCall[] = ['fsync', 'fdatasync', 'sync', 'sync_file_range', 'syncfs'];

const BPF_LD_W_ABS = 0x20;
const BPF_JMP_JEQ_K = 0x15;
const BPF_RET_K = 0x06;
const SECCOMP_RET_ALLOW = 0x7fff0000;
/** SECCOMP_RET_ERRNO with errno 0: the call is not made and returns 0. */
const SECCOMP_RET_SUCCESS = 0x00050000;
/** offsetof(struct seccomp_data, nr) and (…, arch). */
const DATA_NR = 0;
const DATA_ARCH = 4;

/**
 * The filter as bytes (struct sock_filter[]), or undefined where tsbuild does not know the
 * architecture's call numbers (the step then syncs as usual).
 */
export function syncSuppressingFilter(arch: string = process.arch): Buffer | undefined {
  const a = ARCHES[arch];
  if (a === undefined) return undefined;
  const calls = SYNC_CALLS.map((c) => a.syscalls[c]);
  const n = calls.length;
  const prog: Array<[code: number, jt: number, jf: number, k: number]> = [
    [BPF_LD_W_ABS, 0, 0, DATA_ARCH],
    // Another architecture's call (i386 on x86_64): allowed, at the end.
    [BPF_JMP_JEQ_K, 0, n + 1, a.audit],
    [BPF_LD_W_ABS, 0, 0, DATA_NR],
    // Instruction 3 + i: a match jumps over the rest and the ALLOW to the SUCCESS.
    ...calls.map((nr, i): [number, number, number, number] => [BPF_JMP_JEQ_K, n - i, 0, nr]),
    [BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW],
    [BPF_RET_K, 0, 0, SECCOMP_RET_SUCCESS],
  ];
  // Both architectures above are little-endian.
  const out = Buffer.alloc(prog.length * 8);
  prog.forEach(([code, jt, jf, k], i) => {
    out.writeUInt16LE(code, i * 8);
    out[i * 8 + 2] = jt;
    out[i * 8 + 3] = jf;
    out.writeUInt32LE(k >>> 0, i * 8 + 4);
  });
  return out;
}

/**
 * The same rule as an OCI runtime's `linux.seccomp` (runc, via libseccomp): everything allowed
 * but the sync calls, which return 0. Undefined where syncSuppressingFilter() is.
 */
export function syncSuppressingSeccomp(arch: string = process.arch): Record<string, unknown> | undefined {
  const a = ARCHES[arch];
  if (a === undefined) return undefined;
  return {
    defaultAction: 'SCMP_ACT_ALLOW',
    architectures: [a.oci],
    syscalls: [{ names: [...SYNC_CALLS], action: 'SCMP_ACT_ERRNO', errnoRet: 0 }],
  };
}
