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

const RULES: Array<{ pkg: RegExp; allowed: string[]; why: string }> = [
  { pkg: /^undici$/, allowed: ['registry'], why: 'only registry/ talks HTTP through undici' },
  { pkg: /^yargs(\/|$)/, allowed: ['cli'], why: 'only cli/ parses flags' },
  { pkg: /^tar-stream$/, allowed: ['layer', 'store'], why: 'only layer/ and store/ read and write tar' },
];

const PURE = ['dockerfile', 'plan'];
const IMPURE = /^(node:)?(fs|fs\/promises|child_process|net|http|https|os|process)$|^pino$|^undici$/;

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
});
