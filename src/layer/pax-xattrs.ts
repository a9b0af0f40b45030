import { Transform, type TransformCallback } from 'node:stream';

/**
 * File capabilities of a layer's entries, read from the tar stream itself: tar-stream decodes
 * PAX records as UTF-8 strings, which mangles binary values such as `security.capability`'s.
 *
 * A pass-through Transform placed just before tar-stream's extract: it follows the same block
 * structure (a 512-byte header; PAX 'x', global 'g' and GNU long-name 'L'/'K' headers with their
 * data; a real entry with its data, none for a directory, a PAX `size` overriding the header's;
 * data padded to 512 bytes; all-zero blocks skipped) and numbers the real entries as tar-stream
 * emits them. For each entry whose PAX header carries `SCHILY.xattr.security.capability` (or
 * libarchive's base64 `LIBARCHIVE.xattr.security.capability`) it keeps the raw value, with the
 * entry's name to check against tar-stream's.
 *
 * Only security.capability: it is the one extended attribute layers carry for a reason (a
 * binary such as ping that needs a capability without setuid), the one tsbuild writes into the
 * layers it makes, and the one docker and BuildKit keep.
 */
export const CAPABILITY_XATTR = 'security.capability';

/** What tar-stream also refuses for a long header. */
const MAX_META = 1024 * 1024;

export interface EntryCapability {
  readonly name: string;
  readonly value: Buffer;
}

export class PaxCapabilityTap extends Transform {
  /** Entry number (0-based, as tar-stream emits entries) -> its capability. */
  readonly byEntry = new Map<number, EntryCapability>();
  #entries = 0;
  /** Bytes to pass over (entry data, padding). */
  #skip = 0;
  /** Bytes to collect: a header block, or a PAX header's data. */
  #want = 512;
  #kind: 'header' | 'pax' = 'header';
  #paxSize = 0;
  #parts: Buffer[] = [];
  #have = 0;
  /** From the last PAX 'x' header, for the next real entry. */
  #pending: { capability?: Buffer; size?: number; path?: string } | undefined;

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    try {
      this.#feed(chunk);
    } catch {
      // Not a tar this follows: tar-stream reports that; capabilities are then left out.
      this.#skip = Number.POSITIVE_INFINITY;
    }
    cb(null, chunk);
  }

  #feed(chunk: Buffer): void {
    let off = 0;
    while (off < chunk.length) {
      if (this.#skip > 0) {
        const n = Math.min(this.#skip, chunk.length - off);
        this.#skip -= n;
        off += n;
        continue;
      }
      const n = Math.min(this.#want - this.#have, chunk.length - off);
      this.#parts.push(chunk.subarray(off, off + n));
      this.#have += n;
      off += n;
      if (this.#have < this.#want) continue;
      const block = this.#parts.length === 1 ? this.#parts[0]! : Buffer.concat(this.#parts);
      this.#parts = [];
      this.#have = 0;
      if (this.#kind === 'pax') {
        this.#pending = parsePax(block);
        this.#kind = 'header';
        this.#want = 512;
        this.#skip = overflow(this.#paxSize);
      } else {
        this.#header(block);
      }
    }
  }

  #header(block: Buffer): void {
    if (block.every((b) => b === 0)) return; // end-of-archive blocks
    const flag = block[156] ?? 0;
    const size = decodeSize(block.subarray(124, 136));
    const type = flag === 0 ? '0' : String.fromCharCode(flag);
    if (type === 'x' || type === 'g' || type === 'L' || type === 'K') {
      if (size > MAX_META) throw new Error('long header');
      if (type === 'x') {
        this.#kind = 'pax';
        this.#want = size;
        this.#paxSize = size;
        if (size === 0) {
          this.#pending = {};
          this.#kind = 'header';
          this.#want = 512;
        }
      } else {
        this.#skip = size + overflow(size);
      }
      return;
    }
    const entry = this.#entries++;
    const pax = this.#pending;
    this.#pending = undefined;
    const nameField = cString(block.subarray(0, 100));
    // tar-stream joins the ustar prefix only for POSIX ustar's magic, not GNU's "ustar  ".
    const prefix = block.subarray(257, 263).toString('latin1') === 'ustar\0' ? cString(block.subarray(345, 500)) : '';
    const headerName = prefix ? `${prefix}/${nameField}` : nameField;
    const dir = type === '5' || ((type === '0' || flag === 0) && nameField.endsWith('/'));
    const dataSize = pax?.size ?? size;
    if (!dir) this.#skip = dataSize + overflow(dataSize);
    if (pax?.capability) this.byEntry.set(entry, { name: pax.path ?? headerName, value: pax.capability });
  }
}

function overflow(size: number): number {
  const r = size % 512;
  return r === 0 ? 0 : 512 - r;
}

function cString(b: Buffer): string {
  const end = b.indexOf(0);
  return b.subarray(0, end < 0 ? b.length : end).toString('utf8');
}

/** Octal, or GNU base-256 (high bit set) for big sizes. */
function decodeSize(field: Buffer): number {
  if ((field[0]! & 0x80) !== 0) {
    let v = field[0]! & 0x7f;
    for (let i = 1; i < field.length; i++) v = v * 256 + field[i]!;
    return v;
  }
  const text = field.toString('latin1').replace(/[\0 ]+$/g, '').trim();
  const v = text === '' ? 0 : parseInt(text, 8);
  if (!Number.isSafeInteger(v) || v < 0) throw new Error('bad size');
  return v;
}

/** PAX records ("LEN KEY=VALUE\n"), binary-safe: values are taken by length, not decoded. */
function parsePax(buf: Buffer): { capability?: Buffer; size?: number; path?: string } {
  const out: { capability?: Buffer; size?: number; path?: string } = {};
  let off = 0;
  while (off < buf.length) {
    const space = buf.indexOf(0x20, off);
    if (space < 0) break;
    const len = parseInt(buf.subarray(off, space).toString('latin1'), 10);
    if (!(len > 0) || off + len > buf.length) break;
    const record = buf.subarray(space + 1, off + len - 1); // without the trailing newline
    const eq = record.indexOf(0x3d);
    if (eq > 0) {
      const key = record.subarray(0, eq).toString('utf8');
      const value = record.subarray(eq + 1);
      if (key === `SCHILY.xattr.${CAPABILITY_XATTR}`) out.capability = Buffer.from(value);
      else if (key === `LIBARCHIVE.xattr.${CAPABILITY_XATTR}`) out.capability = Buffer.from(value.toString('latin1'), 'base64');
      else if (key === 'size') out.size = parseInt(value.toString('latin1'), 10);
      else if (key === 'path') out.path = value.toString('utf8');
    }
    off += len;
  }
  return out;
}
