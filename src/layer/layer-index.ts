import type { Readable } from 'node:stream';
import type { Extract } from 'tar-stream';
import { TsbuildError } from '../errors.js';

/**
 * Metadata of one tar entry of a layer, as kept in the layer index (no content).
 * Paths are relative, slash-separated, without leading "/" or "./" and without a trailing "/".
 */
export interface IndexedEntry {
  readonly path: string;
  readonly type: 'file' | 'dir' | 'symlink' | 'hardlink' | 'other';
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
  readonly mtime: number;
  readonly size: number;
  readonly linkTarget?: string;
}

/** Everything a merged view needs to know about one layer. */
export interface LayerIndex {
  readonly entries: readonly IndexedEntry[];
  /** Paths removed by `.wh.NAME` entries (the NAME paths, not the marker paths). */
  readonly whiteouts: readonly string[];
  /** Directories made opaque by `.wh..wh..opq`. */
  readonly opaqueDirs: readonly string[];
}

const WHITEOUT_PREFIX = '.wh.';
const OPAQUE = '.wh..wh..opq';

/** "./a/b/" -> "a/b"; "" for the root. */
function cleanTarPath(name: string): string {
  const parts: string[] = [];
  for (const p of name.split('/')) {
    if (p === '' || p === '.') continue;
    if (p === '..') parts.pop();
    else parts.push(p);
  }
  return parts.join('/');
}

function entryType(t: string | null | undefined): IndexedEntry['type'] {
  switch (t) {
    case 'file':
    case 'contiguous-file':
      return 'file';
    case 'directory':
      return 'dir';
    case 'symlink':
      return 'symlink';
    case 'link':
      return 'hardlink';
    default:
      return 'other';
  }
}

/**
 * Reads an uncompressed layer tar once and returns its index: entries, whiteouts and
 * opaque directories (OCI image-spec layer.md "Whiteouts"). Content is skipped, not kept.
 */
export async function indexLayer(tar: Readable, opts: { signal?: AbortSignal | undefined } = {}): Promise<LayerIndex> {
  const entries: IndexedEntry[] = [];
  const whiteouts: string[] = [];
  const opaqueDirs: string[] = [];
  const ex = await extractFrom(tar);
  try {
    for await (const entry of ex) {
      opts.signal?.throwIfAborted();
      const h = entry.header;
      const p = cleanTarPath(h.name);
      const base = p.slice(p.lastIndexOf('/') + 1);
      const dir = p.includes('/') ? p.slice(0, p.lastIndexOf('/')) : '';
      if (base === OPAQUE) opaqueDirs.push(dir);
      else if (base.startsWith(WHITEOUT_PREFIX)) whiteouts.push(dir === '' ? base.slice(WHITEOUT_PREFIX.length) : `${dir}/${base.slice(WHITEOUT_PREFIX.length)}`);
      else if (p !== '') {
        const type = entryType(h.type);
        entries.push({
          path: p,
          type,
          mode: (h.mode ?? 0) & 0o7777,
          uid: h.uid ?? 0,
          gid: h.gid ?? 0,
          mtime: h.mtime ? h.mtime.getTime() / 1000 : 0,
          size: h.size ?? 0,
          ...(type === 'symlink' ? { linkTarget: h.linkname ?? '' } : type === 'hardlink' ? { linkTarget: cleanTarPath(h.linkname ?? '') } : {}),
        });
      }
      entry.resume();
    }
  } catch (e) {
    if ((e as { name?: string }).name === 'AbortError') throw e;
    throw new TsbuildError('LAYER_INVALID', `cannot read layer: ${(e as Error).message}`, { cause: e });
  }
  return { entries, whiteouts, opaqueDirs };
}

/**
 * The content of one regular file of an uncompressed layer tar, or undefined when the layer
 * has no such file. A hard link is followed to its target within the layer, which needs a
 * second read when the target came first (tar links always point backwards), hence `open`.
 * Capped at maxBytes.
 */
export async function readLayerFile(open: () => Readable | Promise<Readable>, filePath: string, maxBytes: number): Promise<Buffer | undefined> {
  const want = cleanTarPath(filePath);
  const first = await scanFor(await open(), want, maxBytes);
  if (first.kind === 'content') return first.content;
  if (first.kind === 'link') {
    const second = await scanFor(await open(), first.target, maxBytes);
    return second.kind === 'content' ? second.content : undefined;
  }
  return undefined;
}

type Scan = { kind: 'content'; content: Buffer } | { kind: 'link'; target: string } | { kind: 'none' };

/**
 * A tar-stream extractor fed by `tar`. tar-stream loads when a layer is first read (a cached
 * build reads layer indexes from meta/ instead); an error of `tar` while it loads is kept.
 */
async function extractFrom(tar: Readable): Promise<Extract> {
  let early: Error | undefined;
  const hold = (e: Error): void => {
    early ??= e;
  };
  tar.on('error', hold);
  const ex = (await import('tar-stream')).extract();
  tar.off('error', hold);
  tar.on('error', (e) => ex.destroy(e));
  if (early) ex.destroy(early);
  tar.pipe(ex as unknown as NodeJS.WritableStream);
  return ex;
}

async function scanFor(tar: Readable, want: string, maxBytes: number): Promise<Scan> {
  const ex = await extractFrom(tar);
  let result: Scan = { kind: 'none' };
  for await (const entry of ex) {
    const p = cleanTarPath(entry.header.name);
    if (p === want && entry.header.type === 'link') {
      result = { kind: 'link', target: cleanTarPath(entry.header.linkname ?? '') };
    } else if (p === want && (entry.header.type === 'file' || entry.header.type === 'contiguous-file')) {
      if ((entry.header.size ?? 0) > maxBytes) throw new TsbuildError('LAYER_INVALID', `${want} in the layer is larger than ${maxBytes} bytes`);
      const chunks: Buffer[] = [];
      for await (const c of entry) chunks.push(c as Buffer);
      result = { kind: 'content', content: Buffer.concat(chunks) };
      continue;
    } else if (p === want) {
      result = { kind: 'none' };
    }
    entry.resume();
  }
  return result;
}
