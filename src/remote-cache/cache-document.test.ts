import { describe, expect, it } from 'vitest';
import path from 'node:path';
import { TsbuildError } from '../errors.js';
import { sha256Digest, type Digest } from '../oci/index.js';
import type { CacheKey } from '../cache/index.js';
import { CACHE_CONFIG_MEDIA_TYPE, EMPTY_CACHE, MAX_ENTRY_ALIASES, cacheManifest, formatCacheDocument, inlineCacheDocument, inlineCacheValue, mergeCacheDocument, onlyListed, parseCacheDocument, type CacheLayer } from './cache-document.js';
import { DEFAULT_MAX_AGE_SECONDS, DEFAULT_MAX_EXPORTS, parseCacheExport, parseCacheImport } from './cache-spec.js';

const key = (n: number): CacheKey => sha256Digest(`key ${n}`) as CacheKey;
const digest = (s: string): Digest => sha256Digest(s);
const layer = (n: number): CacheLayer => ({ diffId: digest(`diff ${n}`), diffSize: 100 + n, digest: digest(`blob ${n}`), size: 50 + n, mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', index: { digest: digest(`index ${n}`), size: 10 } });
const bounds = { maxExports: 3, maxAgeSeconds: 3600 };

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (e) {
    return e instanceof TsbuildError ? e.code : 'not a TsbuildError';
  }
  return undefined;
}

describe('cache document', () => {
  it('reads back what it writes, with the free-form fields kept', () => {
    const t = new Date('2026-12-06T03:00:00Z');
    const { index: _i, ...mountLayer } = layer(9);
    const npm = { id: 'npm', layer: mountLayer, exportedAt: 0, usedAt: t.toISOString() };
    const doc = mergeCacheDocument({ ...EMPTY_CACHE, explain: { note: 'x' }, mounts: [npm] }, new Map([[key(1), { layer: layer(1), inputs: { file: 'a' } }], [key(2), { layer: undefined }]]), bounds, t);
    const bytes = formatCacheDocument(doc);
    const back = parseCacheDocument(bytes, 'test').doc;
    expect(back.exports).toBe(1);
    expect(back.entries.get(key(1))).toEqual({ layer: layer(1), exportedAt: 1, usedAt: t.toISOString(), inputs: { file: 'a' } });
    expect(back.entries.get(key(2))).toEqual({ layer: undefined, exportedAt: 1, usedAt: t.toISOString() });
    expect(back.explain).toEqual({ note: 'x' });
    expect(back.mounts).toEqual([npm]);
    // The same document gives the same bytes (canonical JSON, sorted keys).
    expect(formatCacheDocument(back).equals(bytes)).toBe(true);
  });

  it("carries each entry's copy aliases: valid ones only, this export's first, gone with their entry", () => {
    const t0 = new Date('2026-12-06T03:00:00Z');
    const a = (n: number): string => digest(`alias ${n}`).slice(7);
    const first = mergeCacheDocument(EMPTY_CACHE, new Map([[key(1), { layer: layer(1), aliases: [a(1)] }], [key(2), { layer: undefined, aliases: [a(2)] }], [key(3), { layer: layer(3) }]]), bounds, t0);
    const back = parseCacheDocument(formatCacheDocument(first), 'test').doc;
    expect(back.entries.get(key(1))?.aliases).toEqual([a(1)]);
    expect(back.entries.get(key(2))?.aliases).toEqual([a(2)]);
    expect(back.entries.get(key(3))).not.toHaveProperty('aliases');
    // Another source for the same step: its alias goes first, the old one stays, at most MAX_ENTRY_ALIASES.
    const t1 = new Date('2026-12-06T03:10:00Z');
    const second = mergeCacheDocument(back, new Map([[key(1), { layer: layer(1), aliases: [a(9)] }]]), bounds, t1);
    expect(second.entries.get(key(1))?.aliases).toEqual([a(9), a(1)]);
    const many = mergeCacheDocument(second, new Map([[key(1), { layer: layer(1), aliases: Array.from({ length: 20 }, (_, i) => a(100 + i)) }]]), bounds, t1);
    expect(many.entries.get(key(1))?.aliases).toHaveLength(MAX_ENTRY_ALIASES);
    // An entry that ages out takes its aliases along.
    let doc = second;
    for (let i = 0; i < bounds.maxExports; i++) doc = mergeCacheDocument(doc, new Map([[key(1), { layer: layer(1) }]]), bounds, t1);
    expect(doc.entries.has(key(2))).toBe(false);
    expect(doc.entries.get(key(1))?.aliases).toEqual([a(9), a(1)]);
    // What is not an alias (not 64 hex digits, not a string) is dropped when read; the entry stays.
    const raw = JSON.parse(formatCacheDocument(first).toString('utf8')) as { entries: Record<string, { aliases?: unknown }> };
    raw.entries[key(1)]!.aliases = ['../x', 42, a(1).toUpperCase(), a(5)];
    expect(parseCacheDocument(Buffer.from(JSON.stringify(raw)), 'test').doc.entries.get(key(1))?.aliases).toEqual([a(5)]);
  });

  it('keeps one cache mount per id, the newest, listed in the manifest, bounded like the entries', () => {
    const t0 = Date.parse('2026-12-01T00:00:00Z');
    const m = (n: number) => {
      const { index: _i, ...l } = layer(n);
      return l;
    };
    let doc = mergeCacheDocument(EMPTY_CACHE, new Map(), bounds, new Date(t0), undefined, new Map([['npm', m(1)], ['/root/.cache/pip', m(2)]]));
    doc = mergeCacheDocument(doc, new Map(), bounds, new Date(t0 + 1000), undefined, new Map([['npm', m(3)]]));
    expect(doc.mounts?.map((x) => [x.id, x.layer.digest, x.exportedAt])).toEqual([['npm', m(3).digest, 2], ['/root/.cache/pip', m(2).digest, 1]]);
    const bytes = formatCacheDocument(doc);
    const manifest = cacheManifest(doc, bytes).manifest;
    expect(manifest.layers.map((l) => l.digest).sort()).toEqual([m(3).digest, m(2).digest].sort());
    // Read back: a mount whose blob the manifest does not list is left out (and counted).
    const back = parseCacheDocument(bytes, 'test');
    expect(back.doc.mounts?.map((x) => x.id)).toEqual(['/root/.cache/pip', 'npm']);
    const partial = onlyListed(back.doc, { ...manifest, layers: manifest.layers.filter((l) => l.digest !== m(2).digest) }, 0);
    expect(partial.doc.mounts?.map((x) => x.id)).toEqual(['npm']);
    expect(partial.dropped).toBe(1);
    // A malformed mount record (no id, a bad digest, the same id twice) is dropped, not fatal.
    const raw = JSON.parse(bytes.toString('utf8'));
    raw.mounts.push({ layer: raw.mounts[0].layer, exportedAt: 1, usedAt: raw.mounts[0].usedAt }, { ...raw.mounts[0], layer: { ...raw.mounts[0].layer, digest: 'sha256:x' } }, raw.mounts[1]);
    const bad = parseCacheDocument(Buffer.from(JSON.stringify(raw)), 'test');
    expect(bad.doc.mounts?.length).toBe(2);
    expect(bad.dropped).toBe(3);
    // maxExports 3: pip (written by export 1) goes at export 4, npm (export 2) stays.
    doc = mergeCacheDocument(doc, new Map(), bounds, new Date(t0 + 2000));
    doc = mergeCacheDocument(doc, new Map(), bounds, new Date(t0 + 3000));
    expect(doc.mounts?.map((x) => x.id)).toEqual(['npm']);
  });

  it('keeps the base layers (blob and file list) of the exported images, listed in the manifest, bounded like the entries', () => {
    const t0 = Date.parse('2026-12-01T00:00:00Z');
    const base = (n: number) => new Map([[layer(n).diffId, layer(n)]]);
    let doc = mergeCacheDocument(EMPTY_CACHE, new Map([[key(1), { layer: layer(1) }]]), bounds, new Date(t0), undefined, undefined, base(7));
    doc = mergeCacheDocument(doc, new Map(), bounds, new Date(t0 + 1000), undefined, undefined, base(8));
    const bytes = formatCacheDocument(doc);
    const manifest = cacheManifest(doc, bytes).manifest;
    // Each base layer's blob and file list are listed (the registry keeps them), once.
    for (const n of [7, 8]) expect(manifest.layers.map((l) => l.digest)).toEqual(expect.arrayContaining([layer(n).digest, layer(n).index!.digest]));
    expect(new Set(manifest.layers.map((l) => l.digest)).size).toBe(manifest.layers.length);
    const back = parseCacheDocument(bytes, 'test');
    expect(back.dropped).toBe(0);
    expect(back.doc.baseLayers?.map((b) => [b.layer, b.exportedAt])).toEqual(
      [
        [layer(7), 1],
        [layer(8), 2],
      ].sort((a, b) => ((a[0] as CacheLayer).diffId < (b[0] as CacheLayer).diffId ? -1 : 1)),
    );
    expect(formatCacheDocument(back.doc).equals(bytes)).toBe(true);
    // One whose blob the manifest does not list is left out; one whose file list it does not list loses the list.
    const partial = onlyListed(back.doc, { ...manifest, layers: manifest.layers.filter((l) => l.digest !== layer(7).digest && l.digest !== layer(8).index!.digest) }, 0);
    expect(partial.doc.baseLayers?.map((b) => b.layer)).toEqual([{ ...layer(8), index: undefined }]);
    expect(partial.dropped).toBe(1);
    // Malformed records, or the same diff ID twice, are dropped, not fatal.
    const raw = JSON.parse(bytes.toString('utf8'));
    raw.baseLayers.push({ layer: { ...raw.baseLayers[0].layer, digest: 'sha256:x' }, exportedAt: 1, usedAt: raw.baseLayers[0].usedAt }, raw.baseLayers[1], 'x');
    const bad = parseCacheDocument(Buffer.from(JSON.stringify(raw)), 'test');
    expect(bad.doc.baseLayers?.length).toBe(2);
    expect(bad.dropped).toBe(3);
    // maxExports 3: base 7 (export 1) goes at export 4 unless an export writes it again.
    doc = mergeCacheDocument(doc, new Map(), bounds, new Date(t0 + 2000));
    doc = mergeCacheDocument(doc, new Map(), bounds, new Date(t0 + 3000));
    expect(doc.baseLayers?.map((b) => b.layer.diffId)).toEqual([layer(8).diffId]);
  });

  it('drops entries no export of the last N wrote, and entries older than the max age', () => {
    let doc = EMPTY_CACHE;
    const t0 = Date.parse('2026-12-01T00:00:00Z');
    doc = mergeCacheDocument(doc, new Map([[key(1), { layer: layer(1) }]]), bounds, new Date(t0));
    doc = mergeCacheDocument(doc, new Map([[key(2), { layer: layer(2) }]]), bounds, new Date(t0 + 1000));
    doc = mergeCacheDocument(doc, new Map([[key(3), { layer: layer(3) }]]), bounds, new Date(t0 + 2000));
    expect([...doc.entries.keys()].sort()).toEqual([key(1), key(2), key(3)].sort());
    // The fourth export: key 1 was last written 3 exports ago (maxExports 3), so it goes.
    doc = mergeCacheDocument(doc, new Map([[key(2), { layer: layer(2) }]]), bounds, new Date(t0 + 3000));
    expect([...doc.entries.keys()].sort()).toEqual([key(2), key(3)].sort());
    expect(doc.entries.get(key(2))?.exportedAt).toBe(4);
    // Two hours later (max age one hour): only what this export writes is left.
    doc = mergeCacheDocument(doc, new Map([[key(4), { layer: undefined }]]), bounds, new Date(t0 + 2 * 3600_000));
    expect([...doc.entries.keys()]).toEqual([key(4)]);
  });

  it('lists each blob and file list once as the manifest layers, with the document as config', () => {
    const shared = layer(1);
    const doc = mergeCacheDocument(EMPTY_CACHE, new Map([[key(1), { layer: shared }], [key(2), { layer: shared }], [key(3), { layer: undefined }]]), bounds, new Date());
    const bytes = formatCacheDocument(doc);
    const m = cacheManifest(doc, bytes);
    expect(m.manifest.config).toEqual({ mediaType: CACHE_CONFIG_MEDIA_TYPE, digest: sha256Digest(bytes), size: bytes.byteLength });
    expect(m.manifest.layers.map((l) => l.digest)).toEqual([shared.digest, shared.index!.digest]);
    expect(m.digest).toBe(sha256Digest(m.bytes));
  });

  it('refuses what is not a cache document, and leaves out malformed entries and unlisted blobs', () => {
    expect(codeOf(() => parseCacheDocument(Buffer.from('not json'), 'x'))).toBe('MANIFEST_INVALID');
    expect(codeOf(() => parseCacheDocument(Buffer.from('{"architecture":"amd64"}'), 'x'))).toBe('MANIFEST_INVALID');
    expect(codeOf(() => parseCacheDocument(Buffer.from(JSON.stringify({ mediaType: CACHE_CONFIG_MEDIA_TYPE, keyScheme: 'other', exports: 1, entries: {} })), 'x'))).toBe('MANIFEST_INVALID');
    const good = JSON.parse(formatCacheDocument(mergeCacheDocument(EMPTY_CACHE, new Map([[key(1), { layer: layer(1) }], [key(2), { layer: layer(2) }]]), bounds, new Date())).toString()) as { entries: Record<string, unknown> };
    good.entries['not-a-key'] = { empty: true, exportedAt: 1, usedAt: new Date().toISOString() };
    good.entries[key(3)] = { layers: [{ diffId: 'sha256:short' }], exportedAt: 1, usedAt: new Date().toISOString() };
    const { doc, dropped } = parseCacheDocument(Buffer.from(JSON.stringify(good)), 'x');
    expect(dropped).toBe(2);
    expect(doc.entries.size).toBe(2);
    // Layer 2's blob is not in the manifest: its entry goes; layer 1's index is not: it is forgotten.
    const listed = onlyListed(doc, { schemaVersion: 2, config: { mediaType: CACHE_CONFIG_MEDIA_TYPE, digest: digest('c'), size: 1 }, layers: [{ mediaType: 'x', digest: layer(1).digest, size: 51 }] }, 0);
    expect(listed.dropped).toBe(1);
    expect(listed.doc.entries.get(key(1))?.layer?.index).toBeUndefined();
    expect(listed.doc.entries.has(key(2))).toBe(false);
  });

  it('inline: keys by layer position in the image, read back against the manifest', () => {
    const diffIds = [digest('base'), layer(1).diffId, layer(2).diffId];
    const value = inlineCacheValue(new Map([[key(1), { diffId: layer(1).diffId, size: 101 }], [key(2), undefined], [key(9), { diffId: digest('elsewhere'), size: 1 }]]), diffIds);
    expect(value.entries).toEqual({ [key(1)]: { layer: 1, size: 101 }, [key(2)]: { empty: true } });
    const layers = diffIds.map((_, i) => ({ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: digest(`wire ${i}`), size: 10 + i }));
    const { doc } = inlineCacheDocument({ rootfs: { type: 'layers', diff_ids: diffIds }, 'tsbuild.cache.v1': value }, layers, 'img');
    expect(doc.entries.get(key(1))?.layer).toEqual({ diffId: layer(1).diffId, diffSize: 101, digest: digest('wire 1'), size: 11, mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip' });
    expect(codeOf(() => inlineCacheDocument({ rootfs: { diff_ids: [] } }, [], 'img'))).toBe('MANIFEST_INVALID');
  });
});

describe('--cache-from / --cache-to values', () => {
  const cwd = '/work';
  it('reads buildx grammar', () => {
    expect(parseCacheImport('reg.example/app:cache', cwd)).toEqual({ type: 'registry', ref: 'reg.example/app:cache' });
    expect(parseCacheImport('type=local,src=cache', cwd)).toEqual({ type: 'local', src: path.join(cwd, 'cache') });
    expect(parseCacheExport('type=registry,ref=r/app:c,mode=max,ignore-error=true,max-exports=5,max-age=1d12h', cwd)).toEqual({
      type: 'registry', ref: 'r/app:c', mode: 'max', ignoreError: true, compression: 'gzip', maxExports: 5, maxAgeSeconds: 36 * 3600,
    });
    expect(parseCacheExport('type=local,dest=/c', cwd)).toEqual({ type: 'local', dest: '/c', mode: 'min', ignoreError: false, compression: 'gzip', maxExports: DEFAULT_MAX_EXPORTS, maxAgeSeconds: DEFAULT_MAX_AGE_SECONDS });
    expect(parseCacheExport('type=inline', cwd)).toEqual({ type: 'inline', mode: 'min', ignoreError: false });
  });

  it('reads mounts=all and mounts=ID[,ID...] (bare or quoted list), before or after other fields', () => {
    expect(parseCacheExport('type=registry,ref=r/a,mounts=all', cwd)).toMatchObject({ mounts: 'all' });
    expect(parseCacheExport('type=local,dest=/c,mounts=npm,/root/.cache/pip,mode=max', cwd)).toMatchObject({ mounts: ['npm', '/root/.cache/pip'], mode: 'max' });
    expect(parseCacheExport('type=registry,"mounts=npm,go",ref=r/a', cwd)).toMatchObject({ mounts: ['npm', 'go'], ref: 'r/a' });
    expect(parseCacheExport('type=registry,ref=r/a', cwd)).not.toHaveProperty('mounts');
  });

  it('names mistakes: usage errors, and unsupported backends', () => {
    for (const [spec, code] of [
      ['type=registry', 'USAGE'],
      ['type=local', 'USAGE'],
      ['type=registry,ref=r/a,mode=all', 'USAGE'],
      ['type=registry,ref=r/a,max-age=soon', 'USAGE'],
      ['type=registry,ref=r/a,max-exports=0', 'USAGE'],
      ['type=registry,ref=r/a,colour=blue', 'USAGE'],
      ['type=registry,ref=r/a,ref=r/b', 'USAGE'],
      ['type=bogus', 'USAGE'],
      ['type=gha', 'UNSUPPORTED'],
      ['type=s3,bucket=b', 'UNSUPPORTED'],
      ['type=inline,mounts=all', 'USAGE'],
      ['type=registry,ref=r/a,mounts=', 'USAGE'],
      ['type=registry,ref=r/a,mounts=npm,all', 'USAGE'],
      ['type=local,dest=/c,mounts=a\tb', 'USAGE'],
    ] as const) {
      expect(codeOf(() => parseCacheExport(spec, cwd)), spec).toBe(code);
    }
    expect(codeOf(() => parseCacheImport('type=inline', cwd))).toBe('USAGE');
    expect(codeOf(() => parseCacheImport('', cwd))).toBe('USAGE');
  });
});
