import { describe, expect, it } from 'vitest';
import { TsbuildError } from '../errors.js';
import {
  familiarName,
  formatReference,
  isLoopbackRegistry,
  normalizeRegistry,
  parseReference,
  registryApiHost,
  repositoryName,
  withDefaultTag,
  type Reference,
} from './reference.js';
import { parseDigest } from './digest.js';

// Cases ported from github.com/distribution/reference normalize_test.go and reference_test.go.
// Upstream's Parse (no normalisation) cases are ported through ParseNormalizedNamed semantics:
// names without a registry land on docker.io.

const F64 = 'f'.repeat(64);
const F64_DIGEST = parseDigest(`sha256:${F64}`);
const F128 = 'f'.repeat(128);
const HEX64 = '1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a';

function invalidReason(s: string): string {
  try {
    parseReference(s);
  } catch (e) {
    expect(e).toBeInstanceOf(TsbuildError);
    const err = e as TsbuildError;
    expect(err.code).toBe('REFERENCE_INVALID');
    expect(err.message.startsWith(`invalid reference ${JSON.stringify(s)}: `)).toBe(true);
    return err.message;
  }
  throw new Error(`expected ${JSON.stringify(s)} to be rejected`);
}

describe('parseReference: valid names (normalize_test.go TestValidateReferenceName)', () => {
  it.each([
    'docker/docker',
    'library/debian',
    'debian',
    'docker.io/docker/docker',
    'docker.io/library/debian',
    'docker.io/debian',
    'index.docker.io/docker/docker',
    'index.docker.io/library/debian',
    'index.docker.io/debian',
    '127.0.0.1:5000/docker/docker',
    '127.0.0.1:5000/library/debian',
    '127.0.0.1:5000/debian',
    '192.168.0.1',
    '192.168.0.1:80',
    '192.168.0.1:8/debian',
    '192.168.0.2:25000/debian',
    'thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev',
    '[fc00::1]:5000/docker',
    '[fc00::1]:5000/docker/docker',
    '[fc00:1:2:3:4:5:6:7]:5000/library/debian',
    `docker.io/${HEX64}`,
    'Docker/docker',
    'DOCKER/docker',
    // TestValidateRemoteName
    'docker-rules/docker',
    'docker---rules/docker',
    'doc/docker',
    'd/docker',
    'jess/t',
    'dock__er/docker',
  ])('%s', (s) => {
    expect(() => parseReference(s)).not.toThrow();
  });
});

describe('parseReference: invalid names (TestValidateReferenceName, TestValidateRemoteName)', () => {
  it.each([
    'https://github.com/docker/docker',
    'docker/Docker',
    '-docker',
    '-docker/docker',
    '-docker.io/docker/docker',
    'docker///docker',
    'docker.io/docker/Docker',
    'docker.io/docker///docker',
    '[fc00::1]',
    '[fc00::1]:5000',
    'fc00::1:5000/debian',
    '[fe80::1%eth0]:5000/debian',
    '[2001:db8:3:4::192.0.2.33]:5000/debian',
    HEX64,
    'docker-/docker',
    '-docker-/docker',
    '____/____',
    '_docker/_docker',
    'dock..er/docker',
    'dock_.er/docker',
    'dock-.er/docker',
    'docker/',
    `${'this_is_not_a_valid_namespace_because_its_lenth_is_greater_than_255_'.repeat(4)}/docker`,
    // reference_test.go TestReferenceParse error cases
    '',
    ':justtag',
    '@sha256:' + F64,
    'repo@sha256:' + 'f'.repeat(34),
    'validname@invaliddigest:' + F64,
    'Uppercase:tag',
    'test:5000/Uppercase/lowercase:tag',
    'domain/' + 'a'.repeat(256) + ':tag',
    'aa/asdf$$^/aa',
    '[2001:db8::1]',
    '[2001:db8::1]:5000',
    '[2001:db8::1]:tag',
    '[fe80::1%eth0]:5000/repo',
    '[fe80::1%@invalidzone]:5000/repo',
  ])('%j', (s) => {
    invalidReason(s);
  });
});

describe('parseReference: components (TestReferenceParse, TestParseRepositoryInfo, TestNormalizedSplitHostname)', () => {
  const cases: Array<[string, Reference]> = [
    ['busybox', { registry: 'docker.io', repository: 'library/busybox' }],
    ['test_com', { registry: 'docker.io', repository: 'library/test_com' }],
    ['test.com:tag', { registry: 'docker.io', repository: 'library/test.com', tag: 'tag' }],
    ['test.com:5000', { registry: 'docker.io', repository: 'library/test.com', tag: '5000' }],
    ['test.com/repo:tag', { registry: 'test.com', repository: 'repo', tag: 'tag' }],
    ['test:5000/repo', { registry: 'test:5000', repository: 'repo' }],
    ['test:5000/repo:tag', { registry: 'test:5000', repository: 'repo', tag: 'tag' }],
    ['test:5000/repo@sha256:' + F64, { registry: 'test:5000', repository: 'repo', digest: F64_DIGEST }],
    [
      'test:5000/repo:tag@sha256:' + F64,
      { registry: 'test:5000', repository: 'repo', tag: 'tag', digest: F64_DIGEST },
    ],
    ['lowercase:Uppercase', { registry: 'docker.io', repository: 'library/lowercase', tag: 'Uppercase' }],
    [
      'a/'.repeat(127) + 'a:tag-puts-this-over-max',
      { registry: 'docker.io', repository: 'a/'.repeat(127) + 'a', tag: 'tag-puts-this-over-max' },
    ],
    ['sub-dom1.foo.com/bar/baz/quux', { registry: 'sub-dom1.foo.com', repository: 'bar/baz/quux' }],
    [
      'sub-dom1.foo.com/bar/baz/quux:some-long-tag',
      { registry: 'sub-dom1.foo.com', repository: 'bar/baz/quux', tag: 'some-long-tag' },
    ],
    [
      'b.gcr.io/test.example.com/my-app:test.example.com',
      { registry: 'b.gcr.io', repository: 'test.example.com/my-app', tag: 'test.example.com' },
    ],
    ['xn--n3h.com/myimage:xn--n3h.com', { registry: 'xn--n3h.com', repository: 'myimage', tag: 'xn--n3h.com' }],
    [
      `xn--7o8h.com/myimage:xn--7o8h.com@sha512:${F128}`,
      { registry: 'xn--7o8h.com', repository: 'myimage', tag: 'xn--7o8h.com', digest: parseDigest(`sha512:${F128}`) },
    ],
    ['foo_bar.com:8080', { registry: 'docker.io', repository: 'library/foo_bar.com', tag: '8080' }],
    ['foo/foo_bar.com:8080', { registry: 'docker.io', repository: 'foo/foo_bar.com', tag: '8080' }],
    ['192.168.1.1', { registry: 'docker.io', repository: 'library/192.168.1.1' }],
    ['192.168.1.1:tag', { registry: 'docker.io', repository: 'library/192.168.1.1', tag: 'tag' }],
    ['192.168.1.1:5000', { registry: 'docker.io', repository: 'library/192.168.1.1', tag: '5000' }],
    ['192.168.1.1/repo', { registry: '192.168.1.1', repository: 'repo' }],
    ['192.168.1.1:5000/repo', { registry: '192.168.1.1:5000', repository: 'repo' }],
    ['192.168.1.1:5000/repo:5050', { registry: '192.168.1.1:5000', repository: 'repo', tag: '5050' }],
    ['[2001:db8::1]/repo', { registry: '[2001:db8::1]', repository: 'repo' }],
    ['[2001:db8:1:2:3:4:5:6]/repo:tag', { registry: '[2001:db8:1:2:3:4:5:6]', repository: 'repo', tag: 'tag' }],
    ['[2001:db8::1]:5000/repo', { registry: '[2001:db8::1]:5000', repository: 'repo' }],
    ['[2001:db8::1]:5000/repo:tag', { registry: '[2001:db8::1]:5000', repository: 'repo', tag: 'tag' }],
    [
      '[2001:db8::1]:5000/repo@sha256:' + F64,
      { registry: '[2001:db8::1]:5000', repository: 'repo', digest: F64_DIGEST },
    ],
    ['[2001:db8::]:5000/repo', { registry: '[2001:db8::]:5000', repository: 'repo' }],
    ['[::1]:5000/repo', { registry: '[::1]:5000', repository: 'repo' }],
    [
      'example.com/' + 'a'.repeat(255) + ':tag',
      { registry: 'example.com', repository: 'a'.repeat(255), tag: 'tag' },
    ],
    // normalize_test.go TestParseRepositoryInfo / TestNormalizedSplitHostname
    ['fooo/bar', { registry: 'docker.io', repository: 'fooo/bar' }],
    ['index.docker.io/fooo/bar', { registry: 'docker.io', repository: 'fooo/bar' }],
    ['library/ubuntu', { registry: 'docker.io', repository: 'library/ubuntu' }],
    ['docker.io/foo', { registry: 'docker.io', repository: 'library/foo' }],
    ['docker.io/library/foo/bar', { registry: 'docker.io', repository: 'library/foo/bar' }],
    ['127.0.0.1:8000/private/moonbase', { registry: '127.0.0.1:8000', repository: 'private/moonbase' }],
    ['example.com:8000/privatebasee', { registry: 'example.com:8000', repository: 'privatebasee' }],
    ['ubuntu-12.04-base', { registry: 'docker.io', repository: 'library/ubuntu-12.04-base' }],
    ['Foo/bar', { registry: 'Foo', repository: 'bar' }],
    ['FOO/bar', { registry: 'FOO', repository: 'bar' }],
    ['test_com/foo', { registry: 'docker.io', repository: 'test_com/foo' }],
    ['test-com:8080/foo', { registry: 'test-com:8080', repository: 'foo' }],
    ['xn--n3h.com:18080/foo', { registry: 'xn--n3h.com:18080', repository: 'foo' }],
    ['localhost/x', { registry: 'localhost', repository: 'x' }],
    ['localhost:5000/a/b:tag', { registry: 'localhost:5000', repository: 'a/b', tag: 'tag' }],
    // A bare "localhost" is a repository on Docker Hub (normalize.go FIXME).
    ['localhost', { registry: 'docker.io', repository: 'library/localhost' }],
    // ParseAnyReference cases that go through ParseNormalizedNamed
    [
      'dbcc1c35ac38df41fd2f5e4130b32ffdb93ebae8b3dbe638c23575912276fc9',
      { registry: 'docker.io', repository: 'library/dbcc1c35ac38df41fd2f5e4130b32ffdb93ebae8b3dbe638c23575912276fc9' },
    ],
    ['dbcc1', { registry: 'docker.io', repository: 'library/dbcc1' }],
  ];
  it.each(cases)('%s', (s, want) => {
    expect(parseReference(s)).toEqual(want);
  });
});

describe('parseReference: specific reasons', () => {
  it.each<[string, RegExp]>([
    ['', /empty reference/],
    ['Uppercase:tag', /repository name "library\/Uppercase" must be lowercase/],
    ['docker.io/docker/Docker', /must be lowercase/],
    ['busybox:-bad', /invalid tag "-bad"/],
    ['busybox:' + 't'.repeat(129), /invalid tag/],
    ['busybox@sha256:abc', /invalid digest "sha256:abc"/],
    ['repo@sha256:' + 'f'.repeat(34), /invalid sha256 digest length/],
    ['repo@sha256:' + 'F'.repeat(64), /lowercase/],
    ['validname@invaliddigest:' + F64, /unsupported digest algorithm "invaliddigest"/],
    ['repo@sha384:' + 'f'.repeat(96), /unsupported digest algorithm "sha384"/],
    ['domain/' + 'a'.repeat(256) + ':tag', /must not be more than 255 characters/],
    [HEX64, /64-byte hexadecimal/],
    ['docker///docker', /invalid repository name/],
    ['[fe80::1%eth0]:5000/repo', /invalid registry host/],
  ])('%j', (s, why) => {
    expect(invalidReason(s)).toMatch(why);
  });
});

describe('withDefaultTag', () => {
  it('adds latest to a bare name', () => {
    expect(withDefaultTag(parseReference('busybox'))).toEqual({
      registry: 'docker.io',
      repository: 'library/busybox',
      tag: 'latest',
    });
  });
  it('keeps an explicit tag, and adds nothing next to a digest', () => {
    expect(withDefaultTag(parseReference('busybox:1.36')).tag).toBe('1.36');
    const pinned = withDefaultTag(parseReference(`busybox@sha256:${F64}`));
    expect(pinned.tag).toBeUndefined();
    expect(pinned.digest).toBe(`sha256:${F64}`);
  });
});

describe('formatReference and familiarName', () => {
  it.each([
    // [input, fully qualified (after withDefaultTag), familiar]
    ['busybox', 'docker.io/library/busybox:latest', 'busybox:latest'],
    ['docker.io/library/busybox:latest', 'docker.io/library/busybox:latest', 'busybox:latest'],
    ['redis@sha256:' + F64, `docker.io/library/redis@sha256:${F64}`, `redis@sha256:${F64}`],
    [
      'busybox:latest@sha256:' + F64,
      `docker.io/library/busybox:latest@sha256:${F64}`,
      `busybox:latest@sha256:${F64}`,
    ],
    ['dmcgowan/myapp', 'docker.io/dmcgowan/myapp:latest', 'dmcgowan/myapp:latest'],
    ['library/foo/bar', 'docker.io/library/foo/bar:latest', 'library/foo/bar:latest'],
    ['other/library', 'docker.io/other/library:latest', 'other/library:latest'],
    ['127.0.0.1:8000/privatebase', '127.0.0.1:8000/privatebase:latest', '127.0.0.1:8000/privatebase:latest'],
    ['example.com/private/moonbase:v1', 'example.com/private/moonbase:v1', 'example.com/private/moonbase:v1'],
    ['Foo/bar', 'Foo/bar:latest', 'Foo/bar:latest'],
  ])('%s', (input, full, familiar) => {
    const ref = withDefaultTag(parseReference(input));
    expect(formatReference(ref)).toBe(full);
    expect(familiarName(ref)).toBe(familiar);
    // The formatted form parses back to the same reference.
    expect(parseReference(formatReference(ref))).toEqual(ref);
  });

  it('repositoryName leaves out tag and digest', () => {
    expect(repositoryName(parseReference('busybox:1@sha256:' + F64))).toBe('docker.io/library/busybox');
  });
});

describe('registry hosts', () => {
  it('normalises Docker Hub names and finds its API host', () => {
    expect(normalizeRegistry('index.docker.io')).toBe('docker.io');
    expect(normalizeRegistry('ghcr.io')).toBe('ghcr.io');
    expect(registryApiHost('docker.io')).toBe('registry-1.docker.io');
    expect(registryApiHost('index.docker.io')).toBe('registry-1.docker.io');
    expect(registryApiHost('localhost:5000')).toBe('localhost:5000');
    expect(registryApiHost(parseReference('quay.io/a/b').registry)).toBe('quay.io');
  });

  it.each([
    ['localhost', true],
    ['localhost:5000', true],
    ['LOCALHOST:5000', true],
    ['127.0.0.1', true],
    ['127.0.0.1:5000', true],
    ['127.1.2.3:80', true],
    ['127.255.255.255', true],
    ['[::1]', true],
    ['[::1]:5000', true],
    ['[0:0:0:0:0:0:0:1]:5000', true],
    ['::1', true],
    ['128.0.0.1', false],
    ['127.0.0.256', false],
    ['127.0.0', false],
    ['127.0.0.1.example.com', false],
    ['localhost.example.com', false],
    ['[::2]:5000', false],
    ['[fe80::1]', false],
    ['docker.io', false],
    ['10.0.0.1:5000', false],
  ])('isLoopbackRegistry(%j) = %s', (host, want) => {
    expect(isLoopbackRegistry(host)).toBe(want);
  });
});
