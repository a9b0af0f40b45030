import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const bin = path.join(repoRoot, 'dist', 'cmd', 'tsbuild.cjs');

export interface RunResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * Runs the compiled CLI (npm run build made it) as a user would, with its own store.
 * Resolves with the exit code; never rejects for a non-zero exit.
 */
export function tsbuild(args: readonly string[], opts: { root?: string; cwd?: string; env?: NodeJS.ProcessEnv; input?: string | Buffer } = {}): Promise<RunResult> {
  return runProcess([process.execPath, bin, ...args], { cwd: opts.cwd ?? repoRoot, env: { ...process.env, ...(opts.root ? { TSBUILD_ROOT: opts.root } : {}), ...opts.env }, input: opts.input });
}

/** Runs a command with exactly `env`; resolves with its exit code and output, never rejects for a non-zero exit. */
export function runProcess(cmd: readonly string[], opts: { cwd: string; env: NodeJS.ProcessEnv; input?: string | Buffer | undefined }): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd[0]!, cmd.slice(1), { cwd: opts.cwd, env: opts.env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
    // A child that exits without reading its input (most commands never read stdin) closes the
    // pipe first: the write fails with EPIPE, which says nothing its exit code does not.
    child.stdin.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code !== 'EPIPE') reject(e);
    });
    child.stdin.end(opts.input ?? '');
  });
}

/** Runs a host tool (skopeo, umoci, podman, tar); rejects with its stderr on failure. */
export function tool(cmd: string, args: readonly string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): Promise<{ stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { cwd: opts.cwd, env: { ...process.env, ...opts.env }, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${cmd} ${args.join(' ')} failed: ${stderr || err.message}`));
      else resolve({ stdout, stderr });
    });
  });
}

/**
 * Removes images a test loaded into podman's store (the machine's containers-storage, which
 * buildah shares), under both names podman may have given them (`localhost/NAME`, and
 * `docker.io/library/NAME` from older podman). Left there, every run of the suite adds images,
 * and buildah and podman read the whole store at each start: a fully cached `buildah build`
 * took 0.14-0.21 s with what earlier runs had left there (7.2 GB of store), 0.05 s on an
 * empty store.
 */
export async function removePodmanImages(...names: string[]): Promise<void> {
  for (const name of names) {
    for (const ref of [`localhost/${name}`, `docker.io/library/${name}`]) await tool('podman', ['rmi', '-f', ref]).catch(() => undefined);
  }
}

/** Fails loudly when a component the test needs is not installed (CI installs it). */
/** The path of `cmd` on PATH; fails loudly when it is missing. */
export async function requireTool(cmd: string): Promise<string> {
  try {
    return (await tool('sh', ['-c', `command -v ${cmd}`])).stdout.trim();
  } catch {
    throw new Error(`${cmd} is not installed; run scripts/setup`);
  }
}

export async function tempDir(prefix: string): Promise<string> {
  return fs.mkdtemp(path.join(os.tmpdir(), `tsbuild-${prefix}-`));
}

/** Writes a tree of files: { 'a/b.txt': 'content' }. */
export async function writeTree(root: string, files: Record<string, string>): Promise<void> {
  for (const [rel, content] of Object.entries(files)) {
    const p = path.join(root, rel);
    await fs.mkdir(path.dirname(p), { recursive: true });
    await fs.writeFile(p, content);
  }
}

/** A store with the busybox base image in it (scripts/make-busybox-image). */
export async function storeWithBusybox(root: string): Promise<void> {
  await tool(path.join(repoRoot, 'scripts', 'make-busybox-image'), [], { env: { TSBUILD_ROOT: root } });
}

/** The system git in `cwd`, with a fixed identity and default branch (tests make their own repositories). */
export function git(cwd: string, ...args: string[]): ReturnType<typeof tool> {
  return tool('git', ['-c', 'user.name=t', '-c', 'user.email=t@example.com', '-c', 'init.defaultBranch=main', ...args], { cwd });
}

/**
 * A `git daemon` serving every repository under `baseDir` on a free loopback port, ready when
 * this resolves (ls-remote of `probe` answers). Stop it with `kill()`.
 */
export async function startGitDaemon(baseDir: string, probe: string): Promise<{ readonly url: (repo: string) => string; kill(): void }> {
  const { spawn } = await import('node:child_process');
  const { freePort } = await import('./registry.js');
  const port = await freePort();
  const daemon = spawn('git', ['daemon', `--base-path=${baseDir}`, '--export-all', '--reuseaddr', '--listen=127.0.0.1', `--port=${port}`, baseDir], { stdio: 'ignore' });
  const url = (repo: string) => `git://127.0.0.1:${port}/${repo}`;
  for (let i = 0; ; i++) {
    try {
      await tool('git', ['ls-remote', url(probe)]);
      break;
    } catch (e) {
      if (i > 50) {
        daemon.kill();
        throw e;
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  return { url, kill: () => daemon.kill() };
}
