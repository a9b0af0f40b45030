import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

// DESIGN.md: only registry/ imports undici.
const src = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

async function tsFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...(await tsFiles(p)));
    else if (e.name.endsWith('.ts')) out.push(p);
  }
  return out;
}

describe('import boundaries', () => {
  it('only src/registry imports undici', async () => {
    const offenders: string[] = [];
    for (const f of await tsFiles(src)) {
      if (f.startsWith(path.join(src, 'registry') + path.sep)) continue;
      if (/from\s+['"]undici['"]|import\(\s*['"]undici['"]\s*\)|require\(\s*['"]undici['"]\s*\)/.test(await readFile(f, 'utf8'))) offenders.push(path.relative(src, f));
    }
    expect(offenders).toEqual([]);
  });
});
