import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { writeResultFile } from './result-file.js';

let dir: string;
beforeAll(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'tsb-result-'));
});
afterAll(() => fs.rm(dir, { recursive: true, force: true }));

describe('writeResultFile', () => {
  it('replaces a symlink planted at the path instead of writing through it', async () => {
    const victim = path.join(dir, 'victim');
    await fs.writeFile(victim, 'precious');
    const dest = path.join(dir, 'iid');
    await fs.symlink(victim, dest);
    await writeResultFile(dest, 'sha256:abc', '--iidfile');
    expect(await fs.readFile(victim, 'utf8')).toBe('precious');
    expect((await fs.lstat(dest)).isFile()).toBe(true);
    expect(await fs.readFile(dest, 'utf8')).toBe('sha256:abc');
    // A dangling link (pointing where a file would be created) is replaced as well.
    await fs.rm(dest);
    await fs.symlink(path.join(dir, 'created-elsewhere'), dest);
    await writeResultFile(dest, 'x', '--iidfile');
    await expect(fs.lstat(path.join(dir, 'created-elsewhere'))).rejects.toMatchObject({ code: 'ENOENT' });
    expect((await fs.readdir(dir)).sort()).toEqual(['iid', 'victim']);
  });

  it('a directory at the path or a missing parent is OUTPUT_INVALID, and no temp is left', async () => {
    const sub = path.join(dir, 'sub');
    await fs.mkdir(sub);
    await expect(writeResultFile(sub, 'x', '--metadata-file')).rejects.toMatchObject({ code: 'OUTPUT_INVALID', message: expect.stringContaining('EISDIR') });
    await expect(writeResultFile(path.join(dir, 'nope', 'f'), 'x', '--iidfile')).rejects.toMatchObject({ code: 'OUTPUT_INVALID' });
    expect((await fs.readdir(dir)).filter((n) => n.includes('tsbuild'))).toEqual([]);
  });
});
