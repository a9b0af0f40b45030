import { execFileSync } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseChmodSpec, SymbolicMode } from './chmod-mode.js';

// The symbolic modes are checked against GNU chmod(1) on real files with a umask of 0 (BuildKit
// parses --chmod with umask 0), for files of several modes and for directories.
let dir: string;
beforeAll(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'tsbuild-chmod-'));
});
afterAll(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

// Where GNU and BSD agree. Where they differ, BuildKit's BSD port decides (table below).
const SPECS = ['u+x', 'go-w', 'u+x,go-w', '+X', 'g+u', 'o-g', 'u-g', 'u=rwx,go=rx', 'o=', '=r', 'a+rw,o-w', 'ug+s', '+t', 'g+w-r', 'u+r,u-x', 'a+X'];
const FILE_MODES = [0o644, 0o755, 0o600, 0o4755, 0o000, 0o750, 0o2711];

function gnuChmod(spec: string, initial: number, isDir: boolean, name: string): number {
  const p = path.join(dir, name);
  execFileSync('sh', ['-c', `umask 0; rm -rf "$1"; if [ "$2" = dir ]; then mkdir "$1"; else : > "$1"; fi; chmod "$3" "$1"; chmod -- "$4" "$1"; stat -c %a "$1"`, 'sh', p, isDir ? 'dir' : 'file', initial.toString(8), spec]);
  return parseInt(execFileSync('stat', ['-c', '%a', p]).toString().trim(), 8);
}

describe('symbolic --chmod', () => {
  for (const spec of SPECS) {
    it(`${spec} as GNU chmod on files and directories`, () => {
      const m = parseChmodSpec(spec);
      expect(m).toBeInstanceOf(SymbolicMode);
      for (const initial of FILE_MODES) {
        expect([initial.toString(8), (m as SymbolicMode).apply(initial, false).toString(8)]).toEqual([initial.toString(8), gnuChmod(spec, initial, false, 'f').toString(8)]);
      }
      // GNU chmod keeps a directory's set-id bits that BSD's setmode would clear: directories
      // without them only.
      for (const initial of [0o755, 0o700, 0o644]) {
        expect([initial.toString(8), (m as SymbolicMode).apply(initial, true).toString(8)]).toEqual([initial.toString(8), gnuChmod(spec, initial, true, 'd').toString(8)]);
      }
    });
  }

  // BSD setmode (what BuildKit runs) where GNU chmod differs: X only with '+' and judged on the
  // original mode; `=` straight into a copy keeps set-id bits; `t` for others alone is ignored.
  it.each([
    ['a=rX', 0o755, false, 0o444],
    ['a-x+X', 0o755, false, 0o755],
    ['a-x+X', 0o644, false, 0o644],
    ['g=u-w', 0o2711, false, 0o2751],
    ['go=u', 0o2711, false, 0o2777],
    ['o+t', 0o644, true, 0o644],
  ])('%s on %o (dir: %s) gives %o as BSD setmode', (spec, initial, isDir, want) => {
    expect((parseChmodSpec(spec) as SymbolicMode).apply(initial, isDir)).toBe(want);
  });

  it.each([
    ['755', 0o755],
    ['0644', 0o644],
    ['7', 0o7],
    ['04755', 0o4755],
  ])('octal %s', (s, want) => {
    expect(parseChmodSpec(s)).toBe(want);
  });

  it.each(['', '0789', '9', '17777', 'u', 'ux', 'q+r', 'u+x,', ',', 'u+x,z'])('refuses %j', (s) => {
    expect(() => parseChmodSpec(s)).toThrow();
  });
});
