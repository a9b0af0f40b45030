import { describe, expect, it } from 'vitest';
import { TsbuildError, withLocation } from './errors.js';

const at = { file: 'Dockerfile', startLine: 3, endLine: 4 };
const elsewhere = { file: 'Dockerfile', startLine: 9, endLine: 9 };

describe('withLocation', () => {
  it('gives a located error nothing else: code, hint and exit code kept, the original as cause', () => {
    const original = new TsbuildError('USAGE', 'bad', { hint: 'do this', exitCode: 1 });
    const e = (() => {
      try {
        return withLocation(at, () => {
          throw original;
        });
      } catch (x) {
        return x;
      }
    })() as TsbuildError;
    expect(e).toBeInstanceOf(TsbuildError);
    expect([e.code, e.message, e.hint, e.exitCode, e.location, e.cause]).toEqual(['USAGE', 'bad', 'do this', 1, at, original]);
  });

  it('works on promises, adds the prefix and the default hint, and leaves located and foreign errors alone', async () => {
    const e = await withLocation(at, async () => Promise.reject(new TsbuildError('IMAGE_NOT_FOUND', 'no image')), { prefix: 'FROM x: ', hint: 'pull it' }).catch((x: unknown) => x as TsbuildError);
    expect([e.message, e.hint, e.location]).toEqual(['FROM x: no image', 'pull it', at]);
    const located = new TsbuildError('USAGE', 'here', { location: elsewhere });
    await expect(withLocation(at, async () => Promise.reject(located))).rejects.toBe(located);
    const foreign = new Error('bug');
    expect(() => withLocation(at, () => { throw foreign; })).toThrow(foreign);
    expect(withLocation(at, () => 42)).toBe(42);
    expect(await withLocation(at, async () => 'ok')).toBe('ok');
  });
});
