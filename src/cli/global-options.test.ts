import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { Logger } from 'pino';
import { lazyLogger, resolveRoot } from './global-options.js';

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

describe('lazyLogger: the real logger (pino) is made on the first line at an enabled level', () => {
  function recorder(): { made: number; lines: string[]; create: () => Logger } {
    const r = { made: 0, lines: [] as string[], create: (): Logger => undefined as unknown as Logger };
    r.create = () => {
      r.made++;
      const line =
        (level: string) =>
        (obj: unknown, msg?: string): void => {
          r.lines.push(`${level} ${msg ?? String(obj)}`);
        };
      return { level: 'warn', debug: line('debug'), info: line('info'), warn: line('warn'), error: line('error'), flush: () => r.lines.push('flush') } as unknown as Logger;
    };
    return r;
  }

  it('drops lines below the level without making the logger', () => {
    const r = recorder();
    const log = lazyLogger('warn', r.create);
    log.debug({ registry: 'x' }, 'registry request');
    log.info('retrying');
    expect(log.level).toBe('warn');
    expect(log.isLevelEnabled('debug')).toBe(false);
    expect(log.isLevelEnabled('error')).toBe(true);
    expect(r.made).toBe(0);
  });

  it('makes it once for a line at or above the level, and forwards to it', () => {
    const r = recorder();
    const log = lazyLogger('info', r.create);
    log.debug('dropped');
    log.info({}, 'kept');
    log.warn({}, 'also kept');
    log.flush();
    expect(r.made).toBe(1);
    expect(r.lines).toEqual(['info kept', 'warn also kept', 'flush']);
  });

  it('silent drops every line', () => {
    const r = recorder();
    const log = lazyLogger('silent', r.create);
    log.error('x');
    log.fatal('y');
    expect(r.made).toBe(0);
  });
});
