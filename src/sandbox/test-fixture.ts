/**
 * Test support for sandbox tests (used by *.test.ts and the rootless driver): a busybox rootfs
 * made by scripts/make-busybox-rootfs, process and mount checks. Not part of the front door.
 */
import { execFile } from 'node:child_process';
import { access, mkdir, readdir, readFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const exec = promisify(execFile);

/** The repository root, from src/sandbox or dist/src/sandbox. */
export function repoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    if (dir.endsWith('/src/sandbox')) return resolve(dir, '../..').replace(/\/dist$/, '');
    dir = dirname(dir);
  }
  return resolve(dirname(fileURLToPath(import.meta.url)), '../..');
}

/** Makes a busybox rootfs at `dir`; fails loudly when busybox-static is missing. */
export async function makeBusyboxRootfs(dir: string, opts: { inUserNamespace?: boolean } = {}): Promise<string> {
  const script = join(repoRoot(), 'scripts', 'make-busybox-rootfs');
  await access(script);
  const [cmd, args] = opts.inUserNamespace ? ['unshare', ['--map-auto', '--map-root-user', '--', script, dir]] : [script, [dir]];
  try {
    await exec(cmd, args as string[]);
  } catch (e) {
    throw new Error(`scripts/make-busybox-rootfs failed (is busybox-static installed? run scripts/setup): ${String(e)}`);
  }
  return dir;
}

/** PIDs whose command line contains `marker` (e.g. a unique `sleep 1234.5`). */
export async function processesMatching(marker: string): Promise<number[]> {
  const out: number[] = [];
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const cmdline = await readFile(`/proc/${name}/cmdline`, 'utf8').catch(() => '');
    if (cmdline.split('\0').join(' ').includes(marker)) out.push(Number(name));
  }
  return out;
}

/** Lines of /proc/self/mountinfo and /proc/mounts mentioning `path`. */
export async function mountsUnder(path: string): Promise<string[]> {
  const a = await readFile('/proc/self/mountinfo', 'utf8');
  const b = await readFile('/proc/mounts', 'utf8');
  return [...a.split('\n'), ...b.split('\n')].filter((l) => l.includes(path));
}

export async function freshDirs(base: string, ...names: string[]): Promise<string[]> {
  const out: string[] = [];
  for (const n of names) {
    const p = join(base, n);
    await mkdir(p, { recursive: true });
    out.push(p);
  }
  return out;
}
