import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TsbuildError } from '../errors.js';
import { IgnoreMatcher, parseDockerignore, patternsFromList, readDockerignore, readIgnoreLines, walkContext } from './index.js';

interface TreeEntry {
  path: string;
  type: 'file' | 'dir';
}

/** testdata/conformance/dockerignore/cases.json; see its "notes". */
type IgnoreCase =
  | { id: string; kind: 'match'; patterns: string[]; path: string; excluded?: boolean; error: boolean }
  | { id: string; kind: 'patterns-error'; patterns: string[]; dockerignore?: string }
  | { id: string; kind: 'ignorefile-parse'; content: string; expected_patterns: string[] }
  | {
      id: string;
      kind: 'tree';
      tree: TreeEntry[];
      patterns: string[];
      dockerignore?: string;
      expected?: TreeEntry[];
      must_include?: string[];
      must_exclude?: string[];
    };

/** builds.json: end-to-end `COPY . /ctx/` builds; see testdata/conformance/dockerignore/check.sh. */
interface IgnoreBuild {
  id: string;
  kind: 'files' | 'tree' | 'error';
  dockerignore: string;
  tree: TreeEntry[];
  cases: string[];
  checks?: { case: string; path: string; present: boolean }[];
  expected?: TreeEntry[];
  must_include?: string[];
  must_exclude?: string[];
}

const dataDir = fileURLToPath(new URL('../../testdata/conformance/dockerignore/', import.meta.url));
const cases = (JSON.parse(readFileSync(path.join(dataDir, 'cases.json'), 'utf8')) as { cases: IgnoreCase[] }).cases;
const builds = (JSON.parse(readFileSync(path.join(dataDir, 'builds.json'), 'utf8')) as { builds: IgnoreBuild[] }).builds;

function expectInvalid(fn: () => unknown): TsbuildError {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  expect(caught).toBeInstanceOf(TsbuildError);
  const err = caught as TsbuildError;
  expect(err.code).toBe('DOCKERIGNORE_INVALID');
  return err;
}

let scratch: string;
let counter = 0;
beforeAll(async () => {
  scratch = await mkdtemp(path.join(tmpdir(), 'tsbuild-dockerignore-'));
});
afterAll(async () => {
  await rm(scratch, { recursive: true, force: true });
});

/** Lays a tree out like check.sh: directories first, each file holding its own path. */
async function makeTree(tree: readonly TreeEntry[], dockerignore?: string): Promise<string> {
  const dir = path.join(scratch, `t${++counter}`);
  await mkdir(dir);
  for (const e of tree.filter((t) => t.type === 'dir')) await mkdir(path.join(dir, e.path), { recursive: true });
  for (const e of tree.filter((t) => t.type === 'file')) {
    await mkdir(path.dirname(path.join(dir, e.path)), { recursive: true });
    if (e.path !== '.dockerignore') await writeFile(path.join(dir, e.path), `${e.path}\n`);
  }
  if (dockerignore !== undefined) await writeFile(path.join(dir, '.dockerignore'), dockerignore);
  return dir;
}

async function walkAll(dir: string, matcher: IgnoreMatcher): Promise<Map<string, string>> {
  const got = new Map<string, string>();
  const order: string[] = [];
  for await (const e of walkContext(dir, matcher)) {
    got.set(e.relPath, e.type);
    order.push(e.relPath);
  }
  // Byte order of relPath, and every parent yielded before its children.
  const sorted = [...order].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
  expect(order).toEqual(sorted);
  for (const p of order) {
    const parent = path.posix.dirname(p);
    if (parent !== '.') expect(got.get(parent)).toBe('dir');
  }
  return got;
}

const asMap = (entries: readonly TreeEntry[]): Map<string, string> => new Map(entries.map((e) => [e.path, e.type]));

describe('conformance cases.json', () => {
  it('has 150 cases', () => {
    expect(cases).toHaveLength(150);
  });

  const matchCases = cases.filter((c): c is Extract<IgnoreCase, { kind: 'match' }> => c.kind === 'match');
  it.each(matchCases.map((c) => [c.id, c] as const))('match %s', (_id, c) => {
    if (c.error) {
      expectInvalid(() => new IgnoreMatcher(patternsFromList(c.patterns)).matches(c.path));
      return;
    }
    const matcher = new IgnoreMatcher(patternsFromList(c.patterns));
    expect(matcher.matches(c.path)).toBe(c.excluded === true);
    expect(matcher.matchingPattern(c.path) !== undefined).toBe(c.excluded === true);
  });

  const errorCases = cases.filter((c): c is Extract<IgnoreCase, { kind: 'patterns-error' }> => c.kind === 'patterns-error');
  it.each(errorCases.map((c) => [c.id, c] as const))('patterns-error %s', (_id, c) => {
    expectInvalid(() => patternsFromList(c.patterns));
    if (c.dockerignore !== undefined) expectInvalid(() => parseDockerignore(c.dockerignore as string));
  });

  const parseCases = cases.filter((c): c is Extract<IgnoreCase, { kind: 'ignorefile-parse' }> => c.kind === 'ignorefile-parse');
  it.each(parseCases.map((c) => [c.id, c] as const))('ignorefile-parse %s', (_id, c) => {
    expect(readIgnoreLines(c.content).map((l) => l.text)).toEqual(c.expected_patterns);
  });

  const treeCases = cases.filter((c): c is Extract<IgnoreCase, { kind: 'tree' }> => c.kind === 'tree');
  it.each(treeCases.map((c) => [c.id, c] as const))('tree %s', async (_id, c) => {
    const dir = await makeTree(c.tree);
    if (c.dockerignore !== undefined && c.tree.some((t) => t.path === '.dockerignore')) {
      await writeFile(path.join(dir, '.dockerignore'), c.dockerignore);
      expect(parseDockerignore(c.dockerignore).map((p) => p.text)).toEqual(c.patterns);
    }
    const got = await walkAll(dir, new IgnoreMatcher(patternsFromList(c.patterns)));
    if (c.expected !== undefined) expect(got).toEqual(asMap(c.expected));
    for (const p of c.must_include ?? []) expect(got.get(p)).toBe('file');
    for (const p of c.must_exclude ?? []) expect(got.has(p)).toBe(false);
  });

  it('counts', () => {
    expect([matchCases.length, errorCases.length, parseCases.length, treeCases.length]).toEqual([138, 2, 1, 9]);
  });
});

describe('conformance builds.json (what COPY . /ctx/ would copy)', () => {
  it('has 97 builds', () => {
    expect(builds).toHaveLength(97);
  });

  it.each(builds.map((b) => [b.id, b] as const))('%s', async (_id, b) => {
    const dir = await makeTree(b.tree, b.dockerignore);
    if (b.kind === 'error') {
      // The build must fail: either reading the ignore file or walking with it.
      let caught: unknown;
      try {
        const { patterns } = await readDockerignore(dir);
        await walkAll(dir, new IgnoreMatcher(patterns));
      } catch (e) {
        caught = e;
      }
      expect(caught).toBeInstanceOf(TsbuildError);
      expect((caught as TsbuildError).code).toBe('DOCKERIGNORE_INVALID');
      expect((caught as TsbuildError).message).toContain(path.join(dir, '.dockerignore'));
      return;
    }
    const { patterns, file } = await readDockerignore(dir);
    expect(file).toBe(path.join(dir, '.dockerignore'));
    const got = await walkAll(dir, new IgnoreMatcher(patterns));
    if (b.kind === 'files') {
      for (const check of b.checks ?? []) {
        expect({ case: check.case, present: got.get(check.path) === 'file' }).toEqual({ case: check.case, present: check.present });
      }
      return;
    }
    // ctx/.dockerignore is ignored unless the tree lists it.
    if (!b.tree.some((t) => t.path === '.dockerignore')) got.delete('.dockerignore');
    if (b.expected !== undefined) expect(got).toEqual(asMap(b.expected));
    for (const p of b.must_include ?? []) expect(got.get(p)).toBe('file');
    for (const p of b.must_exclude ?? []) expect(got.has(p)).toBe(false);
  });
});

describe('parseDockerignore', () => {
  it('names the file, the pattern and the line in errors', () => {
    const err = expectInvalid(() => parseDockerignore('ok\n\n  a[  \n', '/ctx/.dockerignore'));
    expect(err.message).toContain('/ctx/.dockerignore');
    expect(err.message).toContain('"a["');
    expect(err.message).toContain('line 3');
    expect(err.hint).toBeDefined();
  });

  it('rejects at parse time what Go only rejects at match time', () => {
    expectInvalid(() => parseDockerignore('[Local-Only]/\n'));
    expectInvalid(() => parseDockerignore('[z-a]\n'));
  });

  it('normalises like ReadAll: BOM, CRLF, comments only at column 0, leading slash, cleaning', () => {
    const got = parseDockerignore('\ufeff/a/./b/\r\n  # not a comment\n#comment\n! /c/../d\n\n');
    expect(got.map((p) => [p.text, p.pattern, p.exclusion, p.line])).toEqual([
      ['a/b', 'a/b', false, 1],
      ['# not a comment', '# not a comment', false, 2],
      ['!d', 'd', true, 4],
    ]);
  });
});

describe('IgnoreMatcher', () => {
  const m = (text: string): IgnoreMatcher => new IgnoreMatcher(parseDockerignore(text));

  it('reports the pattern that excluded a path', () => {
    const matcher = m('*.md\n!README.md\ndocs\n');
    expect(matcher.matchingPattern('x.md')?.text).toBe('*.md');
    expect(matcher.matchingPattern('README.md')).toBeUndefined();
    expect(matcher.matchingPattern('docs/a/b.txt')?.text).toBe('docs');
    expect(matcher.matches('.')).toBe(false);
  });

  it('says when an excluded directory must be entered', () => {
    expect(m('foo\n').mustDescend('foo')).toBe(false);
    expect(m('foo\n!foo/bar/baz\n').mustDescend('foo')).toBe(true);
    expect(m('foo\n!foo/bar/baz\n').mustDescend('foo/bar')).toBe(true);
    expect(m('foo\n!foo/bar/baz\n').mustDescend('other')).toBe(false);
    expect(m('foo\n!foo/bar/*\n').mustDescend('foo/bar')).toBe(true);
    // An exception with glob characters could match anywhere.
    expect(m('foo\n!**/keep\n').mustDescend('other')).toBe(true);
  });

  it('keeps Go regexp meaning for escapes and classes', () => {
    expect(m('a\\ b\n').matches('a b')).toBe(true);
    expect(m('x[[:digit:]]\n').matches('x7')).toBe(true);
    expect(m('x[[:digit:]]\n').matches('xa')).toBe(false);
    expect(m('[*]\n').matches('*')).toBe(false); // Go turns this into `[[^/]*]`
  });
});

describe('walkContext', () => {
  it('yields byte order, does not follow symlinks, emits implied parents of re-included files', async () => {
    const dir = await makeTree([
      { path: 'a/x', type: 'file' },
      { path: 'a.txt', type: 'file' },
      { path: 'a-b', type: 'file' },
      { path: 'skip/deep/keep.txt', type: 'file' },
      { path: 'skip/deep/drop.txt', type: 'file' },
      { path: 'skip/other/y', type: 'file' },
    ]);
    const { symlink } = await import('node:fs/promises');
    await symlink('a', path.join(dir, 'link'));
    const matcher = new IgnoreMatcher(parseDockerignore('skip\n!skip/deep/keep.txt\n'));
    const got: string[] = [];
    for await (const e of walkContext(dir, matcher)) got.push(`${e.type} ${e.relPath}`);
    expect(got).toEqual([
      'dir a',
      'file a-b',
      'file a.txt',
      'file a/x',
      'symlink link',
      'dir skip',
      'dir skip/deep',
      'file skip/deep/keep.txt',
    ]);
  });

  it('stops when aborted', async () => {
    const dir = await makeTree([{ path: 'f', type: 'file' }]);
    const ac = new AbortController();
    ac.abort();
    const run = async (): Promise<void> => {
      for await (const _ of walkContext(dir, new IgnoreMatcher([]), { signal: ac.signal })) {
        // nothing
      }
    };
    await expect(run()).rejects.toThrow();
  });

  it('reports a missing context', async () => {
    const run = async (): Promise<void> => {
      for await (const _ of walkContext(path.join(scratch, 'nope'), new IgnoreMatcher([]))) {
        // nothing
      }
    };
    await expect(run()).rejects.toMatchObject({ code: 'CONTEXT_NOT_FOUND' });
  });
});

describe('readDockerignore', () => {
  it('prefers <Dockerfile>.dockerignore next to the Dockerfile', async () => {
    const dir = await makeTree([{ path: 'sub/Dockerfile.dev', type: 'file' }], 'ctx\n');
    expect(await readDockerignore(dir, 'sub/Dockerfile.dev')).toMatchObject({ file: path.join(dir, '.dockerignore') });
    await writeFile(path.join(dir, 'sub/Dockerfile.dev.dockerignore'), 'special\n');
    const got = await readDockerignore(dir, path.join(dir, 'sub/Dockerfile.dev'));
    expect(got.file).toBe(path.join(dir, 'sub/Dockerfile.dev.dockerignore'));
    expect(got.patterns.map((p) => p.text)).toEqual(['special']);
  });

  it('uses Dockerfile.dockerignore for the default Dockerfile, and nothing when absent', async () => {
    const dir = await makeTree([{ path: 'Dockerfile', type: 'file' }]);
    expect(await readDockerignore(dir)).toEqual({ patterns: [] });
    await writeFile(path.join(dir, 'Dockerfile.dockerignore'), 'a\n');
    await writeFile(path.join(dir, '.dockerignore'), 'b\n');
    expect((await readDockerignore(dir)).patterns.map((p) => p.text)).toEqual(['a']);
  });
});
