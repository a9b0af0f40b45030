import { describe, expect, it } from 'vitest';
import { TsbuildError } from '../errors.js';
import { OCI_IMAGE_INDEX, OCI_IMAGE_MANIFEST } from './media-types.js';
import {
  choosePlatform,
  defaultTargetPlatform,
  formatPlatform,
  hostPlatform,
  normalizePlatform,
  parsePlatform,
  platformMatches,
  platformVector,
} from './platform.js';
import type { Descriptor, ImageIndex, Platform } from './types.js';
import { parseDigest } from './digest.js';

const p = (os: string, architecture: string, variant?: string): Platform =>
  variant === undefined ? { os, architecture } : { os, architecture, variant };

describe('parsePlatform (containerd platforms.Parse)', () => {
  it.each<[string, Platform]>([
    ['linux/amd64', p('linux', 'amd64')],
    ['linux/arm64', p('linux', 'arm64')],
    ['linux/arm64/v8', p('linux', 'arm64', 'v8')],
    ['linux/aarch64', p('linux', 'arm64')],
    ['linux/aarch64/8', p('linux', 'arm64', 'v8')],
    ['linux/arm64/v9.2', p('linux', 'arm64', 'v9.2')],
    ['linux/arm', p('linux', 'arm')],
    ['linux/arm/v7', p('linux', 'arm', 'v7')],
    ['linux/arm/7', p('linux', 'arm', 'v7')],
    ['linux/arm/v6', p('linux', 'arm', 'v6')],
    ['linux/armhf', p('linux', 'arm')],
    ['linux/armel', p('linux', 'arm', 'v6')],
    ['linux/x86_64', p('linux', 'amd64')],
    ['linux/x86-64', p('linux', 'amd64')],
    ['linux/amd64/v1', p('linux', 'amd64')],
    ['linux/amd64/v3', p('linux', 'amd64', 'v3')],
    ['linux/i386', p('linux', '386')],
    ['linux/ppc64le', p('linux', 'ppc64le')],
    ['linux/s390x', p('linux', 's390x')],
    ['linux/riscv64', p('linux', 'riscv64')],
    ['LINUX/AMD64', p('linux', 'amd64')],
    ['macos/arm64', p('darwin', 'arm64')],
    ['windows(10.0.17763)/amd64', { os: 'windows', architecture: 'amd64', 'os.version': '10.0.17763' }],
    [
      'windows(10.0.17763+win32k)/amd64',
      { os: 'windows', architecture: 'amd64', 'os.version': '10.0.17763', 'os.features': ['win32k'] },
    ],
    ['windows(10.0%2B1)/amd64', { os: 'windows', architecture: 'amd64', 'os.version': '10.0+1' }],
  ])('%s', (s, want) => {
    expect(parsePlatform(s)).toEqual(want);
  });

  it('fills in the host for a lone OS or a lone architecture', () => {
    const host = hostPlatform();
    expect(parsePlatform('linux')).toEqual({ ...p('linux', host.architecture), ...(host.variant !== undefined && host.variant !== 'v7' ? { variant: host.variant } : {}) });
    expect(parsePlatform('arm64')).toEqual(p(host.os, 'arm64'));
    expect(parsePlatform('armhf')).toEqual(p(host.os, 'arm'));
    expect(parsePlatform('armel')).toEqual(p(host.os, 'arm', 'v6'));
  });

  it.each(['', 'linux/*', 'linux/arm64/v8/x', 'linux/am d64', 'linux/', 'linux//v7', 'nosuchthing', '/amd64', 'linux(/amd64'])(
    'refuses %j with PLATFORM_INVALID',
    (s) => {
      let err: unknown;
      try {
        parsePlatform(s);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(TsbuildError);
      expect((err as TsbuildError).code).toBe('PLATFORM_INVALID');
      expect((err as TsbuildError).message).toContain(`invalid platform ${JSON.stringify(s)}`);
    },
  );
});

describe('formatPlatform', () => {
  it.each<[Platform, string]>([
    [p('linux', 'amd64'), 'linux/amd64'],
    [p('linux', 'arm64', 'v8'), 'linux/arm64/v8'],
    [p('linux', 'arm', 'v7'), 'linux/arm/v7'],
    [{ os: 'windows', architecture: 'amd64', 'os.version': '10.0.17763' }, 'windows/amd64'],
    [p('', 'amd64'), 'unknown'],
  ])('%j -> %s', (platform, s) => {
    expect(formatPlatform(platform)).toBe(s);
  });

  it.each(['linux/amd64', 'linux/arm64/v8', 'linux/arm/v6', 'linux/s390x'])('round-trips %s', (s) => {
    expect(formatPlatform(parsePlatform(s))).toBe(s);
  });
});

describe('normalizePlatform (containerd Normalize)', () => {
  it.each<[Platform, Platform]>([
    [p('linux', 'arm64', 'v8'), p('linux', 'arm64')],
    [p('linux', 'aarch64'), p('linux', 'arm64')],
    [p('linux', 'arm'), p('linux', 'arm', 'v7')],
    [p('linux', 'arm', '6'), p('linux', 'arm', 'v6')],
    [p('linux', 'amd64', 'v1'), p('linux', 'amd64')],
    [p('linux', 'amd64', 'v2'), p('linux', 'amd64', 'v2')],
    [p('Linux', 'X86_64'), p('linux', 'amd64')],
    [p('linux', 'i386', 'whatever'), p('linux', '386')],
    [
      { os: 'windows', architecture: 'amd64', 'os.version': '10.0.1', 'os.features': ['b', 'a', 'b'] },
      { os: 'windows', architecture: 'amd64', 'os.version': '10.0.1', 'os.features': ['a', 'b'] },
    ],
  ])('%j', (input, want) => {
    expect(normalizePlatform(input)).toEqual(want);
  });
});

describe('platformMatches (containerd NewMatcher)', () => {
  it.each<[string, Platform, Platform, boolean]>([
    ['arm64 = arm64/v8', p('linux', 'arm64'), p('linux', 'arm64', 'v8'), true],
    ['arm64/v8 = arm64', p('linux', 'arm64', 'v8'), p('linux', 'arm64'), true],
    ['aarch64 = arm64', p('linux', 'aarch64'), p('linux', 'arm64'), true],
    ['arm = arm/v7', p('linux', 'arm'), p('linux', 'arm', 'v7'), true],
    ['arm/v7 != arm/v6', p('linux', 'arm', 'v7'), p('linux', 'arm', 'v6'), false],
    ['amd64 != 386 (exact)', p('linux', 'amd64'), p('linux', '386'), false],
    ['amd64 = x86_64', p('linux', 'amd64'), p('linux', 'x86_64'), true],
    ['amd64 != amd64/v2', p('linux', 'amd64'), p('linux', 'amd64', 'v2'), false],
    ['linux != windows', p('linux', 'amd64'), p('windows', 'amd64'), false],
    ['arm64 != arm64/v9', p('linux', 'arm64'), p('linux', 'arm64', 'v9'), false],
    ['unknown/unknown never matches', p('linux', 'amd64'), p('unknown', 'unknown'), false],
  ])('%s', (_name, want, have, result) => {
    expect(platformMatches(want, have)).toBe(result);
  });

  it("requires have's os.features to be a subset of want's", () => {
    const want: Platform = { os: 'windows', architecture: 'amd64', 'os.features': ['win32k', 'x'] };
    expect(platformMatches(want, { os: 'windows', architecture: 'amd64' })).toBe(true);
    expect(platformMatches(want, { os: 'windows', architecture: 'amd64', 'os.features': ['win32k'] })).toBe(true);
    expect(platformMatches({ os: 'windows', architecture: 'amd64' }, { os: 'windows', architecture: 'amd64', 'os.features': ['win32k'] })).toBe(false);
  });
});

describe('platformVector (containerd compare.go)', () => {
  const fmt = (ps: Platform[]): string[] => ps.map(formatPlatform);
  it.each<[Platform, string[]]>([
    [p('linux', 'amd64'), ['linux/amd64', 'linux/386']],
    [p('linux', 'amd64', 'v3'), ['linux/amd64/v3', 'linux/amd64/v2', 'linux/amd64/v1', 'linux/386']],
    [p('linux', 'arm', 'v7'), ['linux/arm/v7', 'linux/arm/v6', 'linux/arm/v5']],
    [p('linux', 'arm', 'v5'), ['linux/arm/v5']],
    [p('linux', 'arm64'), ['linux/arm64', 'linux/arm/v8', 'linux/arm/v7', 'linux/arm/v6', 'linux/arm/v5']],
    [
      p('linux', 'arm64', 'v8.2'),
      ['linux/arm64/v8.2', 'linux/arm64/v8.1', 'linux/arm64/v8', 'linux/arm/v8', 'linux/arm/v7', 'linux/arm/v6', 'linux/arm/v5'],
    ],
    [
      p('linux', 'arm64', 'v9.1'),
      [
        'linux/arm64/v9.1', 'linux/arm64/v9', 'linux/arm64/v8.6', 'linux/arm64/v8.5', 'linux/arm64/v8.4', 'linux/arm64/v8.3',
        'linux/arm64/v8.2', 'linux/arm64/v8.1', 'linux/arm64/v8', 'linux/arm/v8', 'linux/arm/v7', 'linux/arm/v6', 'linux/arm/v5',
      ],
    ],
    [p('linux', 's390x'), ['linux/s390x']],
  ])('%j', (platform, want) => {
    expect(fmt(platformVector(platform))).toEqual(want);
  });
});

describe('choosePlatform', () => {
  let n = 0;
  const m = (platform?: Platform, mediaType = OCI_IMAGE_MANIFEST): Descriptor => ({
    mediaType,
    digest: parseDigest(`sha256:${(++n).toString(16).padStart(64, '0')}`),
    size: 100,
    ...(platform !== undefined ? { platform } : {}),
  });
  const index = (...manifests: Descriptor[]): ImageIndex => ({ schemaVersion: 2, mediaType: OCI_IMAGE_INDEX, manifests });

  const amd64 = m(p('linux', 'amd64'));
  const arm64v8 = m(p('linux', 'arm64', 'v8'));
  const armv6 = m(p('linux', 'arm', 'v6'));
  const armv7 = m(p('linux', 'arm', 'v7'));
  const i386 = m(p('linux', '386'));
  const attestation = m(p('unknown', 'unknown'));
  const noPlatform = m();
  const nested = m(p('linux', 'amd64'), OCI_IMAGE_INDEX);
  const win = m({ os: 'windows', architecture: 'amd64', 'os.version': '10.0.17763.1' });

  const all = index(noPlatform, nested, attestation, win, i386, armv6, armv7, arm64v8, amd64);

  it.each<[string, Platform, Descriptor | undefined]>([
    ['amd64', p('linux', 'amd64'), amd64],
    ['arm64 finds arm64/v8', p('linux', 'arm64'), arm64v8],
    ['arm64/v8 finds arm64/v8', p('linux', 'arm64', 'v8'), arm64v8],
    ['arm/v7 exact over v6 listed first', p('linux', 'arm', 'v7'), armv7],
    ['arm finds arm/v7', p('linux', 'arm'), armv7],
    ['386', p('linux', '386'), i386],
    ['windows', p('windows', 'amd64'), win],
    ['riscv64: none', p('linux', 'riscv64'), undefined],
  ])('%s', (_name, want, expected) => {
    expect(choosePlatform(all, want)).toBe(expected);
  });

  it('falls back to a compatible older platform unless strict', () => {
    const legacy = index(armv6, i386, attestation);
    expect(choosePlatform(legacy, p('linux', 'arm', 'v7'))).toBe(armv6);
    expect(choosePlatform(legacy, p('linux', 'arm', 'v7'), { strict: true })).toBeUndefined();
    expect(choosePlatform(legacy, p('linux', 'amd64'))).toBe(i386);
    expect(choosePlatform(legacy, p('linux', 'amd64'), { strict: true })).toBeUndefined();
    expect(choosePlatform(legacy, p('linux', 'arm64'))).toBe(armv6);
  });

  it('takes the first of equal matches in index order', () => {
    const first = m(p('linux', 'arm64'));
    const second = m(p('linux', 'arm64', 'v8'));
    expect(choosePlatform(index(first, second), p('linux', 'arm64'))).toBe(first);
  });

  it('skips entries without a platform and nested indexes', () => {
    expect(choosePlatform(index(noPlatform, nested), p('linux', 'amd64'))).toBeUndefined();
  });
});

describe('hostPlatform', () => {
  it('maps the Node process to OCI names', () => {
    const host = hostPlatform();
    if (process.platform === 'linux') expect(host.os).toBe('linux');
    if (process.arch === 'x64') expect(host).toEqual(p(process.platform === 'win32' ? 'windows' : process.platform, 'amd64'));
    if (process.arch === 'arm64') expect(host.variant).toBeUndefined();
    // Always a normalised platform that parses back to itself.
    expect(normalizePlatform(host)).toEqual(host);
    expect(platformMatches(parsePlatform(formatPlatform(host)), host)).toBe(true);
  });

  it('defaultTargetPlatform is Linux on the host CPU', () => {
    expect(defaultTargetPlatform()).toEqual({ ...hostPlatform(), os: 'linux' });
  });
});
