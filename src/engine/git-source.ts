/**
 * `ADD <git URL>` (https/http ending in .git, git://, ssh://, git@host:repo; `#ref[:subdir]`;
 * `--keep-git-dir`): the repository is cloned with the system git into a step temp directory
 * and copied like a local directory, its contents into the destination, as BuildKit's
 * llb.Git source. The copy's cache key names the commit actually checked out, so a branch
 * that moved gives a new key and the step runs again; an unchanged one is a cache hit.
 * https://docs.docker.com/reference/dockerfile/#adding-private-git-repositories
 */
import { TsbuildError, type SourceLocation } from '../errors.js';
import { checkoutGit, parseGitRef, redactUrl } from '../context/index.js';
import type { CopySource } from '../cache/index.js';
import type { SourceRoot } from './copy-sources.js';

/** gitutil.ParseGitRef's remotes: a git transport, or an http(s) URL whose path ends in .git. */
export function isGitSource(src: string): boolean {
  if (/^(git:\/\/|ssh:\/\/|git@)/.test(src)) return true;
  if (!/^https?:\/\//i.test(src)) return false;
  try {
    return new URL(src.split('#', 1)[0] ?? src).pathname.endsWith('.git');
  } catch {
    return false;
  }
}

export interface GitSourceOptions {
  readonly tempDir: () => Promise<string>;
  readonly keepGitDir: boolean;
  readonly location: SourceLocation;
  readonly signal?: AbortSignal | undefined;
  /** The build's `--ssh default` agent, used for ssh remotes. */
  readonly sshAuthSock?: string | undefined;
}

/** Clones `src` and returns it as an extra source group of the COPY (contents into dest). */
export async function fetchGitSource(src: string, opts: GitSourceOptions): Promise<{ root: SourceRoot; sources: string[]; source: CopySource }> {
  const ref = parseGitRef(src);
  const repo = await opts.tempDir();
  try {
    const { dir, commit } = await checkoutGit(ref, repo, { signal: opts.signal, keepGitDir: opts.keepGitDir, sshAuthSock: opts.sshAuthSock });
    const label = redactUrl(src);
    return { root: { dir, kind: 'stage', label }, sources: ['.'], source: { kind: 'git', remote: redactUrl(ref.remote), commit, subdir: ref.subdir ?? '', keepGitDir: opts.keepGitDir } };
  } catch (e) {
    if (e instanceof TsbuildError) throw new TsbuildError(e.code, `ADD ${redactUrl(src)}: ${e.message}`, { location: opts.location, hint: e.hint, cause: e });
    throw e;
  }
}
