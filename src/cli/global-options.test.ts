import { describe, expect, it } from 'vitest';
import { resolveRoot } from './global-options.js';

describe('resolveRoot: where the store lives', () => {
  const io = (env: NodeJS.ProcessEnv) => ({ env, cwd: '/work/here' });

  it('--root first, relative to the working directory', () => {
    expect(resolveRoot('store', io({ TSBUILD_ROOT: '/env', XDG_DATA_HOME: '/xdg', HOME: '/home/u' }))).toBe('/work/here/store');
    expect(resolveRoot('/abs', io({ TSBUILD_ROOT: '/env' }))).toBe('/abs');
  });

  it('then $TSBUILD_ROOT, then $XDG_DATA_HOME/tsbuild, then ~/.local/share/tsbuild', () => {
    expect(resolveRoot(undefined, io({ TSBUILD_ROOT: 'rel', XDG_DATA_HOME: '/xdg', HOME: '/home/u' }))).toBe('/work/here/rel');
    expect(resolveRoot(undefined, io({ XDG_DATA_HOME: '/xdg', HOME: '/home/u' }))).toBe('/xdg/tsbuild');
    expect(resolveRoot(undefined, io({ HOME: '/home/u' }))).toBe('/home/u/.local/share/tsbuild');
  });

  it('empty values count as unset', () => {
    expect(resolveRoot('', io({ TSBUILD_ROOT: '', XDG_DATA_HOME: '/xdg' }))).toBe('/xdg/tsbuild');
  });
});
