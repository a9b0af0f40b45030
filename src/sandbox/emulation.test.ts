import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { describePlatformSupport, platformSupport } from './emulation.js';

// binfmt_misc registrations as the kernel shows them (Documentation/admin-guide/binfmt-misc.rst):
// the files are written into temporary directories standing for /proc/sys/fs/binfmt_misc.
const AMD64 = { os: 'linux', architecture: 'amd64' };
const REGISTERED = (flags: string, state = 'enabled') =>
  `${state}\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: ${flags}\noffset 0\nmagic 7f454c460201010000000000000000000200b700\n`;

let tmp: string;
async function binfmt(files: Record<string, string>): Promise<string> {
  const dir = await fs.mkdtemp(path.join(tmp, 'binfmt-'));
  for (const [name, text] of Object.entries(files)) await fs.writeFile(path.join(dir, name), text);
  return dir;
}

beforeAll(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'tsbuild-emulation-'));
});
afterAll(async () => {
  await fs.rm(tmp, { recursive: true, force: true });
});

describe('platformSupport', () => {
  it('tells native, emulated and missing platforms apart, with what to do', async () => {
    const cases: Array<{ platform: string; files?: Record<string, string>; ok: boolean; how?: string; reason?: RegExp; hint?: RegExp }> = [
      { platform: 'linux/amd64', ok: true, how: 'native' },
      { platform: 'linux/386', ok: true, how: 'native' },
      { platform: 'linux/arm64', ok: false, reason: /binfmt_misc is not mounted/, hint: /mount -t binfmt_misc .*update-binfmts --enable qemu-aarch64/ },
      { platform: 'linux/arm64', files: { status: 'enabled\n' }, ok: false, reason: /no emulator for linux\/arm64 is registered/, hint: /apt-get install qemu-user-static binfmt-support/ },
      { platform: 'linux/arm64', files: { status: 'disabled\n', 'qemu-aarch64': REGISTERED('PF') }, ok: false, reason: /binfmt_misc is disabled/ },
      { platform: 'linux/arm64', files: { status: 'enabled\n', 'qemu-aarch64': REGISTERED('PF', 'disabled') }, ok: false, reason: /registered but disabled/, hint: /^update-binfmts --enable qemu-aarch64$/ },
      { platform: 'linux/arm64', files: { status: 'enabled\n', 'qemu-aarch64': REGISTERED('P') }, ok: false, reason: /without the F \(fix-binary\) flag/ },
      { platform: 'linux/arm64/v8', files: { status: 'enabled\n', 'qemu-aarch64': REGISTERED('PF') }, ok: true, how: 'binfmt qemu-aarch64' },
      { platform: 'linux/arm/v7', files: { status: 'enabled\n', 'qemu-arm': REGISTERED('POCF') }, ok: true, how: 'binfmt qemu-arm' },
      { platform: 'linux/riscv64', files: { status: 'enabled\n', 'qemu-aarch64': REGISTERED('PF') }, ok: false, reason: /qemu-riscv64 does not exist/ },
      { platform: 'windows/amd64', ok: false, reason: /not a Linux platform/ },
    ];
    for (const c of cases) {
      const [osName = '', architecture = '', variant] = c.platform.split('/');
      const dir = await binfmt(c.files ?? {});
      const binfmtDir = c.files === undefined ? path.join(dir, 'not-mounted') : dir;
      const got = await platformSupport({ os: osName, architecture, ...(variant !== undefined ? { variant } : {}) }, { binfmtDir, host: AMD64 });
      expect(got.ok, c.platform).toBe(c.ok);
      if (c.how !== undefined) expect(got.how, c.platform).toBe(c.how);
      if (c.reason !== undefined) expect(got.reason, c.platform).toMatch(c.reason);
      if (c.hint !== undefined) expect(got.hint, c.platform).toMatch(c.hint);
    }
  });

  it('an arm64 host runs arm64 and 32-bit arm natively, and needs qemu for amd64', async () => {
    const host = { os: 'linux', architecture: 'arm64' };
    const dir = await binfmt({ status: 'enabled\n' });
    expect((await platformSupport({ os: 'linux', architecture: 'arm', variant: 'v7' }, { binfmtDir: dir, host })).how).toBe('native');
    const amd = await platformSupport(AMD64, { binfmtDir: dir, host });
    expect(amd.ok).toBe(false);
    expect(amd.reason).toMatch(/qemu-x86_64/);
    expect(describePlatformSupport([amd])).toMatch(/^platform linux\/amd64: missing - .*\(fix: apt-get install/);
  });
});
