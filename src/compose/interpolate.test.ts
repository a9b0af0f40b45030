import { describe, expect, it } from 'vitest';
import { TsbuildError } from '../errors.js';
import { interpolate, parseEnvFile } from './interpolate.js';

const vars = new Map([
  ['SET', 'value'],
  ['EMPTY', ''],
  ['TAG', '1.2'],
]);

describe('interpolate', () => {
  it.each([
    ['$SET', 'value'],
    ['${SET}', 'value'],
    ['pre-${SET}-post', 'pre-value-post'],
    ['$SET.x', 'value.x'],
    ['${UNSET}', ''],
    ['$UNSET', ''],
    ['${UNSET:-def}', 'def'],
    ['${EMPTY:-def}', 'def'],
    ['${EMPTY-def}', ''],
    ['${UNSET-def}', 'def'],
    ['${SET:-def}', 'value'],
    ['${SET:+alt}', 'alt'],
    ['${EMPTY:+alt}', ''],
    ['${EMPTY+alt}', 'alt'],
    ['${UNSET+alt}', ''],
    ['${SET:?must}', 'value'],
    ['${EMPTY?must}', ''],
    ['$$SET', '$SET'],
    ['$${SET}', '${SET}'],
    ['cost $ 5', 'cost $ 5'],
    ['${UNSET:-${TAG}}', '1.2'],
    ['${UNSET:-app:${TAG:-latest}}', 'app:1.2'],
  ])('%s -> %s', (input, want) => {
    expect(interpolate(input, vars, 'compose.yaml')).toBe(want);
  });

  it('fails with the message of ${VAR:?message} and ${VAR?message}', () => {
    for (const expr of ['${UNSET:?set UNSET to the API host}', '${UNSET?set UNSET to the API host}', '${EMPTY:?set UNSET to the API host}']) {
      let err: unknown;
      try {
        interpolate(expr, vars, 'compose.yaml: services.api.image');
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(TsbuildError);
      expect((err as TsbuildError).code).toBe('COMPOSE_VARIABLE');
      expect((err as TsbuildError).message).toContain('set UNSET to the API host');
      expect((err as TsbuildError).message).toContain('services.api.image');
    }
  });

  it('rejects a malformed ${...}', () => {
    expect(() => interpolate('${SET', vars, 'f')).toThrow(expect.objectContaining({ code: 'COMPOSE_INVALID' }));
    expect(() => interpolate('${9X}', vars, 'f')).toThrow(expect.objectContaining({ code: 'COMPOSE_INVALID' }));
  });
});

describe('parseEnvFile', () => {
  it('reads the dotenv dialect compose reads', () => {
    const text = [
      '# comment',
      'A=plain value # trailing comment',
      'export B=exported',
      "C='single $A'",
      'D="double ${A}\\nnext"',
      'E=${B}-${MISSING:-dflt}',
      'F=',
      '',
      'G="multi',
      'line"',
      'FROMENV',
    ].join('\n');
    const got = parseEnvFile(text, '.env', new Map([['FROMENV', 'env value']]));
    expect(Object.fromEntries(got)).toEqual({
      A: 'plain value',
      B: 'exported',
      C: 'single $A',
      D: 'double plain value\nnext',
      E: 'exported-dflt',
      F: '',
      G: 'multi\nline',
      FROMENV: 'env value',
    });
  });

  it('names the line of a bad variable name', () => {
    expect(() => parseEnvFile('OK=1\nBAD NAME=2\n', '/p/.env', new Map())).toThrow(/\/p\/\.env:2/);
  });
});
