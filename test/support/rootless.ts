import { spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { repoRoot, tool, type RunResult } from './cli.js';

/** Shell words for the compiled CLI and the busybox image script, for scripts run as the test user. */
export const CLI = `${process.execPath} ${path.join(repoRoot, 'dist/cmd/tsbuild.cjs')}`;
export const MAKE_BUSYBOX = path.join(repoRoot, 'scripts/make-busybox-image');

export interface TestUserDir {
  /** A fresh directory under /tmp (0700, the test user's once `give` ran). */
  readonly dir: string;
  /** The test user's store: `dir/store`. */
  readonly store: string;
  /** chown -R to the test user: for what the test wrote, never for the store (its IDs are mapped). */
  give(p?: string): Promise<void>;
  /** `sh -c script` as the test user with HOME=dir and TSBUILD_ROOT=store, in dir; never rejects. */
  run(script: string, env?: Readonly<Record<string, string>>): Promise<RunResult>;
  /** As run, but fails with the script's output when it exits non-zero. */
  ok(script: string, env?: Readonly<Record<string, string>>): Promise<RunResult>;
}

/**
 * Runs `fn` with a scratch directory for the unprivileged user `tsbuild-test` (scripts/setup
 * creates it with a subordinate ID range; the suite itself runs as root), then removes it,
 * the store's subordinate-owned files from inside the user's namespace.
 */
export async function withTestUser<T>(prefix: string, fn: (u: TestUserDir) => Promise<T>): Promise<T> {
  await tool('id', ['tsbuild-test']).catch(() => {
    throw new Error('user tsbuild-test missing: run scripts/setup');
  });
  const dir = await fs.mkdtemp(path.join('/tmp', `tsbuild-rootless-${prefix}-`));
  const store = path.join(dir, 'store');
  const run = (script: string, env: Readonly<Record<string, string>> = {}): Promise<RunResult> =>
    new Promise((resolve, reject) => {
      const vars = Object.entries({ HOME: dir, TSBUILD_ROOT: store, ...env }).map(([k, v]) => `${k}=${v}`);
      const c = spawn('runuser', ['-u', 'tsbuild-test', '--', 'env', ...vars, 'sh', '-c', script], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      c.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
      c.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      c.on('error', reject);
      c.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
    });
  const user: TestUserDir = {
    dir,
    store,
    give: async (p = dir) => {
      await tool('chown', ['-R', 'tsbuild-test:', p]);
    },
    run,
    ok: async (script, env) => {
      const r = await run(script, env);
      if (r.code !== 0) throw new Error(`as tsbuild-test: ${script} exited ${r.code}:\n${r.stderr.slice(-4000)}`);
      return r;
    },
  };
  try {
    return await fn(user);
  } finally {
    await run(`unshare --map-auto --map-root-user rm -rf ${store} 2>/dev/null; true`).catch(() => undefined);
    await fs.rm(dir, { recursive: true, force: true });
  }
}
