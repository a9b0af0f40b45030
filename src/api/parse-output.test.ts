import { describe, expect, it } from 'vitest';
import { parseOutputFlag } from './parse-output.js';
import { withDefaultOutputs } from './build-request.js';
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
    ['type=image,push=false', { type: 'image' }],
    ['type=registry', { type: 'registry', compression: 'gzip' }],
    ['type=registry,name=127.0.0.1:5000/app/img:v1', { type: 'registry', name: '127.0.0.1:5000/app/img:v1', compression: 'gzip' }],
    ['type=registry,name=app', { type: 'registry', name: 'docker.io/library/app:latest', compression: 'gzip' }],
    ['type=image,name=127.0.0.1:5000/app/img:v1,push=true', { type: 'registry', name: '127.0.0.1:5000/app/img:v1', compression: 'gzip' }],
    ['type=registry,name=r.example/a:b,compression=zstd,compression-level=5', { type: 'registry', name: 'r.example/a:b', compression: 'zstd', level: 5 }],
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
    'type=registry,name=Bad Name',
    'type=registry,push=false',
    'type=image,push=maybe',
    'type=image,name=r.example/a:b',
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

describe('withDefaultOutputs', () => {
  const tags = ['127.0.0.1:5000/app:v1'];
  it('tags go to the local store unless a registry output pushes them', () => {
    expect(withDefaultOutputs(tags, [])).toEqual([{ type: 'image' }]);
    expect(withDefaultOutputs(tags, [{ type: 'oci', dest: '/o.tar', compression: 'gzip' }])[0]).toEqual({ type: 'image' });
    expect(withDefaultOutputs(tags, [{ type: 'registry', compression: 'gzip' }])).toEqual([{ type: 'registry', compression: 'gzip' }]);
    expect(withDefaultOutputs([], [{ type: 'registry', name: tags[0]!, compression: 'gzip' }])).toEqual([{ type: 'registry', name: tags[0], compression: 'gzip' }]);
  });
  it('a registry output with no name and no tag is a usage error', () => {
    try {
      withDefaultOutputs([], [{ type: 'registry', compression: 'gzip' }]);
      expect.unreachable();
    } catch (e) {
      expect((e as TsbuildError).code).toBe('USAGE');
      expect((e as TsbuildError).exitCode).toBe(2);
    }
  });
});
