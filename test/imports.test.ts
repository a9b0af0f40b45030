import { describe, expect, it } from 'vitest';
import fs from 'node:fs/promises';
import path from 'node:path';
import { repoRoot } from './support/cli.js';

// DESIGN.md "Who may import whom": checked on the source so a stray import fails the suite.
async function sources(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await fs.readdir(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...(await sources(p)));
    else if (e.name.endsWith('.ts') && !e.name.endsWith('.test.ts') && !e.name.startsWith('test-')) out.push(p);
  }
  return out;
}

function importsOf(text: string): string[] {
  return [...text.matchAll(/^\s*(?:import|export)\s[^'"]*?from\s+['"]([^'"]+)['"]/gm), ...text.matchAll(/import\(\s*['"]([^'"]+)['"]\s*\)/g)].map((m) => m[1]!);
}

/**
 * Inner files other folders may import besides index.ts, each for start-up cost: every command
 * loads what its front door loads, and these keep heavy code off paths that do not need it.
 */
const SIDE_DOORS: Record<string, string> = {
  'layer/layer-index.ts': 'the layer index is read by every build; layer/index.ts also loads the tar writer, applier and gzip workers',
  'layer/read-ahead.ts': 'context files are read whole for cache keys (engine/file-digests.ts) by builds that may never write a layer',
  'layer/write-layer.ts': "a COPY writes its layer's tar without loading layer/'s compressors, applier and gzip workers (zlib)",
  'store/archive-import.ts': 'archive load (tar-stream, layer/); every command opens the store through store/index.ts',
  'store/archive-export.ts': 'archive save (tar-stream, layer/); every command opens the store through store/index.ts',
  'registry/store-layers.ts': "the registry's records in the store, read by images/inspect without loading undici",
  'sandbox/step-dir.ts': 'dead step dirs are swept at the start of every build (engine/housekeeping.ts), cached or not, without loading the runners and the probe',
};

/** `importer -> imported` (paths under src/, .ts) for each relative import that crosses folders. */
async function crossFolderImports(): Promise<string[]> {
  const src = path.join(repoRoot, 'src');
  const out = new Set<string>();
  for (const file of [...(await sources(src)), ...(await sources(path.join(repoRoot, 'cmd')))]) {
    const from = path.relative(src, file).split(path.sep).join('/');
    for (const spec of importsOf(await fs.readFile(file, 'utf8'))) {
      if (!spec.startsWith('.')) continue;
      const to = path.relative(src, path.resolve(path.dirname(file), spec)).split(path.sep).join('/').replace(/\.js$/, '.ts');
      const [toFolder, ...rest] = to.split('/');
      if (to.startsWith('..') || rest.length === 0) continue; // outside src/, or src/errors.ts
      if (from.split('/')[0] === toFolder) continue;
      out.add(`${from} -> ${to}`);
    }
  }
  return [...out].sort();
}

const RULES: Array<{ pkg: RegExp; allowed: string[]; why: string }> = [
  { pkg: /^undici(\/|$)/, allowed: ['registry'], why: 'only registry/ talks HTTP through undici' },
  { pkg: /^yargs(\/|$)/, allowed: ['cli'], why: 'only cli/ parses flags' },
  { pkg: /^tar-stream$/, allowed: ['layer', 'store'], why: 'only layer/ and store/ read and write tar' },
];

const PURE = ['dockerfile', 'plan'];
const IMPURE = /^(node:)?(fs|fs\/promises|child_process|net|http|https|os|process)$|^pino$|^undici(\/|$)/;

describe('import rules', () => {
  it('keeps third-party packages in their folders, and dockerfile/ and plan/ pure', async () => {
    const problems: string[] = [];
    for (const file of await sources(path.join(repoRoot, 'src'))) {
      const folder = path.relative(path.join(repoRoot, 'src'), file).split(path.sep)[0]!;
      const text = await fs.readFile(file, 'utf8');
      for (const spec of importsOf(text)) {
        for (const r of RULES) if (r.pkg.test(spec) && !r.allowed.includes(folder)) problems.push(`${path.relative(repoRoot, file)} imports ${spec}: ${r.why}`);
        // compose/ turns files into plain requests; the CLI hands them to the engine.
        if (folder === 'compose' && /^\.\.\/(engine|sandbox|registry|store)\//.test(spec)) problems.push(`${path.relative(repoRoot, file)} imports ${spec}: compose/ knows no engine`);
        if (PURE.includes(folder) && IMPURE.test(spec)) problems.push(`${path.relative(repoRoot, file)} imports ${spec}: ${folder}/ must not touch files, processes, network or logs`);
      }
    }
    expect(problems).toEqual([]);
  });

  it('sends every cross-folder import through the folder\'s index.ts (STYLE.md 2)', async () => {
    const folders = (await fs.readdir(path.join(repoRoot, 'src'), { withFileTypes: true })).filter((e) => e.isDirectory()).map((e) => e.name);
    const withoutIndex: string[] = [];
    for (const f of folders) if (!(await fs.stat(path.join(repoRoot, 'src', f, 'index.ts')).catch(() => undefined))) withoutIndex.push(f);
    expect(withoutIndex, 'folders without a front door').toEqual([]);

    const all = await crossFolderImports();
    const inner = all.filter((i) => !i.endsWith('/index.ts') && !(i.split(' -> ')[1]! in SIDE_DOORS));
    expect(inner, 'imports of another folder\'s inner file').toEqual([]);
  });

  it('makes a Digest only in oci/digest.ts: no cast turns a string into one', async () => {
    // Digest is nominal so that unchecked text cannot stand for a digest; a cast would undo that.
    const casts: string[] = [];
    for (const file of [...(await sources(path.join(repoRoot, 'src'))), ...(await sources(path.join(repoRoot, 'cmd')))]) {
      if (file === path.join(repoRoot, 'src', 'oci', 'digest.ts')) continue;
      const text = await fs.readFile(file, 'utf8');
      for (const m of text.matchAll(/\bas\s+(?:unknown\s+as\s+)?Digest\b/g)) casts.push(`${path.relative(repoRoot, file)}:${text.slice(0, m.index).split('\n').length}`);
    }
    expect(casts, 'use isDigest/parseDigest, or a hasher').toEqual([]);
  });
});
