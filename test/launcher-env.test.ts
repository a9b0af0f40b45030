import fs from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { repoRoot, runProcess, tempDir } from './support/cli.js';

// The installed command (dist/cmd/tsbuild, cmd/tsbuild.sh) starts Node with MALLOC_ARENA_MAX=2
// unless the user set it, and the CLI takes the variable out of its own environment again so
// that what it starts sees the user's (src/host/malloc-arenas.ts). A module preloaded through
// NODE_OPTIONS reports both: the environment Node was started with (/proc/self/environ, which
// glibc read its tunables from) and process.env as the CLI left it when the process exits.
const launcher = path.join(repoRoot, 'dist', 'cmd', 'tsbuild');
let tmp: string;
let probe: string;

beforeAll(async () => {
  tmp = await tempDir('tsbuild-launcher-env-');
  probe = path.join(tmp, 'probe.cjs');
  await fs.writeFile(
    probe,
    `const started = require('node:fs').readFileSync('/proc/self/environ', 'latin1').split('\\0').filter((v) => v.startsWith('MALLOC_ARENA_MAX='));
process.on('exit', () => process.stderr.write('PROBE ' + JSON.stringify({ started, now: process.env.MALLOC_ARENA_MAX ?? null, marker: process.env.TSBUILD_MALLOC_ARENA_MAX ?? null }) + '\\n'));
`,
  );
});

afterAll(async () => {
  if (tmp) await fs.rm(tmp, { recursive: true, force: true });
});

async function probeLauncher(extra: NodeJS.ProcessEnv): Promise<{ started: string[]; now: string | null; marker: string | null }> {
  const env: NodeJS.ProcessEnv = { ...process.env, NODE_OPTIONS: `--require ${probe}`, TSBUILD_ROOT: path.join(tmp, 'store') };
  delete env['MALLOC_ARENA_MAX'];
  delete env['TSBUILD_MALLOC_ARENA_MAX'];
  Object.assign(env, extra);
  const r = await runProcess([launcher, 'images'], { cwd: tmp, env });
  expect(r.code, r.stderr).toBe(0);
  const line = r.stderr.split('\n').find((l) => l.startsWith('PROBE '));
  expect(line, r.stderr).toBeDefined();
  return JSON.parse(line!.slice('PROBE '.length)) as { started: string[]; now: string | null; marker: string | null };
}

describe('MALLOC_ARENA_MAX through the installed command', () => {
  it('starts Node with two arenas and leaves no trace in the environment the CLI passes on', async () => {
    expect(await probeLauncher({})).toEqual({ started: ['MALLOC_ARENA_MAX=2'], now: null, marker: null });
  });

  it('keeps a value the user set', async () => {
    expect(await probeLauncher({ MALLOC_ARENA_MAX: '6' })).toEqual({ started: ['MALLOC_ARENA_MAX=6'], now: '6', marker: null });
  });
});
