import { execFileSync } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isTarHeader, sniffArchive } from './archive-sniff.js';

// Archives made by the real tools (GNU tar, gzip, bzip2, xz, zstd), as ADD meets them.
let dir: string;
beforeAll(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'tsbuild-sniff-'));
  await fs.mkdir(path.join(dir, 'tree'));
  await fs.writeFile(path.join(dir, 'tree', 'a.txt'), 'a\n');
  await fs.writeFile(path.join(dir, 'note.txt'), 'just text, not a tar\n'.repeat(40));
  const sh = (cmd: string) => execFileSync('sh', ['-c', cmd], { cwd: dir });
  sh('tar --format=gnu -cf gnu.tar -C tree . && tar --format=v7 -cf v7.tar -C tree . && tar --format=posix -cf pax.tar -C tree .');
  for (const [tool, ext] of [['gzip', 'gz'], ['bzip2', 'bz2'], ['xz', 'xz'], ['zstd', 'zst']] as const) {
    sh(`${tool} -c gnu.tar > gnu.tar.${ext} && ${tool} -c note.txt > note.txt.${ext}`);
  }
  sh('head -c 20 gnu.tar.gz > truncated.gz && : > empty && head -c 1024 /dev/zero > zeros');
});
afterAll(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

describe('sniffArchive', () => {
  it.each([
    ['gnu.tar', 'tar'],
    ['v7.tar', 'tar'], // no ustar magic: Go's reader takes it on its checksum
    ['pax.tar', 'tar'],
    ['gnu.tar.gz', 'gzip'],
    ['gnu.tar.bz2', 'bzip2'],
    ['gnu.tar.xz', 'xz'],
    ['gnu.tar.zst', 'zstd'],
  ])('unpacks %s as %s', async (name, kind) => {
    expect(await sniffArchive(path.join(dir, name))).toBe(kind);
  });

  it.each(['note.txt', 'note.txt.gz', 'note.txt.bz2', 'note.txt.xz', 'note.txt.zst', 'truncated.gz', 'empty', 'zeros'])('copies %s as it is', async (name) => {
    expect(await sniffArchive(path.join(dir, name))).toBeUndefined();
  });

  it('checks the header checksum, not a magic string', async () => {
    const block = Buffer.from(await fs.readFile(path.join(dir, 'gnu.tar'))).subarray(0, 512);
    expect(isTarHeader(block)).toBe(true);
    block[0] = block[0]! ^ 1; // one byte of the name changed: the checksum no longer matches
    expect(isTarHeader(block)).toBe(false);
  });
});
