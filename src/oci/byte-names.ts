/**
 * File names are bytes; tsbuild's paths are strings. A name that is not valid UTF-8 is held
 * as a string the way Python's `surrogateescape` holds it (PEP 383): each byte that is not part
 * of a valid UTF-8 sequence becomes the lone surrogate U+DC80..U+DCFF (bytes 0x80..0xFF; bytes
 * below 0x80 are always valid). Valid UTF-8 never decodes to a lone surrogate, so the mapping is
 * one to one, a valid name is its ordinary string, and such a name flows through walking,
 * matching (one bad byte is one character, as one rune in Go's filepath.Match) and keying
 * (JSON escapes lone surrogates) unchanged. Where a name leaves the process it is turned back
 * into its bytes: file system calls (`fsPath`) and tar headers (`nameBytes`), as BuildKit, whose
 * names are Go byte strings, copies such files.
 */

/** Decodes a name read as bytes (readdir/readlink with `encoding: 'buffer'`). */
export function nameFromBytes(raw: Uint8Array): string {
  const buf = Buffer.isBuffer(raw) ? raw : Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength);
  const s = buf.toString('utf8');
  // Bad bytes always decode to U+FFFD: a name without one is valid as it is; only a name that
  // holds one (rare, and possibly valid) is encoded again and compared.
  if (!s.includes('\uFFFD') || Buffer.from(s, 'utf8').equals(buf)) return s;
  let out = '';
  let i = 0;
  while (i < buf.length) {
    let j = i;
    for (let n = sequenceLength(buf, j); n > 0; n = sequenceLength(buf, j)) j += n;
    if (j > i) out += buf.toString('utf8', i, j);
    if (j < buf.length) out += String.fromCharCode(0xdc00 + buf[j]!);
    i = j + 1;
  }
  return out;
}

/** The length of the valid UTF-8 sequence at `i`, 0 when the byte there starts none (RFC 3629). */
function sequenceLength(b: Buffer, i: number): number {
  if (i >= b.length) return 0;
  const c = b[i]!;
  if (c < 0x80) return 1;
  let n: number;
  let lo = 0x80;
  let hi = 0xbf;
  if (c >= 0xc2 && c <= 0xdf) n = 2;
  else if (c >= 0xe0 && c <= 0xef) {
    n = 3;
    if (c === 0xe0) lo = 0xa0; // overlong
    if (c === 0xed) hi = 0x9f; // UTF-16 surrogates
  } else if (c >= 0xf0 && c <= 0xf4) {
    n = 4;
    if (c === 0xf0) lo = 0x90; // overlong
    if (c === 0xf4) hi = 0x8f; // above U+10FFFF
  } else return 0;
  if (i + n > b.length) return 0;
  const second = b[i + 1]!;
  if (second < lo || second > hi) return 0;
  for (let k = 2; k < n; k++) if ((b[i + k]! & 0xc0) !== 0x80) return 0;
  return n;
}

/** True when the name holds bytes that are not valid UTF-8 (escaped as lone surrogates). */
export function hasByteEscapes(name: string): boolean {
  return !name.isWellFormed();
}

/** The bytes of a name: UTF-8, with escaped bytes restored. */
export function nameBytes(name: string): Buffer {
  if (name.isWellFormed()) return Buffer.from(name, 'utf8');
  const parts: Buffer[] = [];
  let start = 0;
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff) {
      const d = name.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) i++; // a valid pair
      continue;
    }
    if (c >= 0xdc80 && c <= 0xdcff) {
      parts.push(Buffer.from(name.slice(start, i), 'utf8'), Buffer.of(c - 0xdc00));
      start = i + 1;
    }
  }
  parts.push(Buffer.from(name.slice(start), 'utf8'));
  return Buffer.concat(parts);
}

/** A path for node's fs calls: the string itself, or its bytes when it holds escaped bytes. */
export function fsPath(p: string): string | Buffer {
  return p.isWellFormed() ? p : nameBytes(p);
}

/** A name's bytes for messages: printable ASCII as it is, every other byte as \xNN. */
export function printableName(name: string | Uint8Array): string {
  const raw = typeof name === 'string' ? nameBytes(name) : name;
  let out = '';
  for (const b of raw) out += b >= 0x20 && b < 0x7f && b !== 0x5c ? String.fromCharCode(b) : `\\x${b.toString(16).padStart(2, '0')}`;
  return out;
}

/** A path for messages: as it is when valid UTF-8, else with its bad bytes shown as \xNN. */
export function displayName(name: string): string {
  if (name.isWellFormed()) return name;
  let out = '';
  for (const ch of name) {
    const c = ch.charCodeAt(0);
    out += ch.length === 1 && c >= 0xdc80 && c <= 0xdcff ? `\\x${(c - 0xdc00).toString(16)}` : ch;
  }
  return out;
}

/**
 * A name for key text, which is made UTF-8 (canonicalJson writes a lone surrogate as U+FFFD, as
 * Go does): itself when valid, else each bad byte as NUL and two hex digits. No file name holds
 * NUL, so names that differ only in their bad bytes key differently, and valid names key as they
 * always did.
 */
export function keyName(name: string): string {
  if (name.isWellFormed()) return name;
  return displayName(name).replace(/\\x([0-9a-f]{2})/g, (_m: string, h: string) => `\0${h}`);
}
