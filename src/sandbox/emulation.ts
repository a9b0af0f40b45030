import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { formatPlatform, hostPlatform, normalizePlatform, platformMatches, platformVector, type Platform } from '../oci/index.js';
import type { Capability } from './probe.js';

/**
 * Whether processes of a platform can run here: natively (the host's CPU, or one it runs,
 * as amd64 runs 386), or through qemu-user registered in binfmt_misc. Only the F (fix-binary)
 * flag makes an interpreter work inside a sandbox's root and in a user namespace: the kernel
 * opens it when it is registered, not when a program starts (Debian's qemu-user-static and
 * tonistiigi/binfmt both register so). BuildKit checks the same way, by running a tiny
 * program of each platform; reading the registration needs no program per platform.
 * https://docs.kernel.org/admin-guide/binfmt-misc.html
 */

/** Where binfmt_misc is mounted on Linux. */
export const BINFMT_MISC_DIR = '/proc/sys/fs/binfmt_misc';

export interface PlatformSupport extends Capability {
  readonly platform: string;
  /** How it runs: on the CPU, or through the named binfmt_misc entry. */
  readonly how?: 'native' | `binfmt ${string}`;
}

/** GOARCH -> the name qemu-user (and its binfmt_misc entry qemu-NAME) gives the CPU. */
const QEMU_ARCH: Readonly<Record<string, string>> = {
  amd64: 'x86_64',
  '386': 'i386',
  arm64: 'aarch64',
  arm: 'arm',
  ppc64le: 'ppc64le',
  ppc64: 'ppc64',
  s390x: 's390x',
  riscv64: 'riscv64',
  mips64le: 'mips64el',
  mips64: 'mips64',
  mipsle: 'mipsel',
  mips: 'mips',
  loong64: 'loongarch64',
};

/** The platforms `tsbuild info`-style reports list (BuildKit's default emulator set). */
export const COMMON_PLATFORMS: readonly Platform[] = ['linux/amd64', 'linux/arm64', 'linux/arm/v7', 'linux/386', 'linux/ppc64le', 'linux/s390x', 'linux/riscv64'].map((p) => {
  const [os = 'linux', architecture = 'amd64', variant] = p.split('/');
  return { os, architecture, ...(variant !== undefined ? { variant } : {}) };
});

export interface EmulationOptions {
  /** Where binfmt_misc is read; default /proc/sys/fs/binfmt_misc. */
  readonly binfmtDir?: string | undefined;
  /** The host's platform; default the process's. */
  readonly host?: Platform | undefined;
}

/**
 * Whether RUN steps of `platform` can run on this host, and when not, what to install or
 * register (the reason and hint name the package, the command and the binfmt_misc entry).
 */
export async function platformSupport(platform: Platform, opts: EmulationOptions = {}): Promise<PlatformSupport> {
  const want = normalizePlatform(platform);
  const text = formatPlatform(want);
  const host = { ...(opts.host ?? hostPlatform()), os: 'linux' };
  if (want.os !== 'linux') return { platform: text, ok: false, reason: `${text} is not a Linux platform`, hint: 'build for linux/ARCH' };
  if (platformVector(normalizePlatform(host)).some((p) => platformMatches(p, want))) return { platform: text, ok: true, how: 'native' };
  const qemu = QEMU_ARCH[want.architecture];
  if (qemu === undefined) return { platform: text, ok: false, reason: `no emulator is known for the ${want.architecture} architecture` };
  const entry = `qemu-${qemu}`;
  const dir = opts.binfmtDir ?? BINFMT_MISC_DIR;
  const install = `apt-get install qemu-user-static binfmt-support, then update-binfmts --enable ${entry}`;
  const status = await readFile(join(dir, 'status'), 'utf8').catch(() => undefined);
  if (status === undefined) {
    return {
      platform: text,
      ok: false,
      reason: `binfmt_misc is not mounted at ${dir}, so ${text} programs cannot be emulated`,
      hint: `mount -t binfmt_misc binfmt_misc ${BINFMT_MISC_DIR}; ${install}`,
    };
  }
  if (status.trim() !== 'enabled') return { platform: text, ok: false, reason: `binfmt_misc is disabled (${join(dir, 'status')})`, hint: `echo 1 > ${join(BINFMT_MISC_DIR, 'status')}` };
  const registration = await readFile(join(dir, entry), 'utf8').catch(() => undefined);
  if (registration === undefined) {
    return { platform: text, ok: false, reason: `no emulator for ${text} is registered (${join(dir, entry)} does not exist)`, hint: install };
  }
  const lines = registration.split('\n');
  if (lines[0]?.trim() !== 'enabled') return { platform: text, ok: false, reason: `the ${entry} emulator is registered but disabled`, hint: `update-binfmts --enable ${entry}` };
  const flags = lines.find((l) => l.startsWith('flags:'))?.slice('flags:'.length).trim() ?? '';
  if (!flags.includes('F')) {
    return {
      platform: text,
      ok: false,
      reason: `the ${entry} emulator is registered without the F (fix-binary) flag, so it cannot be found inside the build's sandbox`,
      hint: `register it with the F flag: Debian's qemu-user-static does (${install})`,
    };
  }
  return { platform: text, ok: true, how: `binfmt ${entry}` };
}

/** One line per platform: `linux/arm64: ok (binfmt qemu-aarch64)` or `missing - reason (fix: hint)`. */
export function describePlatformSupport(list: readonly PlatformSupport[]): string {
  return list.map((s) => `platform ${s.platform}: ${s.ok ? `ok (${s.how ?? ''})` : `missing - ${s.reason ?? ''}${s.hint ? ` (fix: ${s.hint})` : ''}`}`).join('\n');
}
