import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { resolveRoot } from './global-options.js';

describe('resolveRoot (issue 3: --root, TSBUILD_ROOT, XDG_DATA_HOME, ~/.local/share)', () => {
  const cwd = '/work/here';
  it.each([
    ['--root wins over everything, relative to the cwd', 'store', { TSBUILD_ROOT: '/t', XDG_DATA_HOME: '/x', HOME: '/h' }, '/work/here/store'],
    ['then $TSBUILD_ROOT', undefined, { TSBUILD_ROOT: 'rel', XDG_DATA_HOME: '/x', HOME: '/h' }, '/work/here/rel'],
    ['then $XDG_DATA_HOME/tsbuild', undefined, { XDG_DATA_HOME: '/x', HOME: '/h' }, '/x/tsbuild'],
    ['then $HOME/.local/share/tsbuild', undefined, { HOME: '/h' }, '/h/.local/share/tsbuild'],
    ['empty variables count as unset', undefined, { TSBUILD_ROOT: '', XDG_DATA_HOME: '', HOME: '/h' }, '/h/.local/share/tsbuild'],
  ] as const)('%s', (_name, flag, env, want) => {
    expect(resolveRoot(flag, { cwd, env })).toBe(want);
  });

  it('falls back to the home directory of the user without $HOME', () => {
    expect(resolveRoot(undefined, { cwd, env: {} })).toBe(path.join(os.homedir(), '.local', 'share', 'tsbuild'));
  });
});
