import { describe, expect, it } from 'vitest';
import { contextKind, parseGitRef, redactUrl } from './remote-context.js';

describe('remote build contexts: what a context argument is', () => {
  it.each([
    ['.', 'local'],
    ['some/dir', 'local'],
    ['-', 'stdin'],
    ['git://h/r', 'git'],
    ['ssh://git@h/r.git', 'git'],
    ['git@github.com:o/r.git', 'git'],
    ['https://h/o/r.git', 'git'],
    ['https://h/o/r.git#main:sub', 'git'],
    ['https://h/ctx.tar.gz', 'url'],
    ['http://h/Dockerfile', 'url'],
  ])('%s is %s', (arg, kind) => {
    expect(contextKind(arg)).toBe(kind);
  });

  it('splits #ref:subdir as buildx does', () => {
    expect(parseGitRef('git://h/r')).toEqual({ remote: 'git://h/r' });
    expect(parseGitRef('git://h/r#v1')).toEqual({ remote: 'git://h/r', ref: 'v1' });
    expect(parseGitRef('git://h/r#v1:a/b')).toEqual({ remote: 'git://h/r', ref: 'v1', subdir: 'a/b' });
    expect(parseGitRef('git://h/r#:a')).toEqual({ remote: 'git://h/r', subdir: 'a' });
  });

  it('keeps user information out of what it shows', () => {
    expect(redactUrl('https://user:tok@h/r.git')).toBe('https://h/r.git');
    expect(redactUrl('git@h:r.git')).toBe('git@h:r.git');
  });
});
