/**
 * Build contexts that are not a local directory, as buildx takes them: a git repository
 * (`https://host/repo.git#ref:subdir`, `git://`, `ssh://`, `git@host:repo`), a tarball URL, or
 * `-` (a tar on stdin). Each is fetched into a temporary directory, which is then built as a
 * local context and removed by `cleanup()` whatever happened.
 *
 * Git runs as the system `git` (credentials and ssh come from the user's git configuration;
 * nothing prompts). Archives are unpacked with the layer applier, so no entry leaves the
 * directory. A URL's user information never appears in a message.
 * https://docs.docker.com/build/concepts/context/#remote-context
 */
import { createRequire } from 'node:module';
import { createReadStream, createWriteStream } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { hasDeferredExtraCa } from '../host/index.js';
import { TsbuildError } from '../errors.js';

export type ContextKind = 'local' | 'git' | 'url' | 'stdin';

export interface FetchedContext {
  /** The directory to build as the context. */
  readonly dir: string;
  /** A Dockerfile given as the whole context (a plain-text URL or stdin), when there is one. */
  readonly dockerfile?: Buffer;
  /** Removes everything fetched. Safe to call twice. */
  cleanup(): Promise<void>;
}

export interface GitRef {
  readonly remote: string;
  /** Branch, tag or commit; absent for the remote's HEAD. */
  readonly ref?: string;
  readonly subdir?: string;
}

/** buildx's test for a git context (gitutil.ParseGitRef's schemes and the `.git` suffix). */
export function contextKind(arg: string): ContextKind {
  if (arg === '-') return 'stdin';
  if (/^(git:\/\/|ssh:\/\/|git@)/.test(arg)) return 'git';
  if (/^https?:\/\//.test(arg)) {
    const base = arg.split('#', 1)[0] ?? arg;
    let pathname = '';
    try {
      pathname = new URL(base).pathname;
    } catch {
      return 'url';
    }
    return pathname.endsWith('.git') ? 'git' : 'url';
  }
  return 'local';
}

/** `URL#ref:subdir` split as buildx does (the fragment is `ref[:subdir]`). */
export function parseGitRef(arg: string): GitRef {
  const hash = arg.indexOf('#');
  const remote = hash < 0 ? arg : arg.slice(0, hash);
  const fragment = hash < 0 ? '' : arg.slice(hash + 1);
  const colon = fragment.indexOf(':');
  const ref = colon < 0 ? fragment : fragment.slice(0, colon);
  const subdir = colon < 0 ? '' : fragment.slice(colon + 1);
  return { remote, ...(ref !== '' ? { ref } : {}), ...(subdir !== '' ? { subdir } : {}) };
}

/** The URL without its user information (passwords and tokens stay out of messages). */
export function redactUrl(u: string): string {
  return u.replace(/^([a-z][a-z0-9+.-]*:\/\/)[^/@]*@/i, '$1');
}

export interface FetchOptions {
  readonly signal?: AbortSignal | undefined;
  readonly stdin?: NodeJS.ReadableStream | undefined;
  /** Parent of the temporary directory (default: the system's temp directory). */
  readonly tmpDir?: string | undefined;
  /** PATH for `git` and the decompressors. */
  readonly toolPath?: string | undefined;
}

/** Fetches a remote context. Throws CONTEXT_NOT_FOUND / FETCH_FAILED naming what was given. */
export async function fetchRemoteContext(arg: string, kind: Exclude<ContextKind, 'local'>, opts: FetchOptions = {}): Promise<FetchedContext> {
  const top = await fs.mkdtemp(path.join(opts.tmpDir ?? os.tmpdir(), 'tsbuild-context-'));
  const cleanup = async (): Promise<void> => {
    await fs.rm(top, { recursive: true, force: true });
  };
  try {
    const fetched = kind === 'git' ? await fetchGit(arg, top, opts) : await fetchArchive(arg, kind, top, opts);
    return { ...fetched, cleanup };
  } catch (e) {
    await cleanup();
    throw e;
  }
}

// child_process (and net with it) loads on first use: every build imports this folder, and
// only a remote context or ADD <git URL> runs git (start-up cost, docs/benchmarks.md).
const require = createRequire(import.meta.url);

function run(cmd: string, args: readonly string[], opts: FetchOptions & { cwd: string; extraEnv?: Record<string, string> }): Promise<{ code: number; stderr: string; stdout: string }> {
  const { spawn } = require('node:child_process') as typeof import('node:child_process');
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {
      cwd: opts.cwd,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, ...(opts.toolPath !== undefined ? { PATH: opts.toolPath } : {}), GIT_TERMINAL_PROMPT: '0', GIT_ASKPASS: 'true', SSH_ASKPASS: 'true', ...opts.extraEnv },
      ...(opts.signal ? { signal: opts.signal } : {}),
    });
    let stderr = '';
    let stdout = '';
    child.stdout?.on('data', (d: Buffer) => {
      if (stdout.length < 16384) stdout += d.toString();
    });
    child.stderr?.on('data', (d: Buffer) => {
      if (stderr.length < 16384) stderr += d.toString();
    });
    child.on('error', (e) => reject(e));
    child.on('close', (code) => resolve({ code: code ?? 1, stderr, stdout }));
  });
}

/** The last meaningful line git printed, without credentials. */
function gitReason(stderr: string): string {
  const lines = stderr.split('\n').map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('hint:'));
  return redactUrl(lines[lines.length - 1] ?? 'git failed').replace(/(https?:\/\/)[^/@\s]*@/g, '$1');
}

async function fetchGit(arg: string, top: string, opts: FetchOptions): Promise<{ dir: string }> {
  const repo = path.join(top, 'repo');
  await fs.mkdir(repo);
  return { dir: (await checkoutGit(parseGitRef(arg), repo, opts)).dir };
}

export interface CheckoutOptions extends FetchOptions {
  /** Keep `.git` (ADD --keep-git-dir); its origin URL is stored without user information. */
  readonly keepGitDir?: boolean | undefined;
  /** The ssh agent socket for ssh remotes (the build's `--ssh default`). */
  readonly sshAuthSock?: string | undefined;
}

/**
 * Clones `ref` (shallow where the server allows it) into the empty directory `repo` with the
 * system git, submodules included. Returns the directory of `ref.subdir` (checked to stay in
 * the repository, symlinks resolved) and the commit checked out: what a cache key must name, so
 * that a moved branch gives another key. Errors name the URL (without credentials) and the ref.
 */
export async function checkoutGit(ref: GitRef, repo: string, opts: CheckoutOptions = {}): Promise<{ dir: string; commit: string }> {
  const { remote, subdir } = ref;
  const shown = redactUrl(remote);
  const runOpts = { ...opts, ...(opts.sshAuthSock !== undefined ? { extraEnv: { SSH_AUTH_SOCK: opts.sshAuthSock } } : {}) };
  const git = async (args: readonly string[]): Promise<{ code: number; stderr: string; stdout: string }> => {
    try {
      return await run('git', ['-c', 'advice.detachedHead=false', ...args], { ...runOpts, cwd: repo });
    } catch (e) {
      throw new TsbuildError('UNSUPPORTED', `cannot run git to fetch ${shown}: ${(e as Error).message}`, { hint: 'install git (apt-get install git)' });
    }
  };
  const must = async (args: readonly string[], what: string): Promise<string> => {
    const r = await git(args);
    if (r.code !== 0) {
      throw new TsbuildError('FETCH_FAILED', `${what}: ${gitReason(r.stderr)}`, { hint: 'check the URL, the ref and your access to the repository' });
    }
    return r.stdout;
  };
  await must(['init', '-q'], `git init for ${shown}`);
  await must(['remote', 'add', 'origin', remote], `git remote ${shown}`);
  const want = ref.ref ?? 'HEAD';
  const shallow = await git(['fetch', '-q', '--depth=1', '--no-tags', 'origin', want]);
  if (shallow.code !== 0) {
    // A commit id the server will not serve shallowly: fetch everything, then look for it.
    if (ref.ref !== undefined && /^[0-9a-f]{7,64}$/.test(ref.ref)) {
      await must(['fetch', '-q', '--tags', 'origin'], `cannot fetch ${shown}`);
      const found = await git(['rev-parse', '--verify', '-q', `${ref.ref}^{commit}`]);
      if (found.code !== 0) throw new TsbuildError('FETCH_FAILED', `${shown}: no commit ${ref.ref} in the repository`, { hint: 'name a branch, a tag or a commit of the repository after #' });
      await must(['checkout', '-q', ref.ref], `checkout ${ref.ref} of ${shown}`);
    } else {
      const reason = gitReason(shallow.stderr);
      const badRef = /couldn't find remote ref|not our ref|invalid refspec/i.test(shallow.stderr);
      throw new TsbuildError('FETCH_FAILED', badRef ? `${shown}: no branch, tag or commit ${JSON.stringify(want)} (${reason})` : `cannot fetch the git repository ${shown}: ${reason}`, {
        hint: badRef ? 'name a branch, a tag or a commit of the repository after #' : 'check the URL and that the repository is reachable',
      });
    }
  } else {
    await must(['checkout', '-q', 'FETCH_HEAD'], `checkout of ${shown}`);
  }
  const commit = (await must(['rev-parse', 'HEAD'], `rev-parse in ${shown}`)).trim();
  if (await fs.stat(path.join(repo, '.gitmodules')).then(() => true, () => false)) {
    await must(['submodule', 'update', '--init', '--recursive', '--depth=1'], `a submodule of ${shown} could not be fetched`);
  }
  if (opts.keepGitDir) await must(['remote', 'set-url', 'origin', shown], `git remote ${shown}`);
  else await fs.rm(path.join(repo, '.git'), { recursive: true, force: true });
  if (subdir === undefined) return { dir: repo, commit };
  const dir = path.resolve(repo, subdir);
  const real = await fs.realpath(dir).catch(() => undefined);
  const realRepo = await fs.realpath(repo);
  if (real === undefined || (real !== realRepo && !real.startsWith(realRepo + path.sep)) || !(await fs.stat(real)).isDirectory()) {
    throw new TsbuildError('CONTEXT_NOT_FOUND', `${shown}: the subdirectory ${JSON.stringify(subdir)} is not a directory inside the repository`, { hint: 'after #REF: give a path inside the repository' });
  }
  return { dir: real, commit };
}

/** A tarball (tar, gzip, bzip2, xz, zstd) from a URL or stdin; plain text is a Dockerfile. */
async function fetchArchive(arg: string, kind: 'url' | 'stdin', top: string, opts: FetchOptions): Promise<{ dir: string; dockerfile?: Buffer }> {
  const download = path.join(top, 'download');
  const shown = kind === 'stdin' ? 'the build context on stdin' : redactUrl(arg);
  if (kind === 'stdin') {
    if (opts.stdin === undefined) throw new TsbuildError('USAGE', 'no stdin to read the build context from');
    await pipeline(opts.stdin, createWriteStream(download, { mode: 0o600 }), opts.signal ? { signal: opts.signal } : {});
  } else {
    let res: Response;
    try {
      res = await fetch(arg, { redirect: 'follow', ...(await fetchDispatcherInit()), ...(opts.signal ? { signal: opts.signal } : {}) });
    } catch (e) {
      throw new TsbuildError('FETCH_FAILED', `cannot fetch the build context ${shown}: ${(e as { cause?: { code?: string } }).cause?.code ?? (e as Error).message}`, { hint: 'check the URL and that the server is reachable' });
    }
    if (!res.ok || res.body === null) {
      throw new TsbuildError('FETCH_FAILED', `cannot fetch the build context ${shown}: HTTP ${res.status}`, { hint: 'check the URL' });
    }
    await pipeline(Readable.fromWeb(res.body as import('node:stream/web').ReadableStream<Uint8Array>), createWriteStream(download, { mode: 0o600 }), opts.signal ? { signal: opts.signal } : {});
  }
  const { archiveKind, unpackArchive } = await import('../engine/index.js');
  const archive = await archiveKind(download, opts.signal);
  const dir = path.join(top, 'context');
  await fs.mkdir(dir);
  if (archive === undefined) {
    // buildx: a context that is no archive is the Dockerfile, with an empty context.
    const text = await fs.readFile(download);
    await fs.rm(download, { force: true });
    return { dir, dockerfile: text };
  }
  if (archive === 'gzip') {
    const { createGunzip } = await import('node:zlib');
    const plain = path.join(top, 'download.tar');
    try {
      await pipeline(createReadStream(download), createGunzip(), createWriteStream(plain, { mode: 0o600 }), opts.signal ? { signal: opts.signal } : {});
    } catch (e) {
      throw new TsbuildError('ARCHIVE_INVALID', `${shown}: not a valid gzip archive: ${(e as Error).message}`);
    }
    await fs.rm(download, { force: true });
    await fs.rename(plain, download);
  }
  try {
    // A context never brings device nodes onto the host, even when tsbuild runs as root.
    await unpackArchive(download, archive === 'gzip' ? 'tar' : archive, dir, { file: shown, startLine: 1, endLine: 1 }, opts.signal, { allowDevices: false });
  } catch (e) {
    if (e instanceof TsbuildError) throw new TsbuildError(e.code, `build context ${shown}: ${e.message.replace(/^ADD [^:]*: /, '')}`, { hint: e.hint });
    throw e;
  } finally {
    await fs.rm(download, { force: true });
  }
  return { dir };
}

/**
 * fetch()'s options for an https download (a remote context, ADD <url>): the dispatcher that
 * knows the NODE_EXTRA_CA_CERTS the launcher deferred (host/extra-ca.ts), loading registry/
 * only then; none otherwise.
 */
export async function fetchDispatcherInit(): Promise<Pick<RequestInit, 'dispatcher'>> {
  if (!hasDeferredExtraCa()) return {};
  const { fetchDispatcher } = await import('../registry/index.js');
  return { dispatcher: fetchDispatcher() as RequestInit['dispatcher'] };
}
