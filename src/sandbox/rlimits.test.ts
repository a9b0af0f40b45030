import { describe, expect, it } from 'vitest';
import { TsbuildError } from '../errors.js';
import { assertUlimitsAllowed, hostHardLimits, ociRlimits, prlimitArgs } from './rlimits.js';

// proc(5) /proc/PID/limits, as this kernel writes it.
const LIMITS = [
  'Limit                     Soft Limit           Hard Limit           Units     ',
  'Max cpu time              unlimited            unlimited            seconds   ',
  'Max core file size        0                    unlimited            bytes     ',
  'Max processes             96367                96367                processes ',
  'Max open files            1024                 20000                files     ',
  '',
].join('\n');

describe('rlimits', () => {
  it('reads the hard limits of /proc/self/limits', () => {
    const h = hostHardLimits(LIMITS);
    expect(h.get('nofile')).toBe(20000);
    expect(h.get('core')).toBe(-1);
    expect(h.get('nproc')).toBe(96367);
    // and the real file has every limit docker names
    expect(hostHardLimits().size).toBe(15);
  });

  it('refuses a limit above the hard limit, naming both, unless raising is possible', () => {
    let err: unknown;
    try {
      assertUlimitsAllowed([{ name: 'nofile', soft: 100, hard: 30000 }], { rootless: true, limitsText: LIMITS });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(TsbuildError);
    expect((err as TsbuildError).code).toBe('USAGE');
    expect((err as TsbuildError).message).toMatch(/nofile.*20000/);
    expect(() => assertUlimitsAllowed([{ name: 'nofile', soft: -1, hard: -1 }], { rootless: true, limitsText: LIMITS })).toThrow(/unlimited.*20000/);
    expect(() => assertUlimitsAllowed([{ name: 'nofile', soft: 100, hard: 20000 }, { name: 'core', soft: -1, hard: -1 }], { rootless: true, limitsText: LIMITS })).not.toThrow();
    expect(() => assertUlimitsAllowed([{ name: 'nofile', soft: 100, hard: 30000 }], { rootless: false, limitsText: LIMITS, canRaise: true })).not.toThrow();
  });

  it('writes prlimit options and OCI rlimits, -1 as unlimited', () => {
    const u = [{ name: 'nofile', soft: 10, hard: 20 }, { name: 'core', soft: -1, hard: -1 }] as const;
    expect(prlimitArgs(u)).toEqual(['--nofile=10:20', '--core=unlimited:unlimited']);
    expect(ociRlimits(u)).toEqual([
      { type: 'RLIMIT_NOFILE', soft: 10n, hard: 20n },
      { type: 'RLIMIT_CORE', soft: 18446744073709551615n, hard: 18446744073709551615n },
    ]);
  });
});
