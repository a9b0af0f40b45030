import { spawn } from 'node:child_process';
import { createReadStream } from 'node:fs';
import fsp from 'node:fs/promises';
import { createGunzip } from 'node:zlib';
import type { Readable } from 'node:stream';
import { fsPath } from '../oci/index.js';

/** The local archives ADD unpacks: a tar, plain or compressed with one of these. */
export type ArchiveKind = 'tar' | 'gzip' | 'bzip2' | 'xz' | 'zstd';

const TAR_BLOCK = 512;

/** The compression a file's first bytes announce (the magic numbers docker's DecompressStream knows). */
export function compressionOf(head: Buffer): Exclude<ArchiveKind, 'tar'> | undefined {
  if (head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b) return 'gzip';
  if (head.length >= 3 && head.subarray(0, 3).toString('latin1') === 'BZh') return 'bzip2';
  if (head.length >= 6 && head.subarray(0, 6).equals(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]))) return 'xz';
  if (head.length >= 4 && head.subarray(0, 4).equals(Buffer.from([0x28, 0xb5, 0x2f, 0xfd]))) return 'zstd';
  return undefined;
}

/**
 * Is `block` the first header of a tar that Go's archive/tar reads (what BuildKit's
 * IsArchivePath asks: `tar.NewReader(r).Next()` succeeds)? A full 512-byte block, not all
 * zeros, whose checksum field matches the unsigned or signed sum of the block with that field
 * read as spaces. Any format passes (v7, ustar, GNU, PAX): Go's reader checks no magic.
 */
export function isTarHeader(block: Buffer): boolean {
  if (block.length < TAR_BLOCK) return false;
  const b = block.subarray(0, TAR_BLOCK);
  if (b.every((x) => x === 0)) return false;
  const field = b.subarray(148, 156).toString('latin1').replace(/[\0 ]+$/, '').replace(/^[\0 ]+/, '');
  if (!/^[0-7]+$/.test(field)) return false;
  const stored = parseInt(field, 8);
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < TAR_BLOCK; i++) {
    const c = i >= 148 && i < 156 ? 0x20 : b[i]!;
    unsigned += c;
    signed += c > 127 ? c - 256 : c;
  }
  return stored === unsigned || stored === signed;
}

/**
 * What ADD does with a local file, decided by content as BuildKit does (docker's
 * IsArchivePath: decompress if compressed, then read one tar header): the archive kind when
 * the (decompressed) content starts with a valid tar header, undefined when the file is to be
 * copied as it is. So `note.txt.gz` (gzip of text) is copied, not unpacked, and a corrupt or
 * truncated compressed file is copied too, as BuildKit copies it.
 * https://docs.docker.com/reference/dockerfile/#adding-local-tar-archives
 */
export async function sniffArchive(file: string, signal?: AbortSignal): Promise<ArchiveKind | undefined> {
  const head = await readHead(file);
  const compression = compressionOf(head);
  if (compression === undefined) return isTarHeader(head) ? 'tar' : undefined;
  const first = await firstDecompressedBlock(file, compression, signal);
  signal?.throwIfAborted(); // a killed decompressor is not a verdict on the file
  if (first === 'no-tool') return compression; // unpacking then says which tool is missing
  return first !== undefined && isTarHeader(first) ? compression : undefined;
}

async function readHead(file: string): Promise<Buffer> {
  const h = await fsp.open(fsPath(file), 'r');
  try {
    const buf = Buffer.alloc(TAR_BLOCK);
    const { bytesRead } = await h.read(buf, 0, TAR_BLOCK, 0);
    return buf.subarray(0, bytesRead);
  } finally {
    await h.close();
  }
}

/**
 * The first 512 decompressed bytes (fewer when the content is shorter), undefined when the
 * data does not decompress, 'no-tool' when the system tool for bzip2/xz/zstd is missing.
 * Only the head is decompressed: the stream is stopped once a block is in.
 */
async function firstDecompressedBlock(file: string, kind: Exclude<ArchiveKind, 'tar'>, signal?: AbortSignal): Promise<Buffer | undefined | 'no-tool'> {
  if (kind === 'gzip') {
    const src = createReadStream(fsPath(file));
    const gunzip = createGunzip();
    src.pipe(gunzip);
    try {
      return await readUpTo(gunzip, TAR_BLOCK);
    } finally {
      src.destroy();
      gunzip.destroy();
    }
  }
  const child = spawn(kind, ['-dc', file], { stdio: ['ignore', 'pipe', 'ignore'], ...(signal ? { signal } : {}) });
  const failed = new Promise<'no-tool'>((resolve) => child.on('error', () => resolve('no-tool')));
  try {
    return await Promise.race([readUpTo(child.stdout, TAR_BLOCK), failed]);
  } finally {
    child.stdout.destroy();
    if (child.exitCode === null) child.kill();
  }
}

/** Reads up to `n` bytes; undefined when the stream fails before giving `n` bytes or ending. */
function readUpTo(stream: Readable, n: number): Promise<Buffer | undefined> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const done = (v: Buffer | undefined) => {
      stream.removeAllListeners('data');
      resolve(v);
    };
    stream.on('data', (d: Buffer) => {
      chunks.push(d);
      size += d.length;
      if (size >= n) done(Buffer.concat(chunks).subarray(0, n));
    });
    stream.once('end', () => done(Buffer.concat(chunks)));
    stream.on('error', () => done(size >= n ? Buffer.concat(chunks).subarray(0, n) : undefined));
  });
}
