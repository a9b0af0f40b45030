import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { bin, storeWithBusybox, tempDir, tsbuild, writeTree } from './support/cli.js';

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
