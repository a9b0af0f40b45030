import { describe, expect, it } from 'vitest';
import { SYNC_CALLS, syncSuppressingFilter, syncSuppressingSeccomp } from './suppress-sync.js';

/**
 * Runs a classic BPF seccomp program on one call, as the kernel would (the instructions the
 * filter uses: load a word of seccomp_data, jump if equal, return), and gives its verdict.
 */
function verdict(prog: Buffer, arch: number, nr: number): number {
  const data = Buffer.alloc(64);
  data.writeInt32LE(nr, 0);
  data.writeUInt32LE(arch, 4);
  let acc = 0;
  for (let pc = 0, steps = 0; steps < 100; steps++) {
    if (pc * 8 >= prog.length) throw new Error(`ran off the end at ${pc}`);
    const code = prog.readUInt16LE(pc * 8);
    const jt = prog[pc * 8 + 2]!;
    const jf = prog[pc * 8 + 3]!;
    const k = prog.readUInt32LE(pc * 8 + 4);
    if (code === 0x20) {
      acc = data.readUInt32LE(k);
      pc++;
    } else if (code === 0x15) {
      pc += 1 + (acc === k ? jt : jf);
    } else if (code === 0x06) {
      return k;
    } else {
      throw new Error(`unexpected instruction ${code.toString(16)} at ${pc}`);
    }
  }
  throw new Error('no verdict');
}

const ALLOW = 0x7fff0000;
const SUCCEED = 0x00050000; // SECCOMP_RET_ERRNO with errno 0

describe('syncSuppressingFilter', () => {
  it.each([
    // name, AUDIT_ARCH, sync call numbers, other calls (read, write, openat, msync, close) that must pass
    ['x64', 0xc000003e, { fsync: 74, fdatasync: 75, sync: 162, sync_file_range: 277, syncfs: 306 }, [0, 1, 257, 26, 3]],
    ['arm64', 0xc00000b7, { fsync: 82, fdatasync: 83, sync: 81, sync_file_range: 84, syncfs: 267 }, [63, 64, 56, 227, 57]],
  ] as const)('on %s makes exactly the sync calls succeed and lets every other call and architecture through', (arch, audit, calls, others) => {
    const prog = syncSuppressingFilter(arch)!;
    expect(prog.length % 8).toBe(0);
    expect(Object.keys(calls).sort()).toEqual([...SYNC_CALLS].sort());
    for (const nr of Object.values(calls)) expect(verdict(prog, audit, nr)).toBe(SUCCEED);
    for (const nr of others) expect(verdict(prog, audit, nr)).toBe(ALLOW);
    // i386 (AUDIT_ARCH_I386), whose call 118 is fsync, and x32-style numbers: the real calls.
    for (const nr of [...Object.values(calls), 118]) expect(verdict(prog, 0x40000003, nr)).toBe(ALLOW);
    expect(verdict(prog, audit, 74 | 0x40000000)).toBe(ALLOW);
  });

  it('has no filter for an architecture whose call numbers it does not know', () => {
    expect(syncSuppressingFilter('riscv64')).toBeUndefined();
    expect(syncSuppressingSeccomp('riscv64')).toBeUndefined();
  });

  it.each([
    ['x64', 'SCMP_ARCH_X86_64'],
    ['arm64', 'SCMP_ARCH_AARCH64'],
  ])('gives runc on %s the same calls, answered with errno 0', (arch, oci) => {
    expect(syncSuppressingSeccomp(arch)).toEqual({
      defaultAction: 'SCMP_ACT_ALLOW',
      architectures: [oci],
      syscalls: [{ names: [...SYNC_CALLS], action: 'SCMP_ACT_ERRNO', errnoRet: 0 }],
    });
  });
});
