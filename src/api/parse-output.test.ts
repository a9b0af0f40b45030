import { describe, expect, it } from 'vitest';
import { parseOutputFlag } from './parse-output.js';
import { TsbuildError } from '../errors.js';

describe('parseOutputFlag', () => {
  it.each([
    ['type=oci,dest=out.tar', { type: 'oci', dest: '/w/out.tar', compression: 'gzip' }],
    ['type=oci,dest=/abs/o.tar,compression=uncompressed', { type: 'oci', dest: '/abs/o.tar', compression: 'uncompressed' }],
    ['type=docker,dest=h.tar', { type: 'docker', dest: '/w/h.tar', compression: 'gzip' }],
    ['type=oci-layout,dest=lay', { type: 'oci-layout', dest: '/w/lay', compression: 'gzip' }],
    ['type=oci,dest=z.tar,compression=zstd', { type: 'oci', dest: '/w/z.tar', compression: 'zstd' }],
    ['type=oci,dest=z.tar,compression=zstd,compression-level=19', { type: 'oci', dest: '/w/z.tar', compression: 'zstd', level: 19 }],
    ['type=oci-layout,dest=lay,compression-level=9', { type: 'oci-layout', dest: '/w/lay', compression: 'gzip', level: 9 }],
    ['type=oci,dest=o.tar,compression-level=0', { type: 'oci', dest: '/w/o.tar', compression: 'gzip' }],
    ['type=local,dest=root', { type: 'local', dest: '/w/root' }],
    ['type=local,dest=root,preserve-special=true', { type: 'local', dest: '/w/root', preserveSpecial: true }],
    ['type=local,dest=root,preserve-special=false', { type: 'local', dest: '/w/root' }],
    ['type=tar,dest=fs.tar', { type: 'tar', dest: '/w/fs.tar' }],
    ['outdir', { type: 'local', dest: '/w/outdir' }],
    ['type=image', { type: 'image' }],
  ])('%s', (flag, want) => {
    expect(parseOutputFlag(flag, '/w')).toEqual(want);
  });

  it.each([
    'type=oci',
    'type=nope,dest=x',
    'dest=x',
    'type=oci,dest=x,compression=lz4',
    'type=oci,=x',
    'type=local,dest=x,preserve-special=yes',
    'type=docker,dest=x,compression=zstd',
    'type=oci,dest=x,compression-level=10',
    'type=oci,dest=x,compression=zstd,compression-level=23',
    'type=oci,dest=x,compression=zstd,compression-level=-1',
    'type=oci,dest=x,compression=uncompressed,compression-level=3',
  ])(
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
