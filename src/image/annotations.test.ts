import { describe, expect, it } from 'vitest';
import { TsbuildError } from '../errors.js';
import { parseAnnotations } from './annotations.js';

const amd64 = { os: 'linux', architecture: 'amd64' };

describe('parseAnnotations (buildx --annotation grammar)', () => {
  it('puts untyped and manifest: annotations on the manifest, manifest-descriptor: on the descriptor', () => {
    expect(parseAnnotations(['a=1', 'manifest:b=x=y', 'manifest-descriptor:c=3', 'manifest,manifest-descriptor:d=4', 'e='], amd64)).toEqual({
      manifest: { a: '1', b: 'x=y', d: '4', e: '' },
      manifestDescriptor: { c: '3', d: '4' },
    });
  });
  it('keeps a [platform] annotation only for the platform built', () => {
    expect(parseAnnotations(['manifest[linux/amd64]:a=1', 'manifest[linux/arm64]:b=2'], amd64)).toEqual({ manifest: { a: '1' }, manifestDescriptor: {} });
  });
  it.each([['nokey'], ['bogus:a=1'], ['index:a=1'], ['index-descriptor:a=1'], ['manifest[not a platform]:a=1'], ['=v']])('refuses %s as a usage error', (flag) => {
    let err: unknown;
    try {
      parseAnnotations([flag], amd64);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(TsbuildError);
    expect((err as TsbuildError).code).toBe('USAGE');
    expect((err as TsbuildError).message).toContain(JSON.stringify(flag));
  });
});
