/**
 * Go string semantics for the Dockerfile parser.
 *
 * BuildKit's parser works on Go strings, which are byte strings: most functions decode UTF-8
 * rune by rune (an invalid byte decodes as U+FFFD with width 1), a few look at single bytes,
 * and the dump prints bytes that are not UTF-8 as `\xNN`. To reproduce that exactly, the parser
 * runs on *byte strings*: JS strings whose every char code is one byte (0..255), i.e. the
 * latin1 view of the file. Public results are converted to ordinary JS strings with
 * `fromByteString`, which keeps each byte that is not part of valid UTF-8 as a lone surrogate
 * U+DC80..U+DCFF (Python's "surrogateescape"), so the dump can still print it as `\xNN` and
 * `toByteString` gets the original bytes back.
 *
 * References: Go unicode/utf8 DecodeRune, unicode.IsSpace, unicode.IsPrint, strconv.Quote.
 */

/** Go's utf8.RuneError. */
export const RUNE_ERROR = 0xfffd;

/** The UTF-8 bytes of U+FFFD as a byte string. */
const RUNE_ERROR_BYTES = '\xef\xbf\xbd';

/** Byte strings from raw bytes (latin1 view; each char code is one byte). */
export function bytesToByteString(bytes: Uint8Array): string {
  let out = '';
  const CHUNK = 8192;
  for (let i = 0; i < bytes.length; i += CHUNK) {
    out += String.fromCharCode(...bytes.subarray(i, i + CHUNK));
  }
  return out;
}

/**
 * Go's utf8.DecodeRuneInString on a byte string at `pos`: returns [rune, width]; invalid or
 * truncated sequences yield [RUNE_ERROR, 1]. `pos` must be < s.length.
 */
export function decodeRune(s: string, pos: number): [number, number] {
  const b0 = s.charCodeAt(pos);
  if (b0 < 0x80) return [b0, 1];
  let need: number;
  let lo = 0x80;
  let hi = 0xbf;
  let r: number;
  if (b0 >= 0xc2 && b0 <= 0xdf) {
    need = 1;
    r = b0 & 0x1f;
  } else if (b0 >= 0xe0 && b0 <= 0xef) {
    need = 2;
    r = b0 & 0x0f;
    if (b0 === 0xe0) lo = 0xa0;
    else if (b0 === 0xed) hi = 0x9f;
  } else if (b0 >= 0xf0 && b0 <= 0xf4) {
    need = 3;
    r = b0 & 0x07;
    if (b0 === 0xf0) lo = 0x90;
    else if (b0 === 0xf4) hi = 0x8f;
  } else {
    return [RUNE_ERROR, 1];
  }
  for (let k = 1; k <= need; k++) {
    if (pos + k >= s.length) return [RUNE_ERROR, 1];
    const b = s.charCodeAt(pos + k);
    if (k === 1 ? b < lo || b > hi : b < 0x80 || b > 0xbf) return [RUNE_ERROR, 1];
    r = (r << 6) | (b & 0x3f);
  }
  return [r, need + 1];
}

/** Go's utf8.DecodeLastRuneInString on a byte string ending at `end` (exclusive). */
function decodeLastRune(s: string, end: number): [number, number] {
  const last = s.charCodeAt(end - 1);
  if (last < 0x80) return [last, 1];
  // A rune is at most 4 bytes; try the longest valid decoding that ends exactly at `end`.
  const lim = Math.max(0, end - 4);
  let start = end - 1;
  while (start > lim && (s.charCodeAt(start) & 0xc0) === 0x80) start--;
  const [r, w] = decodeRune(s, start);
  if (start + w !== end) return [RUNE_ERROR, 1];
  return [r, w];
}

/** UTF-8 bytes of one rune, as a byte string (Go's utf8.AppendRune; invalid -> U+FFFD). */
export function encodeRune(r: number): string {
  if (r < 0 || r > 0x10ffff || (r >= 0xd800 && r <= 0xdfff)) return RUNE_ERROR_BYTES;
  if (r < 0x80) return String.fromCharCode(r);
  if (r < 0x800) return String.fromCharCode(0xc0 | (r >> 6), 0x80 | (r & 0x3f));
  if (r < 0x10000) {
    return String.fromCharCode(0xe0 | (r >> 12), 0x80 | ((r >> 6) & 0x3f), 0x80 | (r & 0x3f));
  }
  return String.fromCharCode(
    0xf0 | (r >> 18),
    0x80 | ((r >> 12) & 0x3f),
    0x80 | ((r >> 6) & 0x3f),
    0x80 | (r & 0x3f),
  );
}

/** Go's unicode.IsSpace. */
export function isGoSpace(r: number): boolean {
  if (r <= 0xff) {
    return (r >= 0x09 && r <= 0x0d) || r === 0x20 || r === 0x85 || r === 0xa0;
  }
  return (
    r === 0x1680 ||
    (r >= 0x2000 && r <= 0x200a) ||
    r === 0x2028 ||
    r === 0x2029 ||
    r === 0x202f ||
    r === 0x205f ||
    r === 0x3000
  );
}

/** Go's bytes.TrimLeftFunc(s, unicode.IsSpace) on a byte string. */
export function trimLeftSpace(s: string): string {
  let i = 0;
  while (i < s.length) {
    const [r, w] = decodeRune(s, i);
    if (!isGoSpace(r) || (r === RUNE_ERROR && w === 1)) break;
    i += w;
  }
  return i === 0 ? s : s.slice(i);
}

/** Go's strings.TrimSpace on a byte string. */
export function trimSpace(s: string): string {
  const left = trimLeftSpace(s);
  let end = left.length;
  while (end > 0) {
    const [r, w] = decodeLastRune(left, end);
    if (!isGoSpace(r) || (r === RUNE_ERROR && w === 1)) break;
    end -= w;
  }
  return end === left.length ? left : left.slice(0, end);
}

/**
 * Go's strings.ToLower on a byte string: ASCII fast path; otherwise rune-wise unicode.ToLower,
 * where invalid bytes become U+FFFD (strings.Map semantics).
 */
export function goToLower(s: string): string {
  let ascii = true;
  for (let i = 0; i < s.length; i++) {
    if (s.charCodeAt(i) >= 0x80) {
      ascii = false;
      break;
    }
  }
  if (ascii) return s.replace(/[A-Z]+/g, (m) => m.toLowerCase());
  let out = '';
  for (let i = 0; i < s.length; ) {
    const [r, w] = decodeRune(s, i);
    i += w;
    out += encodeRune(lowerRune(r));
  }
  return out;
}

/** Go's strings.ToUpper for ordinary JS strings (messages only). */
export function goToUpper(s: string): string {
  let out = '';
  for (const ch of s) {
    const up = ch.toUpperCase();
    out += up.length === ch.length || [...up].length === 1 ? up : ch;
  }
  return out;
}

/**
 * unicode.ToLower of one rune. JS lower-cases per code point the same way except for the few
 * characters whose lower case is longer (only U+0130 among them): Go maps those to one rune,
 * which is the first code point of the JS result.
 */
function lowerRune(r: number): number {
  if (r < 0x80) return r >= 0x41 && r <= 0x5a ? r + 32 : r;
  const lower = String.fromCodePoint(r).toLowerCase();
  return lower.codePointAt(0) ?? r;
}

/**
 * A byte string as an ordinary JS string: valid UTF-8 is decoded; every byte that is not part
 * of valid UTF-8 becomes the lone surrogate U+DC00+byte (surrogateescape; bytes >= 0x80 only).
 */
export function fromByteString(s: string): string {
  let ascii = true;
  for (let i = 0; i < s.length; i++) {
    if (s.charCodeAt(i) >= 0x80) {
      ascii = false;
      break;
    }
  }
  if (ascii) return s;
  let out = '';
  for (let i = 0; i < s.length; ) {
    const [r, w] = decodeRune(s, i);
    if (r === RUNE_ERROR && w === 1) out += String.fromCharCode(0xdc00 + s.charCodeAt(i));
    else out += String.fromCodePoint(r);
    i += w;
  }
  return out;
}

/**
 * A byte string decoded the way Go decodes text it lexes (text/scanner, encoding/json): every
 * invalid byte becomes U+FFFD.
 */
export function decodeReplacing(s: string): string {
  let out = '';
  for (let i = 0; i < s.length; ) {
    const [r, w] = decodeRune(s, i);
    out += String.fromCodePoint(r);
    i += w;
  }
  return out;
}

/**
 * An ordinary JS string as a byte string: UTF-8, except lone surrogates U+DC80..U+DCFF, which
 * are the escaped bytes of `fromByteString`; other lone surrogates become U+FFFD.
 */
export function toByteString(s: string): string {
  let ascii = true;
  for (let i = 0; i < s.length; i++) {
    if (s.charCodeAt(i) >= 0x80) {
      ascii = false;
      break;
    }
  }
  if (ascii) return s;
  let out = '';
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) {
      out += s[i];
      continue;
    }
    if (c >= 0xd800 && c <= 0xdbff) {
      const d = i + 1 < s.length ? s.charCodeAt(i + 1) : 0;
      if (d >= 0xdc00 && d <= 0xdfff) {
        out += encodeRune(((c - 0xd800) << 10) + (d - 0xdc00) + 0x10000);
        i++;
        continue;
      }
      out += RUNE_ERROR_BYTES;
      continue;
    }
    if (c >= 0xdc80 && c <= 0xdcff) {
      out += String.fromCharCode(c - 0xdc00);
      continue;
    }
    out += encodeRune(c);
  }
  return out;
}

const PRINTABLE = /^[\p{L}\p{M}\p{N}\p{P}\p{S}]$/u;

/** Go's strconv.IsPrint. */
function isGoPrint(r: number): boolean {
  if (r <= 0xff) {
    if (r >= 0x20 && r <= 0x7e) return true;
    if (r >= 0xa1 && r <= 0xff) return r !== 0xad;
    return false;
  }
  return PRINTABLE.test(String.fromCodePoint(r));
}

const HEX = '0123456789abcdef';
const hex2 = (b: number): string => `\\x${HEX[(b >> 4) & 0xf]}${HEX[b & 0xf]}`;

/**
 * Go's strconv.Quote of the bytes an ordinary JS string stands for (see `toByteString`):
 * escaped bytes (U+DC80..U+DCFF) print as `\xNN`, control characters with their short escape
 * or `\xNN`, non-printable runes as `\uNNNN` / `\UNNNNNNNN`, everything else verbatim.
 * https://pkg.go.dev/strconv#Quote
 */
export function goQuote(s: string): string {
  let out = '"';
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    let r = c;
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        r = ((c - 0xd800) << 10) + (d - 0xdc00) + 0x10000;
        i++;
      }
    }
    if (r >= 0xdc80 && r <= 0xdcff) {
      out += hex2(r - 0xdc00);
      continue;
    }
    if (r >= 0xd800 && r <= 0xdfff) r = RUNE_ERROR; // a lone surrogate encodes as U+FFFD
    if (r === 0x22 || r === 0x5c) {
      out += '\\' + String.fromCharCode(r);
      continue;
    }
    if (isGoPrint(r)) {
      out += String.fromCodePoint(r);
      continue;
    }
    switch (r) {
      case 0x07:
        out += '\\a';
        continue;
      case 0x08:
        out += '\\b';
        continue;
      case 0x0c:
        out += '\\f';
        continue;
      case 0x0a:
        out += '\\n';
        continue;
      case 0x0d:
        out += '\\r';
        continue;
      case 0x09:
        out += '\\t';
        continue;
      case 0x0b:
        out += '\\v';
        continue;
    }
    if (r < 0x20 || r === 0x7f) out += hex2(r);
    else if (r < 0x10000) out += '\\u' + r.toString(16).padStart(4, '0');
    else out += '\\U' + r.toString(16).padStart(8, '0');
  }
  return out + '"';
}

/** Go's strings.TrimSpace for ordinary JS strings (used on dump text). */
export function trimSpaceText(s: string): string {
  let a = 0;
  let b = s.length;
  while (a < b && isGoSpace(s.charCodeAt(a))) a++;
  while (b > a && isGoSpace(s.charCodeAt(b - 1))) b--;
  return s.slice(a, b);
}
