import { createReadStream, createWriteStream } from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { fetchDispatcherInit } from '../context/index.js';
import { TsbuildError, withLocation, type SourceLocation } from '../errors.js';
import { DigestStream, isDigest } from '../oci/index.js';
import type { ArchiveKind } from './archive-sniff.js';

/** Is this a URL ADD fetches (http/https), as opposed to a context path? */
export function isRemoteSource(s: string): boolean {
  return /^https?:\/\//i.test(s);
}

/**
 * Detects the local archives ADD unpacks (reference: "Adding local tar archives"): tar,
 * optionally gzip, bzip2, xz or zstd compressed, recognised by content, never by name; a
 * compressed file that is not a tar inside is copied as it is (archive-sniff.ts).
 */
export async function archiveKind(file: string, signal?: AbortSignal): Promise<ArchiveKind | undefined> {
  // Loaded on use, like the decompressors below: most COPY and ADD steps unpack nothing.
  const { sniffArchive } = await import('./archive-sniff.js');
  return sniffArchive(file, signal);
}

/**
 * Decompresses a bzip2/xz/zstd archive with the system tool into a temp tar next to `dir`
 * (Node 20's zlib has none of them). Going through a file keeps the tool's exit status authoritative:
 * a failed decompression is an error, never a silently short tar.
 */
async function decompressToFile(file: string, kind: 'bzip2' | 'xz' | 'zstd', out: string, signal?: AbortSignal): Promise<void> {
  const tool = kind;
  // Loaded on use: every COPY loads this module, few ADD a bzip2/xz archive.
  const { spawn } = await import('node:child_process');
  const fh = await fsp.open(out, 'w', 0o600);
  try {
    await new Promise<void>((resolve, reject) => {
      const child = spawn(tool, ['-dc', file], { stdio: ['ignore', fh.fd, 'pipe'], ...(signal ? { signal } : {}) });
      let stderr = '';
      child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
      child.on('error', (e) => reject(new TsbuildError('UNSUPPORTED', `cannot run ${tool} to unpack ${path.basename(file)}: ${e.message}`, { hint: 'install it (scripts/setup does)' })));
      child.on('close', (code) => (code === 0 ? resolve() : reject(new TsbuildError('ARCHIVE_INVALID', `${tool} failed on ${path.basename(file)}: ${stderr.trim() || `exit ${code}`}`))));
    });
  } finally {
    await fh.close();
  }
}

/**
 * Unpacks a local archive into `dir` with the safe applier (no escapes from `dir`).
 * Ownership in the archive is kept when running as root, as ADD does.
 */
export async function unpackArchive(file: string, kind: ArchiveKind, dir: string, location: SourceLocation, signal?: AbortSignal, opts: { allowDevices?: boolean } = {}): Promise<void> {
  const tmpTar = `${dir}.tar`;
  try {
    await withLocation(
      location,
      async () => {
        let source = file;
        if (kind === 'bzip2' || kind === 'xz' || kind === 'zstd') {
          await decompressToFile(file, kind, tmpTar, signal);
          source = tmpTar;
        }
        const { applyLayer } = await import('../layer/index.js');
        await applyLayer(createReadStream(source), dir, { sameOwner: process.getuid?.() === 0, ...(opts.allowDevices === false ? { allowDevices: false } : {}), ...(signal ? { signal } : {}) });
      },
      { prefix: `ADD ${path.basename(file)}: ` },
    );
  } finally {
    await fsp.rm(tmpTar, { force: true });
  }
}

/**
 * ADD <url>: downloads into `dir` under the name the destination gets, checking
 * --checksum while streaming (nothing is kept when it does not match). The file gets mode
 * 0600 and the Last-Modified time, as BuildKit does. Returns the file name.
 */
export async function fetchUrl(url: string, dir: string, opts: { checksum?: string | undefined; location: SourceLocation; signal?: AbortSignal | undefined }): Promise<{ name: string; digest: string }> {
  if (opts.checksum !== undefined && !isDigest(opts.checksum)) {
    throw new TsbuildError('DOCKERFILE_INSTRUCTION', `invalid --checksum ${JSON.stringify(opts.checksum)}`, { location: opts.location, hint: 'use --checksum=sha256:<64 hex characters>' });
  }
  let res: Response;
  try {
    res = await fetch(url, { redirect: 'follow', ...(await fetchDispatcherInit()), ...(opts.signal ? { signal: opts.signal } : {}) });
  } catch (e) {
    throw new TsbuildError('FETCH_FAILED', `ADD ${url}: ${(e as Error).message}${(e as { cause?: Error }).cause ? ` (${(e as { cause: Error }).cause.message})` : ''}`, { location: opts.location });
  }
  if (!res.ok || !res.body) {
    throw new TsbuildError('FETCH_FAILED', `ADD ${url}: the server answered ${res.status} ${res.statusText}`, { location: opts.location });
  }
  const urlPath = new URL(res.url || url).pathname;
  const name = decodeURIComponent(path.posix.basename(urlPath)) || 'download';
  const safeName = name === '.' || name === '..' || name.includes('/') ? 'download' : name;
  const target = path.join(dir, safeName);
  const hasher = new DigestStream();
  try {
    await pipeline(Readable.fromWeb(res.body as import('node:stream/web').ReadableStream<Uint8Array>), hasher, createWriteStream(target, { mode: 0o600 }), opts.signal ? { signal: opts.signal } : {});
  } catch (e) {
    await fsp.rm(target, { force: true });
    throw new TsbuildError('FETCH_FAILED', `ADD ${url}: the download failed: ${(e as Error).message}`, { location: opts.location });
  }
  const got = hasher.result().digest;
  if (opts.checksum !== undefined && got !== opts.checksum) {
    await fsp.rm(target, { force: true });
    throw new TsbuildError('CHECKSUM_MISMATCH', `ADD ${url}: the content has digest ${got}, not the --checksum ${opts.checksum}`, { location: opts.location });
  }
  await fsp.chmod(target, 0o600);
  const lm = res.headers.get('last-modified');
  const t = lm ? new Date(lm) : undefined;
  if (t && !Number.isNaN(t.getTime())) await fsp.utimes(target, t, t);
  return { name: safeName, digest: got };
}
