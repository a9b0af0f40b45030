import { describe, expect, it } from 'vitest';
import { resolveChown, resolveFileOpUser, parseIdFile } from './users.js';
import { TsbuildError } from '../errors.js';

const files: Record<string, string> = {
  '/etc/passwd': 'root:x:0:0:root:/root:/bin/sh\n# comment\napp:x:1000:1001::/home/app:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n',
  '/etc/group': 'root:x:0:\nstaff:x:50:app\napp:x:1001:\n',
};
const read = async (p: string) => files[p];
const none = async () => undefined;

describe('resolveChown', () => {
  it.each([
    ['0', { uid: 0, gid: 0 }],
    ['55:66', { uid: 55, gid: 66 }],
    ['1234', { uid: 1234, gid: 1234 }],
    ['app', { uid: 1000, gid: 1001 }], // the primary group from /etc/passwd, as BuildKit
    ['1000', { uid: 1000, gid: 1000 }], // a numeric uid alone: the same number
    ['app:staff', { uid: 1000, gid: 50 }],
    ['app:7', { uid: 1000, gid: 7 }],
    ['8:staff', { uid: 8, gid: 50 }],
  ])('%s', async (spec, want) => {
    expect(await resolveChown(spec, read)).toEqual(want);
  });

  it('numeric ids need no passwd file', async () => {
    expect(await resolveChown('10:20', none)).toEqual({ uid: 10, gid: 20 });
  });

  it.each(['ghost', 'app:ghosts', ':1', '1:', 'a:b:c'])('rejects %s', async (spec) => {
    await expect(resolveChown(spec, read)).rejects.toBeInstanceOf(TsbuildError);
  });

  it('names the missing file', async () => {
    await expect(resolveChown('app', none)).rejects.toThrow(/\/etc\/passwd/);
  });

  it('first entry wins', () => {
    expect(parseIdFile('a:x:1:1\na:x:2:2\n').get('a')).toBe(1);
  });
});

describe('resolveFileOpUser (the owner of what WORKDIR creates)', () => {
  it.each([
    ['root', { uid: 0, gid: 0 }],
    ['app', { uid: 1000, gid: 1001 }],
    ['1234', { uid: 1234, gid: 1234 }],
    ['1234:99', { uid: 1234, gid: 99 }],
    ['app:staff', { uid: 1000, gid: 50 }],
    ['nobody', { uid: 65534, gid: 65534 }],
    ['ghost', { uid: 0, gid: 0 }], // not found: 0, as BuildKit's readUser leaves it
    ['app:ghosts', { uid: 1000, gid: 1001 }],
    ['7:staff', { uid: 7, gid: 50 }],
  ])('%s', async (spec, want) => {
    expect(await resolveFileOpUser(spec, read)).toEqual(want);
  });

  it('a name without /etc/passwd is root, numeric ids need no file', async () => {
    expect(await resolveFileOpUser('app', none)).toEqual({ uid: 0, gid: 0 });
    expect(await resolveFileOpUser('5:6', none)).toEqual({ uid: 5, gid: 6 });
  });
});
