import { execFile } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createChrootRunner, createHostRunner, probeSandbox, type Runner, type SandboxCapabilities } from '../sandbox/index.js';
import { makeBusyboxRootfs, processesMatching } from '../sandbox/test-fixture.js';
import { diffCopyRootfs, indexTree, makeMountPoints, parseStatIndex, prepareCopyRootfs, removeMountPoints, serializeStatIndex } from './copy-diff.js';

const exec = promisify(execFile);
let base: string;
let busybox: string;
let layer: string;
let caps: SandboxCapabilities;
let n = 0;

beforeAll(async () => {
  if (process.getuid?.() !== 0) throw new Error('copy-diff.test.ts runs as root');
  caps = await probeSandbox();
  base = await mkdtemp(join(tmpdir(), 'tsbuild-copy-test-'));
  busybox = await makeBusyboxRootfs(join(base, 'busybox'));
  // An overlay-style snapshot layer: a whiteout (0/0 char device), an opaque dir, a new file.
  layer = join(base, 'layer1');
  await mkdir(join(layer, 'etc'), { recursive: true });
  await exec('mknod', [join(layer, 'etc/group'), 'c', '0', '0']);
  await mkdir(join(layer, 'usr'), { recursive: true });
  await exec('setfattr', ['-n', 'trusted.overlay.opaque', '-v', 'y', join(layer, 'usr')]);
  await mkdir(join(layer, 'usr/only'));
  await writeFile(join(layer, 'usr/only/f'), 'f');
  await mkdir(join(layer, 'data/old'), { recursive: true });
  await writeFile(join(layer, 'data/old/a'), 'a');
}, 120_000);

afterAll(async () => {
  if (base) await rm(base, { recursive: true, force: true });
});

async function rootfs(): Promise<string> {
  const dir = join(base, `root${++n}`);
  await mkdir(dir);
  await prepareCopyRootfs([busybox, layer], dir, { capabilities: caps });
  return dir;
}

async function run(runner: Runner, dir: string, script: string) {
  const out: Buffer[] = [];
  const r = await runner.run(
    { rootfs: { dir }, args: ['/bin/sh', '-c', script], env: ['PATH=/bin:/usr/bin', 'X=1'], cwd: '/tmp', user: { uid: 0, gid: 0 }, network: 'host', stdout: (c) => out.push(c) },
    {},
  );
  return { ...r, stdout: Buffer.concat(out).toString() };
}

describe('copy-and-walk snapshots', () => {
  it('merges layers applying whiteouts and opaque dirs', async () => {
    const dir = await rootfs();
    await expect(stat(join(dir, 'etc/group'))).rejects.toThrow();
    expect(await readdir(join(dir, 'usr'))).toEqual(['only']);
    expect(await readFile(join(dir, 'etc/passwd'), 'utf8')).toContain('root:x:0:0');
    expect((await stat(join(dir, 'bin/busybox'))).mode & 0o777).toBe(0o755);
  });

  it('chroot runner + diff: a new file, a whiteout, an opaque dir', async () => {
    const dir = await rootfs();
    const before = await indexTree(dir, { capabilities: caps });
    const r = await run(createChrootRunner({ capabilities: caps }), dir, 'pwd; echo $X; echo new > /newfile; rm /etc/passwd; rm -rf /data/old && mkdir /data/old && echo b > /data/old/b; echo t > /tmp/t');
    expect(r).toMatchObject({ exitCode: 0, stdout: '/tmp\n1\n' });
    const { changes } = await diffCopyRootfs(dir, before, { capabilities: caps });
    const summary = changes.map((c) => `${c.kind} ${c.path}`);
    // rm -rf + mkdir may get the freed inode number back, so the recreated dir shows either
    // as opaque (new inode) or as a whiteout of its old content: both layers give the same tree.
    const recreated = summary.includes('opaque data/old') ? 'opaque data/old' : 'whiteout data/old/a';
    expect(summary).toEqual(['dir data', 'dir data/old', recreated, 'file data/old/b', 'dir etc', 'whiteout etc/passwd', 'file newfile', 'dir tmp', 'file tmp/t']);
  });

  it('detects a rewrite that keeps size and mtime (ctime), and ignores an untouched tree', async () => {
    const dir = await rootfs();
    const before = await indexTree(dir, { capabilities: caps });
    const first = await diffCopyRootfs(dir, before, { capabilities: caps });
    expect(first.changes).toEqual([]);
    // The after-index round-trips through its persisted form and is the next step's before.
    expect(parseStatIndex(serializeStatIndex(first.after))).toEqual(first.after);
    await run(createChrootRunner({ capabilities: caps }), dir, 'touch -r /etc/passwd /tmp/ref; sed s/root:x/ROOT:x/ /etc/passwd > /tmp/p; cat /tmp/p > /etc/passwd; touch -r /tmp/ref /etc/passwd; rm /tmp/ref /tmp/p');
    const { changes } = await diffCopyRootfs(dir, parseStatIndex(serializeStatIndex(first.after)), { capabilities: caps });
    expect(changes.map((c) => `${c.kind} ${c.path}`)).toContain('file etc/passwd');
  });

  it('chroot runner applies the user and kills the process group on abort', async () => {
    const dir = await rootfs();
    await chmod(join(dir, 'tmp'), 0o1777);
    const out: Buffer[] = [];
    const r = await createChrootRunner({ capabilities: caps }).run(
      { rootfs: { dir }, args: ['/bin/sh', '-c', 'id -u; id -G'], env: ['PATH=/bin'], cwd: '/', user: { uid: 1000, gid: 1000, additionalGids: [10, 20] }, network: 'host', stdout: (c) => out.push(c) },
      {},
    );
    expect([r.exitCode, Buffer.concat(out).toString()]).toEqual([0, '1000\n1000 10 20\n']);
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 300);
    const marker = '5005.5';
    await expect(
      createChrootRunner({ capabilities: caps }).run({ rootfs: { dir }, args: ['/bin/sh', '-c', `sleep ${marker}`], env: ['PATH=/bin'], cwd: '/', user: { uid: 0, gid: 0 }, network: 'host' }, { signal: ac.signal }),
    ).rejects.toMatchObject({ name: 'AbortError' });
    expect(await processesMatching(`sleep ${marker}`)).toEqual([]);
  });

  it.each(['chroot', 'none'] as const)('%s runner leaves no background process behind', async (kind) => {
    const dir = await rootfs();
    const marker = kind === 'chroot' ? '6006.5' : '6007.5';
    const runner = kind === 'chroot' ? createChrootRunner({ capabilities: caps }) : createHostRunner({ capabilities: caps });
    const r = await run(runner, dir, `/bin/sleep ${marker} & echo started`);
    expect(r.stdout).toBe('started\n');
    expect(await processesMatching(`sleep ${marker}`)).toEqual([]);
  });

  it('none runner, as root, chroots into the tree', async () => {
    const dir = await rootfs();
    const r = await run(createHostRunner({ capabilities: caps }), dir, 'pwd; echo $X; head -1 /etc/passwd');
    expect(r.stdout).toBe('/tmp\n1\nroot:x:0:0:root:/root:/bin/sh\n');
  });

  it('lists the parents of a change, and a directory replaced by a file needs no whiteouts below it', async () => {
    const dir = await rootfs();
    await run(createChrootRunner({ capabilities: caps }), dir, 'mkdir -p /usr/local/share/x/y && echo f > /usr/local/share/x/y/f');
    const before = await indexTree(dir, { capabilities: caps });
    await run(createChrootRunner({ capabilities: caps }), dir, 'echo g > /usr/local/share/x/y/g && rm -rf /data/old && echo file > /data/old');
    const { changes } = await diffCopyRootfs(dir, before, { capabilities: caps });
    expect(changes.map((c) => `${c.kind} ${c.path}`)).toEqual(['dir data', 'file data/old', 'dir usr', 'dir usr/local', 'dir usr/local/share', 'dir usr/local/share/x', 'dir usr/local/share/x/y', 'file usr/local/share/x/y/g']);
  });

  it('removes the mount points it made and puts back the mtime of a parent the step did not write in', async () => {
    const dir = await rootfs();
    const opts = { capabilities: caps };
    const before = await indexTree(dir, opts);
    const targets = [
      { path: '/etc/resolv.conf', dir: false },
      { path: '/etc/hosts', dir: false },
      { path: '/data/cache/deep', dir: true },
    ];
    const made = await makeMountPoints(dir, targets, opts);
    expect(made.created).toEqual(['etc/resolv.conf', 'etc/hosts', 'data/cache']);
    await new Promise((r) => setTimeout(r, 20)); // so a write by the step gets a later mtime
    await run(createChrootRunner({ capabilities: caps }), dir, 'echo x > /data/x');
    const touched = await removeMountPoints(dir, made, before, opts);
    expect([...touched].sort()).toEqual(['data', 'etc']);
    const { changes } = await diffCopyRootfs(dir, before, { ...opts, ignoreCtime: touched });
    expect(changes.map((c) => `${c.kind} ${c.path}`)).toEqual(['dir data', 'file data/x']);
    // /data keeps the mtime the step gave it, /etc the one it had.
    const data = changes.find((c) => c.path === 'data');
    expect(data?.kind === 'dir' && data.mtimeMs).toBeGreaterThan(before.get('data')!.mtimeMs);
    expect((await stat(join(dir, 'etc'))).mtimeMs).toBeCloseTo(before.get('etc')!.mtimeMs, 2);
    await expect(stat(join(dir, 'data/cache'))).rejects.toThrow();
  });
});
