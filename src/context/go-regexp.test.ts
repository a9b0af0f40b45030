import { describe, expect, it } from 'vitest';
import { BadPatternError, goClean, goDir, goFilepathMatch, goTrimSpace } from './go-path.js';
import { compileGoRegexp, GoRegexpError } from './go-regexp.js';

describe('compileGoRegexp keeps RE2 meaning', () => {
  const cases: ReadonlyArray<readonly [string, string, boolean]> = [
    ['^a\\ b$', 'a b', true], // escaped punctuation/space is itself (a JS `u` syntax error)
    ['^a.b$', 'a\nb', false], // `.` excludes only \n
    ['^a.b$', 'a\rb', true],
    ['^[[:alpha:]]+$', 'abc', true],
    ['^[[:^alpha:]]$', '1', true],
    ['^\\x41\\x{42}$', 'AB', true],
    ['^\\101$', 'A', true], // octal
    ['^\\s$', '\u00a0', false], // \s is ASCII in Go
    ['^[a\\S]$', 'a', true],
    ['^[a\\S]$', 'z', true],
    ['^[a\\S]$', ' ', false],
    ['^[^a\\S]$', ' ', true],
    ['^]$', ']', true], // a lone ] is literal
    ['^[]a]$', ']', true], // ] first in a class is literal
    ['^[[^/]*]$', '[^]', true], // what patternmatcher makes of `[*]`
    ['^(.*/)?b$', 'x/y/b', true],
    ['^\\pL$', 'é', true],
    ['^\\p{Greek}$', 'α', true],
    ['^\\Qa.b\\E$', 'a.b', true],
    ['^\\Qa.b\\E$', 'axb', false],
  ];
  it.each(cases)('%s on %j -> %s', (src, input, want) => {
    expect(compileGoRegexp(src).test(input)).toBe(want);
  });

  it.each(['^\\1$', '^\\q$', '^[z-a]$', '^[a$', '^(a$', '^a)$', '^a**$', '^[[:nope:]]$', '^\\'])('rejects %s', (src) => {
    expect(() => compileGoRegexp(src)).toThrow(GoRegexpError);
  });
});

describe('Go path helpers', () => {
  it.each([
    ['', '.'],
    ['a//b/./c/', 'a/b/c'],
    ['a/../..', '..'],
    ['/../a', '/a'],
    ['./', '.'],
  ])('Clean(%j) = %j', (input, want) => {
    expect(goClean(input)).toBe(want);
  });

  it('Dir and TrimSpace', () => {
    expect(goDir('a/b/c')).toBe('a/b');
    expect(goDir('file/')).toBe('file');
    expect(goDir('x')).toBe('.');
    expect(goTrimSpace('\u0085 a b\t\u3000')).toBe('a b');
    expect(goTrimSpace('\ufeffa')).toBe('\ufeffa');
  });

  it('filepath.Match matches and validates the whole pattern', () => {
    expect(goFilepathMatch('a*/b', 'abc/b')).toBe(true);
    expect(goFilepathMatch('a*', 'ab/c')).toBe(false);
    expect(goFilepathMatch('[a-c]x', 'bx')).toBe(true);
    // The mismatch happens at "a", the syntax error comes later: still an error.
    expect(() => goFilepathMatch('a[', '.')).toThrow(BadPatternError);
    expect(() => goFilepathMatch('x*[', '.')).toThrow(BadPatternError);
  });
});
