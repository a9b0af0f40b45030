import { describe, expect, it } from 'vitest';
import { parseOutputFlag } from './parse-output.js';
import { TsbuildError } from '../errors.js';

describe('parseOutputFlag', () => {
  it.each([
    ['type=oci,dest=out.tar', { type: 'oci', dest: '/w/out.tar', compression: 'gzip' }],
    ['type=oci,dest=/abs/o.tar,compression=uncompressed', { type: 'oci', dest: '/abs/o.tar', compression: 'uncompressed' }],
    ['type=docker,dest=h.tar', { type: 'docker', dest: '/w/h.tar', compression: 'gzip' }],
    ['type=oci-layout,dest=lay', { type: 'oci-layout', dest: '/w/lay', compression: 'gzip' }],
    ['type=local,dest=root', { type: 'local', dest: '/w/root' }],
    ['type=local,dest=root,preserve-special=true', { type: 'local', dest: '/w/root', preserveSpecial: true }],
    ['type=local,dest=root,preserve-special=false', { type: 'local', dest: '/w/root' }],
    ['type=tar,dest=fs.tar', { type: 'tar', dest: '/w/fs.tar' }],
    ['outdir', { type: 'local', dest: '/w/outdir' }],
    ['type=image', { type: 'image' }],
  ])('%s', (flag, want) => {
    expect(parseOutputFlag(flag, '/w')).toEqual(want);
  });

  it.each(['type=oci', 'type=nope,dest=x', 'dest=x', 'type=oci,dest=x,compression=lz4', 'type=oci,=x', 'type=local,dest=x,preserve-special=yes'])(
    'rejects %s as a usage error',
    (flag) => {
      try {
        parseOutputFlag(flag, '/w');
        expect.unreachable();
      } catch (e) {
        expect(e).toBeInstanceOf(TsbuildError);
        expect((e as TsbuildError).code).toBe('USAGE');
        expect((e as TsbuildError).exitCode).toBe(2);
      }
    },
  );
});
