import { describe, expect, it } from 'vitest';
import { globToRegExp, hasWildcard, matchGlob, unescapeGlob } from './glob.js';

describe('glob (Go filepath.Match rules)', () => {
  it.each([
    ['abc', 'abc', true],
    ['*', 'abc', true],
    ['*c', 'abc', true],
    ['a*', 'a', true],
    ['a*/b', 'abc/b', true],
    ['a*', 'ab/c', false],
    ['a?c', 'abc', true],
    ['a?c', 'ac', false],
    ['[abc]x', 'bx', true],
    ['[^abc]x', 'bx', false],
    ['[^abc]x', 'dx', true],
    ['[a-c]x', 'cx', true],
    ['[a-c]x', 'dx', false],
    ['a\\*b', 'a*b', true],
    ['a\\*b', 'axb', false],
    ['[\\]]', ']', true],
    ['*.txt', 'notes.txt', true],
    ['*.txt', '.txt', true],
  ])('%s matches %s: %s', (p, n, want) => {
    expect(matchGlob(p, n)).toBe(want);
  });

  it('reports malformed patterns', () => {
    expect(globToRegExp('[abc')).toBeNull();
    expect(globToRegExp('abc\\')).toBeNull();
  });

  it('knows escaped characters are not wildcards', () => {
    expect(hasWildcard('a\\[b')).toBe(false);
    expect(hasWildcard('a[b]')).toBe(true);
    expect(unescapeGlob('a\\[b')).toBe('a[b');
  });
});
