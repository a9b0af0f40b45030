import { describe, expect, it } from 'vitest';
import { sha256Digest } from '../oci/index.js';
import { cacheKeyFor, type StepKeyInput } from './cache-key.js';
import { canonicalKeyJson } from './key-json.js';

const base: StepKeyInput = {
  parent: 'sha256:' + 'a'.repeat(64),
  kind: 'COPY',
  instruction: 'COPY a /b',
  visible: { A: '1', B: '2' },
  inputs: ['sha256:' + 'b'.repeat(64)],
  platform: 'linux/amd64',
};

describe('cacheKeyFor', () => {
  it('is stable for the same input, whatever the key order of visible values', () => {
    expect(cacheKeyFor(base)).toBe(cacheKeyFor({ ...base, visible: { B: '2', A: '1' } }));
  });

  it.each([
    ['parent', { parent: 'sha256:' + 'c'.repeat(64) }],
    ['instruction', { instruction: 'COPY a /c' }],
    ['kind', { kind: 'ADD' }],
    ['visible value', { visible: { A: '1', B: '3' } }],
    ['visible name', { visible: { A: '1', C: '2' } }],
    ['inputs', { inputs: ['sha256:' + 'd'.repeat(64)] }],
    ['input order', { inputs: ['x', 'y'] }],
    ['platform', { platform: 'linux/arm64' }],
  ])('changes when the %s changes', (_name, patch) => {
    const other = cacheKeyFor({ ...base, ...patch });
    expect(other).not.toBe(cacheKeyFor(base));
    if (_name === 'input order') {
      expect(cacheKeyFor({ ...base, inputs: ['y', 'x'] })).not.toBe(other);
    }
  });

  it('is the sha256 of the canonical key document, however the inputs are given', () => {
    // The inputs are hashed one by one (no joined string): the bytes must be exactly those of
    // the whole document, or every cached step would miss after an upgrade.
    const inputs = ['a/b\0file\x00644\u00000:0\0\0sha256:' + 'e'.repeat(64), 'é \u{1F600} "q" \\', '', 'x'];
    for (const list of [[], ['one'], inputs]) {
      const doc = canonicalKeyJson({ scheme: 'tsbuild-cache-v1', parent: base.parent, kind: base.kind, instruction: base.instruction, visible: { A: '1', B: '2' }, inputs: list, platform: base.platform });
      expect(cacheKeyFor({ ...base, inputs: list })).toBe(sha256Digest(doc));
      expect(cacheKeyFor({ ...base, inputs: (function* () { yield* list; })() })).toBe(sha256Digest(doc));
    }
    expect(cacheKeyFor({ ...base, inputs: undefined })).toBe(cacheKeyFor({ ...base, inputs: [] }));
  });

  it('cannot be confused by a field value that looks like JSON', () => {
    const a = cacheKeyFor({ ...base, instruction: 'x","kind":"ADD' });
    const b = cacheKeyFor({ ...base, kind: 'ADD', instruction: 'x' });
    expect(a).not.toBe(b);
  });
});
