import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile, execFileSync } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { repoRoot, tempDir, tsbuild, writeTree, type RunResult } from './support/cli.js';
import { ociArchive } from './support/hostile-archive.js';

let work: string;
let root: string;

beforeAll(async () => {
  work = await tempDir('harden');
  root = path.join(work, 'store');
});
afterAll(async () => {
  await fs.rm(work, { recursive: true, force: true });
});

/** Loads an image `ref` made of the given raw layers into the test store. */
async function loadLayers(ref: string, layers: Buffer[]): Promise<void> {
  const archive = path.join(work, `${ref.replace(/[:/]/g, '_')}.tar`);
  await fs.writeFile(archive, ociArchive(layers, ref));
  const r = await tsbuild(['load', '-i', archive], { root });
  expect(r.code, r.stderr).toBe(0);
}

/** A PAX tar made by Python's tarfile (a second tar writer): one 1-byte file per name. */
function pythonTar(names: readonly string[]): Buffer {
  const script = 'import io,sys,tarfile\nt=tarfile.open(fileobj=sys.stdout.buffer,mode="w|",format=tarfile.PAX_FORMAT)\nfor n in sys.argv[1:]:\n  i=tarfile.TarInfo(n); i.size=1; t.addfile(i, io.BytesIO(b"x"))\nt.close()\n';
  return execFileSync('python3', ['-c', script, ...names]);
}

describe('a layer whose PAX long name precedes a name too long to create', () => {
  it('fails the build (exit 1, LAYER_IO), never exit 0 without an image', async () => {
    // Thirty 200-byte directories: far beyond PATH_MAX, so creating the entry fails with ENAMETOOLONG.
    const long = `${Array.from({ length: 30 }, (_, i) => String(i).padStart(3, '0') + 'd'.repeat(197)).join('/')}/f`;
    await loadLayers('paxlong:latest', [pythonTar(['p'.repeat(150), long, 'ok.txt'])]);
    const ctx = path.join(work, 'ctx-paxlong');
    await writeTree(ctx, { Dockerfile: 'FROM paxlong:latest\nRUN true\n' });
    const r = await tsbuild(['build', '-q', ctx], { root });
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/^error: applying the layer failed .*ENAMETOOLONG/s);
    expect(r.code).toBe(1);
  });
});

describe('a command that never settles', () => {
  // The guard of cmd/tsbuild.ts, driven with a promise that never settles and one that does.
  const guard = (what: string): Promise<RunResult> =>
    new Promise((resolve) => {
      const js = `import { exitWhenSettled } from ${JSON.stringify(path.join(repoRoot, 'dist/src/cli/index.js'))};\nexitWhenSettled(${what});\n`;
      execFile(process.execPath, ['--input-type=module', '-e', js], (err, stdout, stderr) => resolve({ code: err ? Number(err.code) : 0, stdout, stderr }));
    });
  it('exits 70 with "internal error" when the event loop drains first', async () => {
    const r = await guard('new Promise(() => {})');
    expect(r.code).toBe(70);
    expect(r.stderr).toMatch(/^internal error \(this is a bug/);
  });
  it('exits with the code of a command that settles', async () => {
    expect((await guard('Promise.resolve(0)')).code).toBe(0);
    expect((await guard('new Promise((r) => setTimeout(() => r(3), 50))')).code).toBe(3);
  });
});
