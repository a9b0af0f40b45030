import { describe, expect, it } from 'vitest';
import { TsbuildError } from '../errors.js';
import { canonicalJson, compareCodePoints, parseJsonCapped } from './canonical-json.js';
import { sha256Digest } from './digest.js';

const text = (v: unknown): string => canonicalJson(v).toString('utf8');

describe('canonicalJson', () => {
  it('sorts keys at every level and adds no whitespace', () => {
    expect(text({ b: 1, a: { d: [3, { z: true, y: null }], c: 'x' } })).toBe(
      '{"a":{"c":"x","d":[3,{"y":null,"z":true}]},"b":1}',
    );
  });

  it('gives the same bytes whatever the insertion order', () => {
    const a = { schemaVersion: 2, mediaType: 'm', config: { size: 1, digest: 'd' }, layers: [] };
    const b = { layers: [], config: { digest: 'd', size: 1 }, mediaType: 'm', schemaVersion: 2 };
    expect(canonicalJson(a).equals(canonicalJson(b))).toBe(true);
    expect(sha256Digest(canonicalJson(a))).toBe(sha256Digest(canonicalJson(b)));
  });

  it('round-trips through JSON.parse to an equal value, and re-encodes to the same bytes', () => {
    const config = {
      architecture: 'amd64',
      os: 'linux',
      created: '2024-01-01T00:00:00Z',
      config: {
        Env: ['PATH=/usr/bin', 'A=<b> & "c"'],
        Labels: { 'org.opencontainers.image.title': 'x', b: 'é日本' },
        ExposedPorts: { '80/tcp': {} },
        Healthcheck: { Test: ['CMD-SHELL', 'curl -f http://x/ || exit 1'], Interval: 30_000_000_000 },
      },
      rootfs: { type: 'layers', diff_ids: [`sha256:${'a'.repeat(64)}`] },
      history: [{ created_by: 'RUN a && b > c', empty_layer: true }],
    };
    const bytes = canonicalJson(config);
    const back: unknown = JSON.parse(bytes.toString('utf8'));
    expect(back).toEqual(config);
    expect(canonicalJson(back).equals(bytes)).toBe(true);
  });

  it('escapes <, >, & and U+2028/9 as Go encoding/json does', () => {
    expect(text('a<b>c&d\u2028\u2029')).toBe('"a\\u003cb\\u003ec\\u0026d\\u2028\\u2029"');
    expect(text({ '<k>': 1 })).toBe('{"\\u003ck\\u003e":1}');
  });

  it('escapes control characters like Go >= 1.22', () => {
    expect(text('\b\f\n\r\t\u0000\u001f"\\/')).toBe('"\\b\\f\\n\\r\\t\\u0000\\u001f\\"\\\\/"');
  });

  it('writes non-ASCII as UTF-8, and lone surrogates as U+FFFD', () => {
    expect(canonicalJson('é').equals(Buffer.from('"é"', 'utf8'))).toBe(true);
    expect(canonicalJson('😀').equals(Buffer.from('"😀"', 'utf8'))).toBe(true);
    expect(text('a\ud800b')).toBe('"a\ufffdb"');
    expect(text('\udc00')).toBe('"\ufffd"');
  });

  it('orders keys by code point (Go byte order), not UTF-16 unit', () => {
    // U+FF61 sorts before U+1F600 by code point, after it by UTF-16 code unit.
    expect(text({ '😀': 1, '｡': 2, a: 3 })).toBe('{"a":3,"｡":2,"😀":1}');
    expect(compareCodePoints('a', 'ab')).toBeLessThan(0);
    expect(compareCodePoints('b', 'a')).toBeGreaterThan(0);
    expect(compareCodePoints('x', 'x')).toBe(0);
  });

  it('numbers: integers as decimal, -0 as 0, bigint as decimal', () => {
    expect(text([0, -0, 1, -5, 9007199254740991, 1.5, 10n ** 20n])).toBe(
      '[0,0,1,-5,9007199254740991,1.5,100000000000000000000]',
    );
  });

  it('leaves out undefined members', () => {
    expect(text({ a: undefined, b: 1 })).toBe('{"b":1}');
  });

  it.each<[string, unknown]>([
    ['NaN', Number.NaN],
    ['Infinity', Number.POSITIVE_INFINITY],
    ['undefined in an array', [1, undefined]],
    ['a Date', new Date(0)],
    ['a Map', new Map()],
    ['a function', () => 1],
    ['a symbol', Symbol('x')],
    ['top-level undefined', undefined],
  ])('refuses %s', (_name, value) => {
    expect(() => canonicalJson(value)).toThrow(TypeError);
  });

  it('refuses cycles but allows shared subtrees', () => {
    const shared = { x: 1 };
    expect(text({ a: shared, b: shared })).toBe('{"a":{"x":1},"b":{"x":1}}');
    const cyclic: Record<string, unknown> = {};
    cyclic['self'] = cyclic;
    expect(() => canonicalJson(cyclic)).toThrow(/cyclic/);
  });

  it('accepts objects without a prototype', () => {
    const o = Object.create(null) as Record<string, unknown>;
    o['b'] = 1;
    o['a'] = 2;
    expect(text(o)).toBe('{"a":2,"b":1}');
  });
});

describe('parseJsonCapped', () => {
  const bytes = (s: string): Buffer => Buffer.from(s, 'utf8');
  const code = (f: () => unknown): string => {
    try {
      f();
    } catch (e) {
      expect(e).toBeInstanceOf(TsbuildError);
      return (e as TsbuildError).code;
    }
    throw new Error('expected a throw');
  };

  it('parses a document within the cap', () => {
    expect(parseJsonCapped(bytes('{"a":[1,2]}'), 100, 'doc')).toEqual({ a: [1, 2] });
    expect(parseJsonCapped(bytes('{"a":1}'), 7, 'doc')).toEqual({ a: 1 });
  });

  it('refuses a document over the cap, naming it', () => {
    expect(code(() => parseJsonCapped(bytes('{"a":1}'), 6, 'manifest x'))).toBe('MANIFEST_INVALID');
    expect(() => parseJsonCapped(bytes('{"a":1}'), 6, 'manifest x')).toThrow(/manifest x is 7 bytes, over the 6-byte limit/);
  });

  it.each([
    ['malformed JSON', bytes('{"a":')],
    ['trailing garbage', bytes('{} x')],
    ['empty input', bytes('')],
    ['invalid UTF-8', Buffer.from([0x7b, 0x22, 0xff, 0x22, 0x3a, 0x31, 0x7d])],
    ['a byte-order mark', Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), bytes('{}')])],
  ])('refuses %s with MANIFEST_INVALID', (_name, input) => {
    expect(code(() => parseJsonCapped(input, 1000, 'doc'))).toBe('MANIFEST_INVALID');
  });
});

