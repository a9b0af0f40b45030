import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fs from 'node:fs/promises';
import path from 'node:path';
import { storeWithBusybox, tempDir, tool, tsbuild, writeTree } from './support/cli.js';
import { startRegistry, type RunningRegistry } from './support/registry.js';
import { sha256Digest } from '../src/oci/index.js';

// build --push to the real registry, then a fresh store whose FROM names that image pulls it
// (pull policy "missing"), and --pull=never refuses to.
let work: string;
let reg: RunningRegistry;

beforeAll(async () => {
  work = await tempDir('build-registry');
  reg = await startRegistry({ mode: { kind: 'open' } });
});
afterAll(async () => {
  await reg?.stop();
  await fs.rm(work, { recursive: true, force: true });
});

describe('builds with a registry', () => {
  it('pushes every tag with --push, and FROM pulls a missing base image', async () => {
    const root1 = path.join(work, 'store1');
    await storeWithBusybox(root1);
    const ctx = path.join(work, 'ctx');
    await writeTree(ctx, { Dockerfile: 'FROM busybox\nCOPY msg /msg\nRUN cat /msg > /copied\n', msg: 'pushed and pulled\n' });
    const base = `${reg.host}/test/base:1`;
    const r = await tsbuild(['build', '--push', '-t', base, '-t', `${reg.host}/test/base:latest`, '--progress', 'plain', ctx], { root: root1 });
    expect(r.stderr).not.toMatch(/error/i);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/test\/base:1: digest: sha256:/);
    const inspected = JSON.parse((await tool('skopeo', ['inspect', '--tls-verify=false', `docker://${base}`])).stdout) as { Layers: string[] };
    expect(inspected.Layers.length).toBe(3);
    // Every tag was pushed, and each names the same manifest.
    const digests = [...r.stderr.matchAll(/test\/base:(?:1|latest): digest: (sha256:[0-9a-f]{64})/g)].map((m) => m[1]);
    expect(digests).toHaveLength(2);
    expect(digests[0]).toBe(digests[1]);
    for (const tag of ['1', 'latest']) {
      const { stdout: raw } = await tool('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${reg.host}/test/base:${tag}`]);
      expect(sha256Digest(Buffer.from(raw)), tag).toBe(digests[0]);
    }

    // A fresh store: FROM the pushed image pulls it.
    const root2 = path.join(work, 'store2');
    const ctx2 = path.join(work, 'ctx2');
    await writeTree(ctx2, { Dockerfile: `FROM ${base}\nRUN cat /copied > /again\n` });
    const never = await tsbuild(['build', '--pull=never', ctx2], { root: root2 });
    expect(never.code).toBe(1);
    expect(never.stderr).toMatch(/Dockerfile:1: .*--pull=never/);
    const out = path.join(work, 'out');
    const pulled = await tsbuild(['build', '--output', `type=local,dest=${out}`, ctx2], { root: root2 });
    expect(pulled.stderr).not.toMatch(/error/i);
    expect(pulled.code).toBe(0);
    expect(await fs.readFile(path.join(out, 'again'), 'utf8')).toBe('pushed and pulled\n');
    const images = await tsbuild(['images'], { root: root2 });
    expect(images.stdout).toContain('test/base');
  });

  it('names the registry when a base image cannot be pulled', async () => {
    const ctx = path.join(work, 'ctx3');
    await writeTree(ctx, { Dockerfile: `FROM ${reg.host}/nope/missing:1\n` });
    const r = await tsbuild(['build', ctx], { root: path.join(work, 'store3') });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/Dockerfile:1: .*nope\/missing/);
    expect(r.stderr).toContain(reg.host);
    expect(r.stderr).not.toMatch(/\n\s+at .*\.js:\d+/);
  });
});
