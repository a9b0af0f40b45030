import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fsPath, hasByteEscapes, nameBytes, nameFromBytes, printableName } from '../oci/index.js';
import { readDirectoryNames } from './file-names.js';

let dir: string;
beforeAll(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'tsb-names-'));
});
afterAll(() => fs.rm(dir, { recursive: true, force: true }));

describe('readDirectoryNames', () => {
  it('keeps valid UTF-8 names as strings and every other name as its bytes, escaped', async () => {
    await fs.writeFile(path.join(dir, 'plain.txt'), '');
    await fs.writeFile(path.join(dir, 'héllo-✓-😀.txt'), '');
    const latin1 = Buffer.from([0x62, 0x61, 0x64, 0xff, 0x2e, 0x74]); // "bad\xff.t"
    const overlong = Buffer.from([0x6f, 0xc0, 0xaf]); // an overlong "/": invalid UTF-8
    const surrogate = Buffer.from([0x73, 0xed, 0xb3, 0xbf]); // the UTF-8 form of U+DCFF: invalid
    for (const raw of [latin1, overlong, surrogate]) await fs.writeFile(Buffer.concat([Buffer.from(`${dir}/`), raw]), raw);
    const names = await readDirectoryNames(dir);
    expect(names.filter((n) => !hasByteEscapes(n)).sort()).toEqual(['héllo-✓-😀.txt', 'plain.txt']);
    expect(names.filter(hasByteEscapes).map((n) => nameBytes(n).toString('hex')).sort()).toEqual([latin1, overlong, surrogate].map((b) => b.toString('hex')).sort());
    // The escaped name opens the file it names.
    const bad = names.find((n) => nameBytes(n).equals(latin1))!;
    expect(bad).toBe('bad\uDCFF.t');
    expect(await fs.readFile(fsPath(path.join(dir, bad)))).toEqual(latin1);
  });
});

describe('byte names', () => {
  it('round-trip every byte string and leave valid names alone', () => {
    const cases = [[0x61, 0xff], [0xc3], [0xc3, 0x28], [0xe2, 0x82], [0xf0, 0x9f, 0x98], [0xf4, 0x90, 0x80, 0x80], [0xed, 0xa0, 0x80], [0xc3, 0xa9, 0xfe, 0xe2, 0x9c, 0x93], [0xef, 0xbf, 0xbd]];
    for (const c of cases) {
      const raw = Buffer.from(c);
      expect(nameBytes(nameFromBytes(raw))).toEqual(raw);
    }
    expect(nameFromBytes(Buffer.from('é✓😀\uFFFD', 'utf8'))).toBe('é✓😀\uFFFD');
    expect(nameFromBytes(Buffer.from([0xc3, 0xa9, 0xfe]))).toBe('é\uDCFE');
    // Two names that differ only in a bad byte stay two names.
    expect(nameFromBytes(Buffer.from([0xfe]))).not.toBe(nameFromBytes(Buffer.from([0xff])));
    expect(fsPath('/a/é😀')).toBe('/a/é😀');
  });
});

describe('printableName', () => {
  it('shows printable ASCII as it is and every other byte as \\xNN', () => {
    expect(printableName(Buffer.from([0x61, 0xff, 0x5c, 0x0a, 0x7a]))).toBe('a\\xff\\x5c\\x0az');
    expect(printableName('a\uDCFFb')).toBe('a\\xffb');
  });
});
