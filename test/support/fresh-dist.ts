import { execFileSync } from 'node:child_process';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { repoRoot } from './cli.js';

/**
 * vitest's globalSetup: the end-to-end tests run the compiled CLI from dist/, so a dist/ older
 * than the sources could pass a test that the sources fail. Before any test runs, the newest
 * file under src/ and cmd/ (tests aside: dist/ holds none) is compared with the build stamp
 * scripts/bundle-cli.mjs writes; when dist/ is older, or has no stamp, `npm run build` runs
 * first. A build that fails, or sources that change while it runs, stop the test run.
 */
export function setup(): void {
  const stale = staleSource();
  if (stale === undefined) return;
  process.stderr.write(`dist/ is older than ${stale}: running npm run build before the tests\n`);
  try {
    execFileSync('npm', ['run', 'build'], { cwd: repoRoot, stdio: ['ignore', 'inherit', 'inherit'] });
  } catch (e) {
    throw new Error(`npm run build failed, so the tests would run a stale dist/: ${(e as Error).message}`);
  }
  const still = staleSource();
  if (still !== undefined) throw new Error(`${still} changed while dist/ was being built; run the tests again`);
}

/** The first source file newer than dist/'s build stamp ("no build stamp" without one), or undefined. */
export function staleSource(): string | undefined {
  let sourcesAt: number;
  try {
    const stamp = JSON.parse(readFileSync(path.join(repoRoot, 'dist', 'build-stamp.json'), 'utf8')) as { sourcesAt?: unknown };
    if (typeof stamp.sourcesAt !== 'number') return 'its build stamp (unreadable)';
    sourcesAt = stamp.sourcesAt;
  } catch {
    return 'the sources (dist/build-stamp.json is missing: no complete npm run build)';
  }
  for (const top of ['src', 'cmd']) {
    const newer = newerThan(path.join(repoRoot, top), sourcesAt);
    if (newer !== undefined) return path.relative(repoRoot, newer);
  }
  for (const file of ['package.json', 'tsconfig.json', 'scripts/bundle-cli.mjs']) {
    if (statSync(path.join(repoRoot, file)).mtimeMs > sourcesAt) return file;
  }
  return undefined;
}

function newerThan(dir: string, t: number): string | undefined {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) {
      const hit = newerThan(p, t);
      if (hit !== undefined) return hit;
    } else if (e.isFile() && !e.name.endsWith('.test.ts') && statSync(p).mtimeMs > t) {
      return p;
    }
  }
  return undefined;
}
