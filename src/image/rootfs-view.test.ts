import { describe, expect, it } from 'vitest';
import { RootfsView, type IndexedEntry, type LayerIndex } from './rootfs-view.js';

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
