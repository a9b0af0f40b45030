import { lstat, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { sha256Digest } from '../oci/index.js';
import { openStore, type Store } from '../store/index.js';
import { FileDigests, statIndexMetaName } from './file-digests.js';

let dir: string;
let store: Store;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'tsbuild-filedigests-'));
  store = await openStore(join(dir, 'root'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('FileDigests', () => {
  it('saves what it learnt merged into the index on disk, records already there keeping their place', async () => {
    const ctx = join(dir, 'ctx');
    await mkdir(ctx);
    for (const n of ['a', 'b', 'c']) await writeFile(join(ctx, n), n);
    const meta = statIndexMetaName(ctx);
    const old = { k: 'stale', d: sha256Digest('old') };
    // Written by "another build" after this one loaded the (then empty) index.
    const digests = new FileDigests(store, ctx);
    await digests.ready();
    await store.writeMeta(meta, { [join(ctx, 'b')]: old, [join(ctx, 'gone')]: old });
    for (const n of ['a', 'b', 'c']) digests.learn(join(ctx, n), await lstat(join(ctx, n), { bigint: true }), sha256Digest(n));
    digests.learn(join(dir, 'outside'), await lstat(ctx, { bigint: true }), sha256Digest('x')); // not under the context
    await digests.save();

    const text = await readFile(join(store.root, 'meta', `${meta}.json`), 'utf8');
    const saved = JSON.parse(text) as Record<string, { k: string; d: string }>;
    expect(Object.keys(saved)).toEqual([join(ctx, 'b'), join(ctx, 'gone'), join(ctx, 'a'), join(ctx, 'c')]);
    expect(saved[join(ctx, 'gone')]).toEqual(old);
    expect(saved[join(ctx, 'b')]!.d).toBe(sha256Digest('b'));
    expect(text).toBe(`${JSON.stringify(saved)}\n`);

    // A later build answers from it without reading the files.
    const next = new FileDigests(store, ctx);
    for (const n of ['a', 'b', 'c']) expect(await next.digestOf(join(ctx, n), await lstat(join(ctx, n), { bigint: true }))).toBe(sha256Digest(n));
    expect(next.hashedFiles).toBe(0);
  });

  it('digestsOf: every file in order, only the ones the index does not know (or that changed) read', async () => {
    const ctx = join(dir, 'ctx');
    await mkdir(ctx);
    const names = Array.from({ length: 40 }, (_, i) => `f${i}`);
    for (const n of names) await writeFile(join(ctx, n), n);
    const first = new FileDigests(store, ctx);
    expect(await first.digestsOf(names.map((n) => join(ctx, n)), { concurrency: 3 })).toEqual(names.map((n) => sha256Digest(n)));
    expect(first.hashedFiles).toBe(40);
    await first.save();

    await writeFile(join(ctx, 'f7'), 'changed');
    const next = new FileDigests(store, ctx);
    const got = await next.digestsOf(names.map((n) => join(ctx, n)), { concurrency: 3 });
    expect(got).toEqual(names.map((n) => sha256Digest(n === 'f7' ? 'changed' : n)));
    expect(next.hashedFiles).toBe(1);
    await expect(next.digestsOf([join(ctx, 'missing')], { concurrency: 3 })).rejects.toMatchObject({ code: 'ENOENT' });
  });
});
