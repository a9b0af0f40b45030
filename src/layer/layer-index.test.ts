import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { createReadStream } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { indexLayer, readLayerFile } from './layer-index.js';

let dir: string;
let tarFile: string;

// The layer is written by GNU tar, not by us, so the reader is checked against another tool.
beforeAll(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'tsb-index-'));
  const root = path.join(dir, 'root');
  await fs.mkdir(path.join(root, 'etc'), { recursive: true });
  await fs.mkdir(path.join(root, 'opq'), { recursive: true });
  await fs.writeFile(path.join(root, 'etc', 'passwd'), 'root:x:0:0::/root:/bin/sh\n');
  await fs.writeFile(path.join(root, 'etc', '.wh.shadow'), '');
  await fs.writeFile(path.join(root, 'opq', '.wh..wh..opq'), '');
  await fs.symlink('/etc/passwd', path.join(root, 'link'));
  await fs.link(path.join(root, 'etc', 'passwd'), path.join(root, 'hard'));
  await fs.chmod(path.join(root, 'etc', 'passwd'), 0o4755);
  tarFile = path.join(dir, 'layer.tar');
  execFileSync('tar', ['--sort=name', '--owner=7', '--group=8', '--numeric-owner', '-C', root, '-cf', tarFile, '.']);
});
afterAll(() => fs.rm(dir, { recursive: true, force: true }));

describe('indexLayer', () => {
  it('lists entries, whiteouts and opaque directories', async () => {
    const index = await indexLayer(createReadStream(tarFile));
    const byPath = Object.fromEntries(index.entries.map((e) => [e.path, e]));
    expect(byPath['etc/passwd']).toMatchObject({ type: 'file', mode: 0o4755, uid: 7, gid: 8 });
    expect(byPath['link']).toMatchObject({ type: 'symlink', linkTarget: '/etc/passwd' });
    // GNU tar stores the second name of an inode (sorted: ./hard after ./etc/passwd) as a link.
    expect(byPath['hard']).toMatchObject({ type: 'hardlink', linkTarget: 'etc/passwd' });
    expect(index.whiteouts).toEqual(['etc/shadow']);
    expect(index.opaqueDirs).toEqual(['opq']);
    expect(index.entries.some((e) => e.path.includes('.wh.'))).toBe(false);
  });

  it('reads one file, following a hard link', async () => {
    expect((await readLayerFile(() => createReadStream(tarFile), '/etc/passwd', 1024))?.toString()).toContain('root:x:0:0');
    const viaLink = await readLayerFile(() => createReadStream(tarFile), 'hard', 1024);
    expect(viaLink?.toString()).toContain('root:x:0:0');
    expect(await readLayerFile(() => createReadStream(tarFile), 'nope', 1024)).toBeUndefined();
  });

  it('rejects a truncated tar with LAYER_INVALID', async () => {
    const buf = await fs.readFile(tarFile);
    const cut = path.join(dir, 'cut.tar');
    await fs.writeFile(cut, buf.subarray(0, 700));
    await expect(indexLayer(createReadStream(cut))).rejects.toMatchObject({ code: 'LAYER_INVALID' });
  });
});
