import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { requireTool, storeWithBusybox, tool, tsbuild, writeTree } from './support/cli.js';
import { startRegistry, type RunningRegistry } from './support/registry.js';

// zstd layers end to end with the compiled CLI: an OCI archive with compression=zstd read back by
// skopeo into containers-storage (which decompresses every layer and checks it against the
// config's diff IDs), a push with --compression zstd pulled back by tsbuild into a fresh store,
// and the clear refusals (docker archives, a zstd program missing from PATH).
for (const t of ['zstd', 'skopeo']) await requireTool(t);

let tmp: string;
let root: string;
let ctxDir: string;
let reg: RunningRegistry;

beforeAll(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'tsbuild-zstd-'));
  root = path.join(tmp, 'root');
  await storeWithBusybox(root);
  ctxDir = path.join(tmp, 'ctx');
  await writeTree(ctxDir, {
    Dockerfile: 'FROM busybox\nCOPY app/ /app/\nCMD ["cat", "/app/hello.txt"]\n',
    'app/hello.txt': 'hello from a zstd layer\n',
    'app/data.txt': 'compressible line of text\n'.repeat(5000),
  });
  reg = await startRegistry({ mode: { kind: 'open' } });
});

afterAll(async () => {
  await reg?.stop();
  if (tmp) await fs.rm(tmp, { recursive: true, force: true });
});

describe('compression=zstd', () => {
  it('writes an OCI archive of zstd layers that skopeo unpacks into containers-storage', async () => {
    const out = path.join(tmp, 'img.tar');
    const r = await tsbuild(['build', '-q', '-t', 'zapp:1', '-o', `type=oci,dest=${out},compression=zstd,compression-level=5`, ctxDir], { root });
    expect(r.code, r.stderr).toBe(0);
    const raw = JSON.parse((await tool('skopeo', ['inspect', '--raw', `oci-archive:${out}`])).stdout) as { layers: { mediaType: string }[] };
    expect(raw.layers.length).toBe(2);
    for (const l of raw.layers) expect(l.mediaType).toBe('application/vnd.oci.image.layer.v1.tar+zstd');
    // containers/image decompresses each layer while storing it and refuses a diff ID mismatch.
    const cs = path.join(tmp, 'cs');
    await tool('skopeo', ['copy', '-q', `oci-archive:${out}`, `containers-storage:[vfs@${cs}/root+${cs}/run]localhost/zapp:1`]);
    const found = (await tool('sh', ['-c', `cat ${cs}/root/vfs/dir/*/app/hello.txt`])).stdout;
    expect(found).toBe('hello from a zstd layer\n');
    await tool('sh', ['-c', `find '${cs}' -depth -type d -exec umount -l {} + 2>/dev/null; rm -rf '${cs}'`]).catch(() => undefined);
  });

  it('refuses zstd for docker archives and bad levels, as usage errors, writing nothing', async () => {
    const out = path.join(tmp, 'docker.tar');
    const r = await tsbuild(['build', '-q', '-o', `type=docker,dest=${out},compression=zstd`, ctxDir], { root });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/type=docker cannot hold zstd layers/);
    const l = await tsbuild(['build', '-q', '-o', `type=oci,dest=${out},compression=zstd,compression-level=23`, ctxDir], { root });
    expect(l.code).toBe(2);
    expect(l.stderr).toMatch(/compression-level "23" is not in 0\.\.22/);
    await expect(fs.stat(out)).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('pushes zstd layers (push --compression zstd) that tsbuild pulls back into a fresh store', async () => {
    const ref = `${reg.host}/zstd/app:1`;
    const p = await tsbuild(['push', '-q', '--compression', 'zstd', 'zapp:1', ref], { root });
    expect(p.code, p.stderr).toBe(0);
    const raw = JSON.parse((await tool('skopeo', ['inspect', '--tls-verify=false', '--raw', `docker://${ref}`])).stdout) as { layers: { mediaType: string }[] };
    for (const l of raw.layers) expect(l.mediaType).toBe('application/vnd.oci.image.layer.v1.tar+zstd');
    const fresh = path.join(tmp, 'fresh');
    const pulled = await tsbuild(['pull', '-q', ref], { root: fresh });
    expect(pulled.code, pulled.stderr).toBe(0);
    // The pulled image is the built one: the same config, layers decompressed to their diff IDs.
    const id = (await tsbuild(['inspect', '--format', '{{.Id}}', 'zapp:1'], { root })).stdout.trim();
    expect((await tsbuild(['inspect', '--format', '{{.Id}}', ref], { root: fresh })).stdout.trim()).toBe(id);
    const out = path.join(tmp, 'rootfs');
    const o = await tsbuild(['build', '-q', '--pull=never', '-o', `type=local,dest=${out}`, '-'], { root: fresh, input: `FROM ${ref}\n` });
    expect(o.code, o.stderr).toBe(0);
    expect(await fs.readFile(path.join(out, 'app', 'hello.txt'), 'utf8')).toBe('hello from a zstd layer\n');
  });

  it('says which program is missing when zstd is not on PATH (no stack trace, no archive)', async () => {
    const out = path.join(tmp, 'nozstd.tar');
    // A fresh store: the zstd forms of the first test are remembered in `root`.
    const fresh = path.join(tmp, 'root-nozstd');
    await storeWithBusybox(fresh);
    const r = await tsbuild(['build', '-q', '-o', `type=oci,dest=${out},compression=zstd`, ctxDir], { root: fresh, env: { PATH: path.join(tmp, 'empty-path') } });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/zstd program/);
    expect(r.stderr).toMatch(/apt-get install zstd/);
    expect(r.stderr).not.toMatch(/\n\s+at /);
    expect(await fs.readdir(tmp)).not.toContain('nozstd.tar');
    expect((await fs.readdir(tmp)).filter((f) => f.startsWith('nozstd.tar.tmp'))).toEqual([]);
  });
});
