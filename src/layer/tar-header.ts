/**
 * Byte-exact tar header encoding for the layer writer: POSIX ustar headers, with a PAX
 * extended header ('x') in front when a field does not fit ustar.
 *
 * Why our own encoder and not tar-stream's pack: tar-stream 3 replaces mode 0 with 0644,
 * truncates uid/gid above 0o7777777 to all sevens, writes sizes over 8 GiB in the GNU base-256
 * form, and gives no control over PAX records (uid, gid, size, uname, mtime). Layers must be
 * byte-for-byte reproducible, so every byte is decided here. Reading still uses tar-stream.
 *
 * Spec: POSIX.1-2008 pax, https://pubs.opengroup.org/onlinepubs/9699919799/utilities/pax.html
 * (ustar header block and extended header records). Layout follows Go's archive/tar in PAX
 * format, which is what docker and containerd write.
 */

import { nameBytes } from '../oci/index.js';

export const BLOCK = 512;

/** The typeflags we write (ustar: '0' file, '1' hard link, '2' symlink, ...). */
export type TypeFlag = '0' | '1' | '2' | '3' | '4' | '5' | '6';

export interface RawHeader {
  /** Name as it goes into the tar (directories end with '/'). */
  readonly name: string;
  readonly typeflag: TypeFlag;
  /** Permission bits only (07777). */
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
  readonly size: number;
  /** Whole seconds since the epoch, >= 0. */
  readonly mtime: number;
  readonly linkname: string;
  readonly uname: string;
  readonly gname: string;
  readonly devmajor: number;
  readonly devminor: number;
  /** Extra PAX records (e.g. SCHILY.xattr.*), written in key order. */
  readonly extraPax?: ReadonlyMap<string, Buffer>;
}

const MAX_OCT7 = 0o7777777; // 8-byte fields: 7 octal digits + NUL
const MAX_OCT11 = 0o77777777777; // 12-byte fields: 11 octal digits + NUL (8 GiB - 1)

// eslint-disable-next-line no-control-regex
const ASCII_RE = /^[\x01-\x7f]*$/;

function fitsString(s: string, max: number): boolean {
  return ASCII_RE.test(s) && Buffer.byteLength(s) <= max;
}

function writeOctal(buf: Buffer, off: number, width: number, value: number): void {
  // width includes the trailing NUL
  const s = Math.trunc(value).toString(8).padStart(width - 1, '0');
  buf.write(s, off, width - 1, 'ascii');
  buf[off + width - 1] = 0;
}

function paxRecord(key: string, value: Buffer): Buffer {
  const body = Buffer.concat([Buffer.from(` ${key}=`, 'utf8'), value, Buffer.from('\n')]);
  let len = body.length + String(body.length).length;
  if (String(len).length !== String(body.length).length) len = body.length + String(len).length;
  return Buffer.concat([Buffer.from(String(len), 'ascii'), body]);
}

/** The ustar block; fields that do not fit are written as 0 / truncated (PAX carries them). */
function ustarBlock(h: {
  name: string;
  typeflag: TypeFlag | 'x';
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: number;
  linkname: string;
  uname: string;
  gname: string;
  devmajor: number;
  devminor: number;
}): Buffer {
  const buf = Buffer.alloc(BLOCK);
  buf.write(h.name, 0, 100, 'utf8');
  writeOctal(buf, 100, 8, h.mode & 0o7777);
  writeOctal(buf, 108, 8, h.uid <= MAX_OCT7 ? h.uid : 0);
  writeOctal(buf, 116, 8, h.gid <= MAX_OCT7 ? h.gid : 0);
  writeOctal(buf, 124, 12, h.size <= MAX_OCT11 ? h.size : 0);
  writeOctal(buf, 136, 12, h.mtime <= MAX_OCT11 ? h.mtime : 0);
  buf.fill(0x20, 148, 156); // checksum computed with spaces
  buf.write(h.typeflag, 156, 1, 'ascii');
  buf.write(h.linkname, 157, 100, 'utf8');
  buf.write('ustar\u000000', 257, 8, 'ascii');
  buf.write(h.uname, 265, 32, 'utf8');
  buf.write(h.gname, 297, 32, 'utf8');
  writeOctal(buf, 329, 8, h.devmajor <= MAX_OCT7 ? h.devmajor : 0);
  writeOctal(buf, 337, 8, h.devminor <= MAX_OCT7 ? h.devminor : 0);
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += buf[i] ?? 0;
  // "%06o\0 " as GNU tar and Go write it
  buf.write(sum.toString(8).padStart(6, '0'), 148, 6, 'ascii');
  buf[154] = 0;
  buf[155] = 0x20;
  return buf;
}

/** Zero bytes that pad `size` up to a whole block. */
/** Zeros shared by every padding (never written to). */
const ZEROS = Buffer.alloc(BLOCK);

export function padding(size: number): Buffer {
  const rest = size % BLOCK;
  return ZEROS.subarray(0, rest === 0 ? 0 : BLOCK - rest);
}

/**
 * The header blocks for one entry: a PAX extended header (header + records + padding) when
 * needed, then the ustar header. The PAX header's own name mirrors Go's
 * (`dir/PaxHeaders.0/base`, ASCII only, cut to 100 bytes) and has mode 0, owner 0, mtime 0.
 */
export function encodeHeader(h: RawHeader): Buffer {
  const records = new Map<string, Buffer>();
  // A name that is not valid UTF-8 (held escaped, oci/byte-names.ts) goes into `path` as its
  // raw bytes, as Go's archive/tar writes it (its PAX writer checks path and linkpath for NUL
  // only); Go and GNU tar read such a record back byte for byte.
  if (!fitsString(h.name, 100)) records.set('path', nameBytes(h.name));
  if (!fitsString(h.linkname, 100)) records.set('linkpath', nameBytes(h.linkname));
  if (h.size > MAX_OCT11) records.set('size', Buffer.from(String(h.size)));
  if (h.uid > MAX_OCT7) records.set('uid', Buffer.from(String(h.uid)));
  if (h.gid > MAX_OCT7) records.set('gid', Buffer.from(String(h.gid)));
  if (h.mtime > MAX_OCT11) records.set('mtime', Buffer.from(String(h.mtime)));
  if (!fitsString(h.uname, 32)) records.set('uname', Buffer.from(h.uname, 'utf8'));
  if (!fitsString(h.gname, 32)) records.set('gname', Buffer.from(h.gname, 'utf8'));
  if (h.extraPax) {
    for (const key of [...h.extraPax.keys()].sort()) records.set(key, h.extraPax.get(key) ?? Buffer.alloc(0));
  }
  const main = ustarBlock({
    ...h,
    name: fitsString(h.name, 100) ? h.name : asciiCut(h.name, 100),
    linkname: fitsString(h.linkname, 100) ? h.linkname : asciiCut(h.linkname, 100),
    uname: fitsString(h.uname, 32) ? h.uname : '',
    gname: fitsString(h.gname, 32) ? h.gname : '',
  });
  if (records.size === 0) return main;
  const data = Buffer.concat([...records].map(([k, v]) => paxRecord(k, v)));
  const trimmed = h.name.endsWith('/') ? h.name.slice(0, -1) : h.name;
  const slash = trimmed.lastIndexOf('/');
  const paxName = asciiCut(slash < 0 ? `PaxHeaders.0/${trimmed}` : `${trimmed.slice(0, slash)}/PaxHeaders.0/${trimmed.slice(slash + 1)}`, 100);
  const pax = ustarBlock({
    name: paxName,
    typeflag: 'x',
    mode: 0,
    uid: 0,
    gid: 0,
    size: data.length,
    mtime: 0,
    linkname: '',
    uname: '',
    gname: '',
    devmajor: 0,
    devminor: 0,
  });
  return Buffer.concat([pax, data, padding(data.length), main]);
}

/** Replace non-ASCII characters with '_' and cut to `max` bytes (fallback names only). */
function asciiCut(s: string, max: number): string {
  // eslint-disable-next-line no-control-regex
  return s.replace(/[^\x01-\x7f]/g, '_').slice(0, max);
}

/** The end-of-archive marker: two zero blocks (what Go's tar writer and docker emit). */
export const END_OF_ARCHIVE: Buffer = Buffer.alloc(2 * BLOCK);
