import { describe, expect, it } from 'vitest';
import {
  bytesToByteString,
  decodeRune,
  fromByteString,
  goQuote,
  goToLower,
  RUNE_ERROR,
  toByteString,
  trimSpace,
} from './go-text.js';

const bs = (...bytes: number[]): string => bytesToByteString(Uint8Array.from(bytes));

describe('go-text', () => {
  it('decodes UTF-8 like Go: invalid, overlong, surrogate and truncated sequences are one byte each', () => {
    expect(decodeRune(bs(0xe2, 0x99, 0xa5), 0)).toEqual([0x2665, 3]);
    expect(decodeRune(bs(0xf0, 0x9f, 0x98, 0x80), 0)).toEqual([0x1f600, 4]);
    for (const bad of [[0x80], [0xc0, 0x80], [0xc1, 0xbf], [0xe0, 0x80, 0x80], [0xed, 0xa0, 0x80], [0xf4, 0x90, 0x80, 0x80], [0xf5], [0xe2, 0x99], [0xff]]) {
      expect(decodeRune(bs(...bad), 0)).toEqual([RUNE_ERROR, 1]);
    }
  });

  it('round-trips any bytes through ordinary strings (surrogateescape)', () => {
    let seed = 12345;
    const rand = (): number => (seed = (seed * 1103515245 + 12345) % 2147483648) % 256;
    for (let n = 0; n < 500; n++) {
      const bytes = Array.from({ length: 1 + (n % 17) }, rand);
      const s = bs(...bytes);
      expect(toByteString(fromByteString(s))).toBe(s);
    }
    const valid = Buffer.from('héllo ☃ 😀', 'utf8');
    expect(fromByteString(bytesToByteString(valid))).toBe('héllo ☃ 😀');
  });

  it('quotes like strconv.Quote', () => {
    expect(goQuote('"Fran & Freddie\'s Diner\t☺"')).toBe('"\\"Fran & Freddie\'s Diner\\t☺\\""');
    expect(goQuote('\u263a\u00a0\u200b\ufeff\u0085\u{e0001}\u{10ffff}')).toBe('"☺\\u00a0\\u200b\\ufeff\\u0085\\U000e0001\\U0010ffff"');
    expect(goQuote('\x07\b\f\n\r\t\v\x00\x1b\x7f\\')).toBe('"\\a\\b\\f\\n\\r\\t\\v\\x00\\x1b\\x7f\\\\"');
    expect(goQuote(fromByteString(bs(0x61, 0xff, 0xc3)))).toBe('"a\\xff\\xc3"');
    expect(goQuote('안녕 😀 é')).toBe('"안녕 😀 é"');
  });

  it('lower-cases and trims like Go', () => {
    expect(goToLower('RUN')).toBe('run');
    expect(fromByteString(goToLower(toByteString('WOR\u212aDIR')))).toBe('workdir'); // Kelvin sign
    expect(fromByteString(goToLower(bs(0x52, 0xff)))).toBe('r\ufffd');
    expect(fromByteString(trimSpace(toByteString('\u00a0\u3000 x \u0085')))).toBe('x');
  });
});
