import { execFile } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, stat, symlink, writeFile, copyFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { captureUpperDir, collectChanges, pruneMountPoints } from '../snapshot/capture.js';
import { createBwrapRunner, prepareOverlay, probeSandbox, type RunSpec, type SandboxCapabilities } from './index.js';
import { freshDirs, makeBusyboxRootfs } from './test-fixture.js';

const exec = promisify(execFile);
let base: string;
let busybox: string;
let caps: SandboxCapabilities;
let n = 0;

beforeAll(async () => {
  if (process.getuid?.() !== 0) throw new Error('overlay.test.ts runs as root');
  caps = await probeSandbox();
  base = await mkdtemp(join(tmpdir(), 'tsbuild-overlay-test-'));
  await chmod(base, 0o711);
  busybox = await makeBusyboxRootfs(join(base, 'busybox'));
}, 120_000);

afterAll(async () => {
  if (base) await rm(base, { recursive: true, force: true });
});

async function run(lowerDirs: string[], script: string, over: Partial<RunSpec> = {}) {
  const [upper, work] = await freshDirs(base, `u${++n}`, `w${n}`);
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  const r = await createBwrapRunner({ capabilities: caps, tmpDir: base }).run(
    {
      rootfs: { lowerDirs, upperDir: upper!, workDir: work! },
      args: ['/bin/sh', '-c', script],
      env: ['PATH=/bin:/usr/bin:/sbin:/usr/sbin'],
      cwd: '/',
      user: { uid: 0, gid: 0 },
      network: 'none',
      stdout: (c) => out.push(c),
      stderr: (c) => err.push(c),
      ...over,
    },
    {},
  );
  const changes = await collectChanges(captureUpperDir(upper!, { capabilities: caps, lowerDirs }));
  return { ...r, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString(), upper: upper!, changes, summary: changes.map((c) => `${c.kind} ${c.path}`) };
}

describe('overlay snapshots', () => {
  it('keeps the mount data short with 300 layers at long paths', async () => {
    const lowers = [busybox];
    const deep = join(base, 'x'.repeat(120), 'y'.repeat(120));
    for (let i = 0; i < 300; i++) {
      const d = join(deep, `layer-${String(i).padStart(4, '0')}`);
      await mkdir(d, { recursive: true });
      await writeFile(join(d, `file${i}`), String(i));
      lowers.push(d);
    }
    const stepDir = await mkdtemp(join(base, 'prep-'));
    const p = await prepareOverlay({ lowerDirs: lowers, upperDir: join(base, 'uu'), workDir: join(base, 'ww') }, stepDir, { userxattr: false });
    expect(p.options.length).toBeLessThan(4000);
    expect(p.options.startsWith('lowerdir=l/300:l/299:')).toBe(true);
    const r = await run(lowers, 'ls / | grep -c "^file"; cat /file0 /file299');
    expect(r.stdout).toBe('300\n0299');
  });

  it('drops mount points (and parents made for them) from an image without /etc, /dev, /proc', async () => {
    const tiny = join(base, 'tiny');
    await mkdir(join(tiny, 'bin'), { recursive: true });
    await copyFile(join(busybox, 'bin/busybox'), join(tiny, 'bin/busybox'));
    await chmod(join(tiny, 'bin/busybox'), 0o755);
    await symlink('busybox', join(tiny, 'bin/sh'));
    const r = await run([tiny], 'echo x > /x; /bin/busybox ls /');
    expect(r.stdout).toContain('etc'); // the mount points were there during the step
    expect(r.summary).toEqual(['file x']);
    // ... and really are in the upper dir: capture is what filters them; prune removes them
    // so the upper dir kept as the next snapshot equals the layer.
    expect((await stat(join(r.upper, 'etc/resolv.conf'))).size).toBe(0);
    expect(await pruneMountPoints(r.upper, { capabilities: caps, lowerDirs: [tiny] })).toEqual(['dev', 'etc', 'proc']);
    expect(await readdir(r.upper)).toEqual(['x']);
  });

  it('a renamed lower dir is fully in the upper dir (redirect_dir=nofollow), a chmod copies the file (metacopy=off)', async () => {
    const layer = join(base, 'renames');
    await mkdir(join(layer, 'data/sub'), { recursive: true });
    await writeFile(join(layer, 'data/sub/f'), 'content');
    await writeFile(join(layer, 'big'), Buffer.alloc(100_000, 1));
    const r = await run([busybox, layer], 'mv /data /data2 && chmod 600 /big');
    expect(r.stderr).toBe('');
    expect(r.summary).toEqual(['file big', 'whiteout data', 'dir data2', 'dir data2/sub', 'file data2/sub/f']);
    expect(await readFile(join(r.upper, 'data2/sub/f'), 'utf8')).toBe('content');
    expect((await stat(join(r.upper, 'big'))).size).toBe(100_000);
  });

  it('a real device node made as root is kept, not taken for a whiteout', async () => {
    const r = await run([busybox], 'mknod /null2 c 1 3');
    expect(r.changes).toContainEqual(expect.objectContaining({ kind: 'other', path: 'null2' }));
  });

  it('a mount point that existed in the image stays untouched', async () => {
    const layer = join(base, 'with-hosts');
    await mkdir(join(layer, 'etc'), { recursive: true });
    await writeFile(join(layer, 'etc/hosts'), '127.0.0.1 image\n');
    const r = await run([busybox, layer], 'cat /etc/hosts');
    expect(r.stdout).toBe(await readFile('/etc/hosts', 'utf8'));
    expect(r.summary).toEqual([]);
  });

  it('getfattr is the real one (attr package)', async () => {
    const { stdout } = await exec('getfattr', ['--version']);
    expect(stdout).toContain('getfattr');
  });
});
