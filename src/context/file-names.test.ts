import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { printableName, readDirectoryNames } from './file-names.js';

let dir: string;
beforeAll(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'tsb-names-'));
});
afterAll(() => fs.rm(dir, { recursive: true, force: true }));

describe('readDirectoryNames', () => {
  it('keeps valid UTF-8 names as strings and the others apart, as bytes', async () => {
    await fs.writeFile(path.join(dir, 'plain.txt'), '');
    await fs.writeFile(path.join(dir, 'héllo-✓.txt'), '');
    const latin1 = Buffer.from([0x62, 0x61, 0x64, 0xff, 0x2e, 0x74]); // "bad\xff.t"
    const overlong = Buffer.from([0x6f, 0xc0, 0xaf]); // an overlong "/": invalid UTF-8
    await fs.writeFile(Buffer.concat([Buffer.from(`${dir}/`), latin1]), '');
    await fs.writeFile(Buffer.concat([Buffer.from(`${dir}/`), overlong]), '');
    const r = await readDirectoryNames(dir);
    expect(r.names.sort()).toEqual(['héllo-✓.txt', 'plain.txt']);
    expect(r.invalid.map((i) => i.raw.toString('hex')).sort()).toEqual([latin1.toString('hex'), overlong.toString('hex')].sort());
    // The lossy form matches what string readdir shows; it names no file.
    const bad = r.invalid.find((i) => i.raw.equals(latin1))!;
    expect(bad.lossy).toBe('bad\uFFFD.t');
    await expect(fs.lstat(path.join(dir, bad.lossy))).rejects.toMatchObject({ code: 'ENOENT' });
  });
});

describe('printableName', () => {
  it('shows printable ASCII as it is and every other byte as \\xNN', () => {
    expect(printableName(Buffer.from([0x61, 0xff, 0x5c, 0x0a, 0x7a]))).toBe('a\\xff\\x5c\\x0az');
  });
});
