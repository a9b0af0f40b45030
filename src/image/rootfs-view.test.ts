import { describe, expect, it } from 'vitest';
import { RootfsView, UnrecordedLookup, type IndexedEntry, type LayerIndex } from './rootfs-view.js';

const dir = (p: string, extra: Partial<IndexedEntry> = {}): IndexedEntry => ({ path: p, type: 'dir', mode: 0o755, uid: 0, gid: 0, mtime: 0, size: 0, ...extra });
const file = (p: string, extra: Partial<IndexedEntry> = {}): IndexedEntry => ({ path: p, type: 'file', mode: 0o644, uid: 0, gid: 0, mtime: 0, size: 1, ...extra });
const link = (p: string, target: string): IndexedEntry => ({ path: p, type: 'symlink', mode: 0o777, uid: 0, gid: 0, mtime: 0, size: 0, linkTarget: target });
const layer = (entries: IndexedEntry[], whiteouts: string[] = [], opaqueDirs: string[] = []): LayerIndex => ({ entries, whiteouts, opaqueDirs });

describe('RootfsView', () => {
  it('merges layers, upper wins', () => {
    const v = new RootfsView([layer([dir('etc'), file('etc/passwd', { size: 10 })]), layer([file('etc/passwd', { size: 20 })])]);
    expect(v.lstat('/etc/passwd')?.size).toBe(20);
    expect(v.lstat('etc/passwd')?.layer).toBe(1);
  });

  it('applies whiteouts to lower layers and to whole subtrees', () => {
    const v = new RootfsView([
      layer([dir('a'), file('a/x'), dir('a/d'), file('a/d/y')]),
      layer([], ['a/x', 'a/d']),
    ]);
    expect(v.lstat('a/x')).toBeUndefined();
    expect(v.lstat('a/d/y')).toBeUndefined();
    expect(v.lstat('a')?.type).toBe('dir');
  });

  it('applies opaque dirs before the same layer adds entries', () => {
    const v = new RootfsView([layer([dir('a'), file('a/old')]), layer([dir('a'), file('a/new')], [], ['a'])]);
    expect(v.lstat('a/old')).toBeUndefined();
    expect(v.lstat('a/new')).toBeDefined();
  });

  it('a file replacing a directory hides its children', () => {
    const v = new RootfsView([layer([dir('a'), file('a/x')]), layer([file('a')])]);
    expect(v.lstat('a')?.type).toBe('file');
    expect(v.lstat('a/x')).toBeUndefined();
  });

  it('resolves symlinks inside the root, never above it', () => {
    const v = new RootfsView([
      layer([dir('usr'), dir('usr/bin'), file('usr/bin/sh'), link('bin', 'usr/bin'), link('escape', '../../../usr'), link('abs', '/usr/bin')]),
    ]);
    expect(v.resolve('/bin/sh').path).toBe('usr/bin/sh');
    expect(v.resolve('/escape/bin/sh').path).toBe('usr/bin/sh');
    expect(v.resolve('/abs/sh').entry?.type).toBe('file');
    expect(v.isDir('/bin')).toBe(true);
    expect(v.resolve('/bin', false).entry?.type).toBe('symlink');
    expect(v.isDir('/')).toBe(true);
  });

  it('survives symlink loops', () => {
    const v = new RootfsView([layer([link('a', 'b'), link('b', 'a')])]);
    expect(v.resolve('a/x').entry).toBeUndefined();
  });
});

/** The merged tree made eagerly, layer by layer, as containerd applies layers: the reference. */
function mergedEagerly(layers: readonly LayerIndex[]): Map<string, IndexedEntry & { layer: number }> {
  const m = new Map<string, IndexedEntry & { layer: number }>();
  const removeBelow = (p: string, keepSelf: boolean): void => {
    for (const k of [...m.keys()]) if ((!keepSelf && k === p) || k.startsWith(`${p}/`)) m.delete(k);
  };
  layers.forEach((l, i) => {
    for (const d of l.opaqueDirs) removeBelow(d, true);
    for (const w of l.whiteouts) removeBelow(w, false);
    for (const e of l.entries) {
      if (m.get(e.path)?.type === 'dir' && e.type !== 'dir') removeBelow(e.path, false);
      m.set(e.path, { ...e, layer: i });
    }
  });
  return m;
}

describe('RootfsView: looked up lazily, the same answers as a merge of every layer', () => {
  it('agrees on every path of 300 random stacks with whiteouts, opaque dirs and replacements', () => {
    let seed = 7;
    const rand = (n: number): number => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return Math.floor(seed / 65536) % n; // the high bits: the low ones of this generator cycle
    };
    const paths = ['a', 'a/b', 'a/b/c', 'a/d', 'e', 'e/f', 'e/f/g', 'h'];
    for (let round = 0; round < 300; round++) {
      const layers: LayerIndex[] = [];
      for (let i = 0, n = 1 + rand(4); i < n; i++) {
        // Parents before children, as a tar lists them; a file where a directory was, at times.
        const entries = paths.filter(() => rand(3) === 0).map((p) => (rand(4) === 0 ? file(p, { size: i }) : dir(p, { mtime: i })));
        layers.push(layer(entries, paths.filter(() => rand(8) === 0), paths.filter(() => rand(8) === 0)));
      }
      const want = mergedEagerly(layers);
      const v = new RootfsView(layers);
      for (const p of paths) {
        // Below a file nothing can exist on disk: the eager merge may still list it (a
        // malformed stack); the lazy view answers as the file system would.
        const underFile = want.has(p) && paths.some((a) => p.startsWith(`${a}/`) && want.get(a) !== undefined && want.get(a)!.type !== 'dir');
        if (underFile) continue;
        expect({ round, p, got: v.lstat(p) }).toEqual({ round, p, got: want.get(p) });
      }
    }
  });
});

describe('RootfsView.replay', () => {
  const layers = [layer([dir('usr'), dir('usr/bin'), file('usr/bin/sh'), link('bin', 'usr/bin')]), layer([dir('app'), file('app/x')])];

  it('answers what a view of the same layers looked up, and nothing else', () => {
    const real = new RootfsView(layers);
    const resolved = real.resolve('bin/sh');
    const missing = real.lstat('opt');
    const replayed = RootfsView.replay(real.lookups());
    expect(replayed.resolve('bin/sh')).toEqual(resolved);
    expect(resolved.path).toBe('usr/bin/sh');
    expect(replayed.lstat('opt')).toBe(missing);
    expect(missing).toBeUndefined();
    // app was never looked up: the replayed view cannot say, so it throws instead of guessing.
    expect(() => replayed.lstat('app')).toThrow(UnrecordedLookup);
    expect(() => replayed.resolve('bin/ls')).toThrow(UnrecordedLookup);
    // The root needs no lookup.
    expect(replayed.resolve('/').path).toBe('');
  });
});
