import fs from 'node:fs/promises';
import path from 'node:path';
import { contextKind, fetchRemoteContext, redactUrl, type FetchedContext } from '../context/index.js';
import type { NamedContext } from '../engine/index.js';
import { TsbuildError } from '../errors.js';
import { normalizeName } from '../image/index.js';

export interface NamedContexts {
  readonly contexts: ReadonlyMap<string, NamedContext>;
  /** Removes what was fetched (git and tarball contexts); safe to call twice. */
  cleanup(): Promise<void>;
}

/**
 * `--build-context NAME=VALUE` values, as buildx takes them: `docker-image://REF`, a git URL
 * or an https tarball URL (fetched into a temporary directory that `cleanup` removes), or a
 * local directory (relative to `baseDir`). Bad input is a usage error naming the value,
 * before anything is fetched.
 */
export async function resolveNamedContexts(values: readonly string[], baseDir: string, opts: { signal?: AbortSignal; toolPath?: string | undefined; what?: string } = {}): Promise<NamedContexts> {
  const what = opts.what ?? '--build-context';
  const usage = (given: string, why: string, hint?: string) => usageError(what, given, why, hint);
  const parsed = values.map((v) => parseBuildContext(v, usage));
  const contexts = new Map<string, NamedContext>();
  const fetched: FetchedContext[] = [];
  const cleanup = async (): Promise<void> => {
    for (const f of fetched.splice(0)) await f.cleanup().catch(() => undefined);
  };
  try {
    for (const { name, value, given } of parsed) {
      if (contexts.has(name)) throw usage(given, `the name ${JSON.stringify(name)} is given twice`);
      if (value.startsWith('docker-image://')) {
        const ref = value.slice('docker-image://'.length);
        let normalized: string;
        try {
          normalized = normalizeName(ref);
        } catch {
          throw usage(given, `${JSON.stringify(ref)} is not an image reference`);
        }
        contexts.set(name, { kind: 'image', ref: normalized, value });
        continue;
      }
      const kind = contextKind(value);
      if (kind === 'git' || kind === 'url') {
        const f = await fetchRemoteContext(value, kind, { ...(opts.signal ? { signal: opts.signal } : {}), ...(opts.toolPath ? { toolPath: opts.toolPath } : {}) });
        fetched.push(f);
        contexts.set(name, { kind: 'dir', dir: f.dir, value: redactUrl(value) });
        continue;
      }
      if (kind === 'stdin' || /^[a-z][a-z0-9+.-]*:\/\//i.test(value)) {
        throw usage(given, `unknown kind of context ${JSON.stringify(redactUrl(value))}`, 'a value is a directory, docker-image://REF, a git URL or an https:// tarball URL');
      }
      const dir = path.resolve(baseDir, value);
      const st = await fs.stat(dir).catch(() => undefined);
      if (!st?.isDirectory()) throw usage(given, `${JSON.stringify(value)} is not a directory${st ? '' : ' (it does not exist)'}`);
      contexts.set(name, { kind: 'dir', dir: await fs.realpath(dir), value });
    }
  } catch (e) {
    await cleanup();
    throw e;
  }
  return { contexts, cleanup };
}

function parseBuildContext(given: string, usage: (given: string, why: string) => TsbuildError): { name: string; value: string; given: string } {
  const eq = given.indexOf('=');
  const name = eq < 0 ? '' : given.slice(0, eq);
  const value = eq < 0 ? '' : given.slice(eq + 1);
  const shown = eq < 0 ? redactUrl(given) : `${name}=${redactUrl(value)}`;
  if (name === '' || value === '') throw usage(shown, 'expected NAME=VALUE');
  // The name is how FROM and --from spell it: an image-reference-like word, as buildx takes.
  if (!/^[a-zA-Z0-9][a-zA-Z0-9_.\-/:@]*$/.test(name)) throw usage(shown, `${JSON.stringify(name)} is not a valid context name`);
  return { name, value, given: shown };
}

function usageError(what: string, given: string, why: string, hint?: string): TsbuildError {
  return new TsbuildError('USAGE', `${what} ${JSON.stringify(given)}: ${why}`, {
    hint: hint ?? 'use --build-context NAME=DIR, NAME=docker-image://REF, NAME=GIT_URL or NAME=https://.../file.tar.gz',
  });
}
