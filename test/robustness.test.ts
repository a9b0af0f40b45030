import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { bin, storeWithBusybox, tempDir, tool, tsbuild, writeTree } from './support/cli.js';

// A killed build or a bad archive must never leave the store unusable or a partial blob
// visible. Issue 3, "Bad input".
let work: string;
let root: string;
let ctx: string;

beforeAll(async () => {
  work = await tempDir('robust');
  root = path.join(work, 'store');
  await storeWithBusybox(root);
  ctx = path.join(work, 'ctx');
  await writeTree(ctx, { Dockerfile: 'FROM busybox\nCOPY big.bin /big.bin\nCOPY small.txt /small.txt\n', 'small.txt': 'small\n' });
  // 64 MiB of non-repeating data so a build takes long enough to be killed mid-write.
  const fh = await fs.open(path.join(ctx, 'big.bin'), 'w');
  const chunk = Buffer.alloc(1 << 20);
  for (let i = 0; i < 64; i++) {
    for (let j = 0; j < chunk.length; j += 4) chunk.writeUInt32LE((i * chunk.length + j) * 2654435761 >>> 0, j);
    await fh.write(chunk);
  }
  await fh.close();
});
afterAll(async () => {
  await fs.rm(work, { recursive: true, force: true });
});

function killedBuild(delayMs: number, noCache: boolean): Promise<void> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [bin, 'build', ...(noCache ? ['--no-cache'] : []), '-t', 'killme:1', ctx], {
      env: { ...process.env, TSBUILD_ROOT: root },
      stdio: 'ignore',
    });
    const t = setTimeout(() => child.kill('SIGKILL'), delayMs);
    child.on('exit', () => {
      clearTimeout(t);
      resolve();
    });
  });
}

describe('a build killed at random moments', () => {
  it('leaves a store that fsck finds consistent and the next build can use', async () => {
    // Seeded delays spread over the whole build (a cold build here takes well under 2 s).
    let seed = 42;
    const next = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) % 1500) + 20;
    for (let i = 0; i < 12; i++) {
      await killedBuild(next(), i % 2 === 0);
      const check = await tsbuild(['fsck'], { root });
      expect(check.stdout, `after kill ${i}`).toMatch(/is consistent/);
      expect(check.code).toBe(0);
    }
    const r = await tsbuild(['build', '-t', 'killme:1', ctx], { root });
    expect(r.code).toBe(0);
    const final = await tsbuild(['fsck'], { root });
    expect(final.code).toBe(0);
  });
});

describe('Ctrl-C during a build', () => {
  it('exits 130 and leaves no temporary files', async () => {
    const fresh = path.join(work, 'sigint-store');
    await storeWithBusybox(fresh);
    const code = await new Promise<number | null>((resolve) => {
      const child = spawn(process.execPath, [bin, 'build', '--progress', 'plain', '--no-cache', '-t', 'sigint:1', ctx], {
        env: { ...process.env, TSBUILD_ROOT: fresh },
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      // Interrupt in the middle of the big COPY, once the build has said it started it.
      let sent = false;
      child.stderr.on('data', (d: Buffer) => {
        if (!sent && d.toString().includes('COPY big.bin')) {
          sent = true;
          setTimeout(() => child.kill('SIGINT'), 50);
        }
      });
      child.on('exit', (c) => resolve(c));
    });
    expect(code).toBe(130);
    expect(await fs.readdir(path.join(fresh, 'tmp'))).toEqual([]);
    expect((await tsbuild(['fsck'], { root: fresh })).code).toBe(0);
  });
});

describe('save', () => {
  it('to stdout (a pipe) writes the bytes it writes to a file, in both formats', async () => {
    for (const format of ['oci', 'docker']) {
      const file = path.join(work, `saved-${format}.tar`);
      expect((await tsbuild(['save', '--format', format, '-o', file, 'busybox'], { root })).code).toBe(0);
      const piped = await new Promise<Buffer>((resolve, reject) => {
        const child = spawn(process.execPath, [bin, 'save', '--format', format, 'busybox'], { env: { ...process.env, TSBUILD_ROOT: root }, stdio: ['ignore', 'pipe', 'inherit'] });
        const chunks: Buffer[] = [];
        // Read slowly at first, so the pipe fills and the writer waits for it to drain.
        child.stdout.pause();
        setTimeout(() => child.stdout.resume(), 300);
        child.stdout.on('data', (c: Buffer) => chunks.push(c));
        child.on('error', reject);
        child.on('close', (code) => (code === 0 ? resolve(Buffer.concat(chunks)) : reject(new Error(`save exited ${code}`))));
      });
      expect(piped.equals(await fs.readFile(file)), format).toBe(true);
    }
  });
});

describe('load of a bad archive', () => {
  it('rejects a truncated archive and leaves the store images as they were', async () => {
    const archive = path.join(work, 'good.tar');
    expect((await tsbuild(['save', '-o', archive, 'busybox'], { root })).code).toBe(0);
    const bytes = await fs.readFile(archive);
    const fresh = path.join(work, 'fresh-store');
    for (const cut of [100, 1024, Math.floor(bytes.length / 2), Math.floor(bytes.length * 0.9)]) {
      const bad = path.join(work, `cut-${cut}.tar`);
      await fs.writeFile(bad, bytes.subarray(0, cut));
      const r = await tsbuild(['load', '-i', bad], { root: fresh });
      expect(r.code, `cut at ${cut}`).toBe(1);
      expect(r.stderr).toMatch(/^error: /);
      expect(r.stderr).not.toMatch(/\n\s+at /);
      const images = await tsbuild(['images', '-q'], { root: fresh });
      expect(images.stdout.trim()).toBe('');
    }
    // Every blob arrives whole, the image's manifest among them, but the archive ends before
    // manifest.json and its index.json is damaged: refused, and no dangling image left behind.
    const docker = path.join(work, 'good-docker.tar');
    expect((await tsbuild(['save', '--format', 'docker', '-o', docker, 'busybox'], { root })).code).toBe(0);
    const dbytes = Buffer.from(await fs.readFile(docker));
    const cutAt = dbytes.indexOf(Buffer.from('manifest.json\0'));
    const indexAt = dbytes.indexOf(Buffer.from('index.json\0'));
    expect(cutAt % 512).toBe(0);
    dbytes[indexAt + 512] = 'x'.charCodeAt(0); // the first byte of index.json's content
    await fs.writeFile(path.join(work, 'no-manifest-json.tar'), dbytes.subarray(0, cutAt));
    const r0 = await tsbuild(['load', '-i', path.join(work, 'no-manifest-json.tar')], { root: fresh });
    expect(r0.code).toBe(1);
    expect(r0.stderr).toMatch(/index\.json/);
    expect((await tsbuild(['images', '-q'], { root: fresh })).stdout.trim()).toBe('');
    // A flipped byte in a blob: refused by digest, nothing tagged.
    const flipped = Buffer.from(bytes);
    const at = flipped.indexOf(Buffer.from('bin/busybox'));
    flipped[at + 4096] = (flipped[at + 4096]! ^ 0xff) & 0xff;
    await fs.writeFile(path.join(work, 'flipped.tar'), flipped);
    const r = await tsbuild(['load', '-i', path.join(work, 'flipped.tar')], { root: fresh });
    expect(r.code).toBe(1);
    expect((await tsbuild(['images', '-q'], { root: fresh })).stdout.trim()).toBe('');
    expect((await tsbuild(['fsck'], { root: fresh })).code).toBe(0);
  });
});

describe('a full disk', () => {
  // A real full disk: a 16 MiB tmpfs (CI runs as root, as ../shared/TESTING.md says), holding
  // the store in one case and the output in the other. The 24 MiB file cannot fit in either.
  let disk: string;
  let fullCtx: string;
  beforeAll(async () => {
    if (process.getuid?.() !== 0) throw new Error('this test mounts a small tmpfs and needs root (CI runs as root)');
    disk = path.join(work, 'disk');
    await fs.mkdir(disk);
    await tool('mount', ['-t', 'tmpfs', '-o', 'size=16m', 'tmpfs', disk]);
    fullCtx = path.join(work, 'full-ctx');
    await writeTree(fullCtx, { Dockerfile: 'FROM busybox\nCOPY big.bin /big.bin\n' });
    await fs.copyFile(path.join(ctx, 'big.bin'), path.join(fullCtx, 'big.bin'));
    await fs.truncate(path.join(fullCtx, 'big.bin'), 24 * 1024 * 1024);
  });
  afterAll(async () => {
    if (disk) await tool('umount', [disk]).catch(() => tool('umount', ['-l', disk]));
  });

  const expectCleanFailure = (r: { code: number; stderr: string }, message: RegExp) => {
    expect(r.code, r.stderr).toBe(1);
    expect(r.stderr).toMatch(message);
    expect(r.stderr).not.toMatch(/cancelled|internal error|\n\s+at /);
  };

  it('in the store: a clear error, no partial blob or temp file, a store the next build can use', async () => {
    const store = path.join(disk, 'store');
    await storeWithBusybox(store);
    const before = (await fs.readdir(path.join(store, 'blobs', 'sha256'))).sort();
    expectCleanFailure(await tsbuild(['build', '-t', 'full:1', fullCtx], { root: store }), /no space left on device/);
    expect(await fs.readdir(path.join(store, 'tmp'))).toEqual([]);
    expect((await fs.readdir(path.join(store, 'blobs', 'sha256'))).sort()).toEqual(before);
    expect((await tsbuild(['fsck'], { root: store })).code).toBe(0);
    // load of an archive that does not fit, in both formats: the same.
    const built = await tsbuild(['build', '-t', 'full:src', fullCtx], { root });
    expect(built.code, built.stderr).toBe(0);
    for (const format of ['oci', 'docker']) {
      const archive = path.join(work, `full-${format}.tar`);
      expect((await tsbuild(['save', '--format', format, '-o', archive, 'full:src'], { root })).code).toBe(0);
      expectCleanFailure(await tsbuild(['load', '-i', archive], { root: store }), /no space left on device/);
      expect(await fs.readdir(path.join(store, 'tmp'))).toEqual([]);
      const listed = await tsbuild(['images'], { root: store });
      expect(listed.stdout.trim().split('\n'), `${format}: ${listed.stdout}`).toHaveLength(2); // the header and busybox, no dangling image
      expect((await tsbuild(['fsck'], { root: store })).code).toBe(0);
    }
    // A build that fits then works in the same store.
    const smallCtx = path.join(work, 'small-ctx');
    await writeTree(smallCtx, { Dockerfile: 'FROM busybox\nCOPY small.bin /small.bin\n', 'small.bin': 'x'.repeat(4096) });
    try {
      const r = await tsbuild(['build', '-t', 'full:1', smallCtx], { root: store });
      expect(r.code, r.stderr).toBe(0);
      expect((await tsbuild(['images'], { root: store })).stdout).toMatch(/^full\s+1\s/m);
    } finally {
      await fs.rm(store, { recursive: true, force: true });
    }
  });

  it.each([
    ['oci', 'out.tar'],
    ['docker', 'out.tar'],
    ['tar', 'out.tar'],
    ['oci-layout', 'layout'],
    ['local', 'rootfs'],
  ])('as the destination of --output type=%s: a clear error, no temp file, no index naming missing blobs', async (type, name) => {
    const dest = path.join(disk, name);
    const r = await tsbuild(['build', '--output', `type=${type},dest=${dest}`, fullCtx], { root });
    expectCleanFailure(r, /ENOSPC|no space left on device/);
    const left = await fs.readdir(disk);
    expect(left.filter((n) => n.includes('.tmp-'))).toEqual([]);
    if (type === 'oci' || type === 'docker' || type === 'tar') expect(left).not.toContain(name);
    if (type === 'oci-layout') await expect(fs.access(path.join(dest, 'index.json'))).rejects.toThrow();
    await fs.rm(dest, { recursive: true, force: true });
  });
});

describe('save of a multi-layer image (its layers compressed at once)', () => {
  it('writes the same bytes from two fresh copies of the store, and a killed save leaves nothing half-written', async () => {
    const base = path.join(work, 'multi-store');
    await storeWithBusybox(base);
    const built = await tsbuild(['build', '-t', 'multi:1', ctx], { root: base });
    expect(built.code, built.stderr).toBe(0);
    // Each copy compresses every layer again (hard links: blobs never change in place).
    const archives: Buffer[] = [];
    for (const n of [1, 2]) {
      const copy = path.join(work, `multi-copy-${n}`);
      await tool('cp', ['-al', base, copy]);
      const out = path.join(work, `multi-${n}.tar`);
      const r = await tsbuild(['save', '--format', 'oci', '-o', out, 'multi:1'], { root: copy });
      expect(r.code, r.stderr).toBe(0);
      archives.push(await fs.readFile(out));
    }
    expect(archives[1]!.equals(archives[0]!)).toBe(true);
    // Entries in the order they always had: oci-layout, index.json, then blobs/ by name.
    const { stdout } = await tool('tar', ['-tf', path.join(work, 'multi-1.tar')]);
    const names = stdout.trim().split('\n');
    const blobs = names.filter((n) => n.startsWith('blobs/sha256/') && n.length > 'blobs/sha256/'.length);
    expect(names.slice(0, 2)).toEqual(['oci-layout', 'index.json']);
    expect(blobs).toEqual([...blobs].sort());
    expect(blobs.length).toBeGreaterThanOrEqual(5); // busybox + two COPY layers, config, manifest
    // Killed while compressing (a fresh copy: nothing compressed yet), once a compressed blob is
    // being written to the store: no archive, and a store fsck finds consistent.
    const copy = path.join(work, 'multi-copy-kill');
    await tool('cp', ['-al', base, copy]);
    const out = path.join(work, 'multi-killed.tar');
    const killed = await new Promise<boolean>((resolve) => {
      const child = spawn(process.execPath, [bin, 'save', '--format', 'oci', '-o', out, 'multi:1'], { env: { ...process.env, TSBUILD_ROOT: copy }, stdio: 'ignore' });
      let exited = false;
      child.on('exit', (_code, sig) => {
        exited = true;
        resolve(sig === 'SIGKILL');
      });
      const poll = async (): Promise<void> => {
        while (!exited) {
          const tmp = await fs.readdir(path.join(copy, 'tmp')).catch(() => [] as string[]);
          if (tmp.some((n) => n.endsWith('.blob'))) {
            child.kill('SIGKILL');
            return;
          }
          await new Promise((r) => setTimeout(r, 5));
        }
      };
      void poll();
    });
    expect(killed).toBe(true);
    await expect(fs.access(out)).rejects.toThrow();
    const check = await tsbuild(['fsck'], { root: copy });
    expect(check.code, check.stdout).toBe(0);
    const again = await tsbuild(['save', '--format', 'oci', '-o', out, 'multi:1'], { root: copy });
    expect(again.code, again.stderr).toBe(0);
    expect((await fs.readFile(out)).equals(archives[0]!)).toBe(true);
  });
});
