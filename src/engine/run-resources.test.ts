import { describe, expect, it } from 'vitest';
import { TsbuildError } from '../errors.js';
import { checkRunSecurity, mergeUlimits, parseAllow, parseShmSize, parseUlimit, runResourcesKey } from './run-resources.js';

function usageError(fn: () => unknown): TsbuildError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(TsbuildError);
    return e as TsbuildError;
  }
  return expect.unreachable() as never;
}

describe('parseShmSize (go-units RAMInBytes, binary units)', () => {
  it.each([
    ['64m', 64 * 1024 ** 2],
    ['64M', 64 * 1024 ** 2],
    ['64MB', 64 * 1024 ** 2],
    ['64MiB', 64 * 1024 ** 2],
    ['1g', 1024 ** 3],
    ['1.5k', 1536],
    ['512 k', 512 * 1024],
    ['4096', 4096],
    ['100b', 100],
  ])('%s', (spec, want) => {
    expect(parseShmSize(spec)).toBe(want);
  });

  it('0 means not set, as buildx leaves the attribute out', () => {
    expect(parseShmSize('0')).toBeUndefined();
  });

  it.each(['', 'm', '-1m', '12q', '1mb2', '64 mbb', '1e3', '99999999999p'])('refuses %j with USAGE naming it', (spec) => {
    const e = usageError(() => parseShmSize(spec));
    expect(e.code).toBe('USAGE');
    expect(e.message).toContain(JSON.stringify(spec));
  });
});

describe('parseUlimit (go-units ParseUlimit)', () => {
  it.each([
    ['nofile=1024', { name: 'nofile', soft: 1024, hard: 1024 }],
    ['nofile=512:1024', { name: 'nofile', soft: 512, hard: 1024 }],
    ['core=0:-1', { name: 'core', soft: 0, hard: -1 }],
    ['core=-1', { name: 'core', soft: -1, hard: -1 }],
    ['stack=8388608:16777216', { name: 'stack', soft: 8388608, hard: 16777216 }],
  ])('%s', (spec, want) => {
    expect(parseUlimit(spec)).toEqual(want);
  });

  it.each([
    ['nofile', 'no "="'],
    ['as=10', 'unknown limit "as"'],
    ['NOFILE=10', 'unknown limit'],
    ['nofile=1:2:3', 'more than two'],
    ['nofile=x', 'not an integer'],
    ['nofile=', 'not an integer'],
    ['nofile=-2', 'out of range'],
    ['nofile=10:5', 'above the hard limit'],
    ['nofile=-1:5', 'above the hard limit'],
  ])('refuses %j', (spec, why) => {
    const e = usageError(() => parseUlimit(spec));
    expect(e.code).toBe('USAGE');
    expect(e.message).toContain(JSON.stringify(spec));
    expect(e.message).toContain(why);
  });

  it('keeps the last limit of a name, sorted by name', () => {
    expect(mergeUlimits(['nproc=5', 'nofile=1', 'nofile=2'].map(parseUlimit))).toEqual([
      { name: 'nofile', soft: 2, hard: 2 },
      { name: 'nproc', soft: 5, hard: 5 },
    ]);
  });
});

describe('entitlements and keys', () => {
  const at = { file: 'Dockerfile', startLine: 3, endLine: 3 };
  it('refuses RUN --security=insecure without --allow security.insecure, at the RUN', () => {
    const e = usageError(() => checkRunSecurity('insecure', parseAllow(['network.host']), at));
    expect(e.message).toBe('security.insecure is not allowed');
    expect(e.location).toEqual(at);
    expect(checkRunSecurity('insecure', parseAllow(['network.host,security.insecure']), at)).toBe('insecure');
    expect(checkRunSecurity(undefined, undefined, at)).toBe('sandbox');
  });

  it('refuses an unknown entitlement', () => {
    expect(usageError(() => parseAllow(['security.insecure', 'root'])).code).toBe('USAGE');
  });

  it('keys only what is set, so a build without the flags keeps its keys', () => {
    expect(runResourcesKey(undefined)).toEqual([]);
    expect(runResourcesKey({ allow: parseAllow(['security.insecure']) })).toEqual([]);
    expect(runResourcesKey({ shmSize: 1024, ulimits: [parseUlimit('nofile=1:2')] })).toEqual(['shm-size:1024', 'ulimits:nofile=1:2']);
  });
});
