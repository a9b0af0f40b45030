import { lstatSync } from 'node:fs';
import { lstat, mkdir, mkdtemp, readFile, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { sha256Digest } from '../oci/index.js';
import { openStore, type Store } from '../store/index.js';
import { FileDigests, RACY_MS, statIndexMetaName, statKey } from './file-digests.js';

let dir: string;
let store: Store;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'tsbuild-filedigests-'));
  store = await openStore(join(dir, 'root'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Long enough after the files were written that none of them is racy (RACY_MS). */
const later = (): { now: number } => ({ now: Date.now() + RACY_MS + 1000 });

const storedRecords = async (ctx: string): Promise<string[]> => {
  const doc = JSON.parse(await readFile(join(store.root, 'meta', `${statIndexMetaName(ctx)}.json`), 'utf8')) as { v: number; records: string[] };
  expect(doc.v).toBe(2);
  return doc.records;
};

describe('FileDigests', () => {
  it("saves this build's records first in the order used, then the stored ones it did not use, merged with what another build saved", async () => {
    const ctx = join(dir, 'ctx');
    await mkdir(ctx);
    for (const n of ['a', 'b', 'c']) await writeFile(join(ctx, n), n);
    const meta = statIndexMetaName(ctx);
    // Written by "another build" after this one loaded the (then empty) index.
    const digests = new FileDigests(store, ctx, later());
    await digests.ready();
    await store.writeMeta(meta, { v: 2, records: ['b', 'stale', sha256Digest('old'), 'gone', 'stale', sha256Digest('old')] });
    for (const n of ['c', 'a', 'b']) digests.learn(join(ctx, n), await lstat(join(ctx, n), { bigint: true }), sha256Digest(n));
    digests.learn(join(dir, 'outside'), await lstat(ctx, { bigint: true }), sha256Digest('x')); // not under the context
    await digests.save();

    const records = await storedRecords(ctx);
    const paths = records.filter((_, i) => i % 3 === 0);
    expect(paths).toEqual(['c', 'a', 'b', 'gone']);
    expect(records.slice(9)).toEqual(['gone', 'stale', sha256Digest('old')]);
    expect(records[8]).toBe(sha256Digest('b'));

    // A later build answers from it without reading the files, with plain or bigint stats.
    const next = new FileDigests(store, ctx, later());
    for (const n of ['a', 'b']) expect(await next.digestOf(join(ctx, n), await lstat(join(ctx, n), { bigint: true }))).toBe(sha256Digest(n));
    expect(await next.digestOf(join(ctx, 'c'), await lstat(join(ctx, 'c')))).toBe(sha256Digest('c'));
    expect(next.hashedFiles).toBe(0);
  });

  it('digestsOf: every file in order, only the ones the index does not know (or that changed) read', async () => {
    const ctx = join(dir, 'ctx');
    await mkdir(ctx);
    const names = Array.from({ length: 40 }, (_, i) => `f${i}`);
    for (const n of names) await writeFile(join(ctx, n), n);
    const files = names.map((n) => ({ srcAbs: join(ctx, n) }));
    const first = new FileDigests(store, ctx, later());
    expect(await first.digestsOf(files, { concurrency: 3 })).toEqual(names.map((n) => sha256Digest(n)));
    expect(first.hashedFiles).toBe(40);
    await first.save();

    await writeFile(join(ctx, 'f7'), 'changed');
    const next = new FileDigests(store, ctx, later());
    // The stat data may come with a file (from the walk that planned it): it is not taken again.
    const withStat = files.map((f) => ({ ...f, srcStat: statKey(lstatSync(f.srcAbs)) }));
    expect(await next.digestsOf(withStat, { concurrency: 3 })).toEqual(names.map((n) => sha256Digest(n === 'f7' ? 'changed' : n)));
    expect(next.hashedFiles).toBe(1);
    await expect(next.digestsOf([{ srcAbs: join(ctx, 'missing') }], { concurrency: 3 })).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('reads a file again whose content changed with size and mtime kept (the ctime tells)', async () => {
    const ctx = join(dir, 'ctx');
    await mkdir(ctx);
    const f = join(ctx, 'f');
    await writeFile(f, 'aaaa');
    await utimes(f, 1_700_000_000, 1_700_000_000);
    const first = new FileDigests(store, ctx, later());
    const before = await lstat(f);
    expect(await first.digestOf(f, before)).toBe(sha256Digest('aaaa'));
    await first.save();
    await new Promise((r) => setTimeout(r, 20)); // a later ctime than the first write's, on any kernel tick
    await writeFile(f, 'bbbb');
    await utimes(f, 1_700_000_000, 1_700_000_000);
    const after = await lstat(f);
    expect(after.mtimeMs).toBe(before.mtimeMs);
    expect(after.size).toBe(before.size);
    const next = new FileDigests(store, ctx, later());
    expect(await next.digestOf(f, after)).toBe(sha256Digest('bbbb'));
    expect(next.hashedFiles).toBe(1);
  });

  it('does not keep a record of a file changed just before the build (racily clean): the next build reads it again', async () => {
    const ctx = join(dir, 'ctx');
    await mkdir(ctx);
    const f = join(ctx, 'new');
    await writeFile(f, 'new');
    // The build started right after the file's last change: within the same clock tick, a
    // same-size rewrite could leave every stat field as it is.
    const first = new FileDigests(store, ctx, { now: (await lstat(f)).ctimeMs + 1 });
    expect(await first.digestsOf([{ srcAbs: f }], { concurrency: 2 })).toEqual([sha256Digest('new')]);
    await first.save();
    expect(await store.readMeta(statIndexMetaName(ctx))).toBeUndefined();

    const next = new FileDigests(store, ctx, later());
    expect(await next.digestsOf([{ srcAbs: f }], { concurrency: 2 })).toEqual([sha256Digest('new')]);
    expect(next.hashedFiles).toBe(1);
    await next.save();
    expect(await storedRecords(ctx)).toEqual(['new', statKey(await lstat(f)), sha256Digest('new')]);
  });

  it('statKey: the same key from plain and bigint stats, a different one after a write', async () => {
    const f = join(dir, 'f');
    await writeFile(f, 'x');
    expect(statKey(lstatSync(f))).toBe(statKey(lstatSync(f, { bigint: true })));
    const k = statKey(lstatSync(f));
    await new Promise((r) => setTimeout(r, 20));
    await writeFile(f, 'y');
    expect(statKey(lstatSync(f, { bigint: true }))).not.toBe(k);
  });
});
