import fs from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from 'pino';
import { TsbuildError, isAbortError } from '../errors.js';
import type { BuildEnv, BuildReporter, BuildRequest, DockerfileSource, OutputSpec } from '../engine/index.js';
import type { BuildSecret } from '../engine/index.js';
import { formatPlatform, hostPlatform, normalizePlatform, parsePlatform, type Platform } from '../oci/index.js';
import type { RegistryClient } from '../registry/index.js';
import type { Store } from '../store/index.js';

/**
 * The request and environment of a build, made the same way for `tsbuild build` (cli/) and
 * `build()` (the API): each front end turns its own input (flags, typed options) into these
 * values and calls `runBuild`, so both reject the same mistakes with the same codes.
 */

/** Reads `NAME=VALUE`, or `NAME` (value from the environment, as docker does; unset: left out). */
export function parseBuildArgs(list: readonly string[], env: NodeJS.ProcessEnv): Map<string, string> {
  const out = new Map<string, string>();
  for (const item of list) {
    const eq = item.indexOf('=');
    if (eq === 0) throw new TsbuildError('USAGE', `invalid --build-arg ${JSON.stringify(item)}: the name is empty`);
    if (eq < 0) {
      const v = env[item];
      if (v !== undefined) out.set(item, v);
      continue;
    }
    out.set(item.slice(0, eq), item.slice(eq + 1));
  }
  return out;
}

/**
 * `id=ID,src=FILE` or `id=ID,env=VAR` (buildx's `--secret` forms; `type=file|env` accepted).
 * Values stay out of logs and errors: a missing file is named, its content never shown.
 */
export async function parseSecrets(list: readonly string[], env: NodeJS.ProcessEnv, cwd: string): Promise<Map<string, BuildSecret>> {
  const out = new Map<string, BuildSecret>();
  for (const item of list) {
    const fields = new Map<string, string>();
    for (const part of item.split(',')) {
      const eq = part.indexOf('=');
      if (eq <= 0) throw new TsbuildError('USAGE', `invalid --secret field ${JSON.stringify(part)}: use id=ID,src=FILE or id=ID,env=VAR`);
      fields.set(part.slice(0, eq).toLowerCase(), part.slice(eq + 1));
    }
    const id = fields.get('id');
    if (!id) throw new TsbuildError('USAGE', '--secret needs id=ID');
    const src = fields.get('src') ?? fields.get('source');
    const envName = fields.get('env');
    if (src !== undefined) {
      const file = path.resolve(cwd, src);
      try {
        await fs.access(file);
      } catch {
        throw new TsbuildError('USAGE', `--secret id=${id}: cannot read ${src}`);
      }
      out.set(id, { id, file });
    } else {
      const name = envName ?? id;
      const value = env[name];
      if (value === undefined) throw new TsbuildError('USAGE', `--secret id=${id}: the environment variable ${name} is not set`);
      out.set(id, { id, value });
    }
  }
  return out;
}

/** `KEY=VALUE` labels. */
export function parseLabels(list: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const item of list) {
    const eq = item.indexOf('=');
    if (eq <= 0) throw new TsbuildError('USAGE', `invalid --label ${JSON.stringify(item)}: use KEY=VALUE`);
    out[item.slice(0, eq)] = item.slice(eq + 1);
  }
  return out;
}

/**
 * `TSBUILD_SNAPSHOTTER=overlay|copy` forces how RUN snapshots are made (default: overlay
 * where the sandbox can mount it, else copy-and-walk); tests use it to compare the two.
 */
export function snapshotterFromEnv(env: NodeJS.ProcessEnv): 'auto' | 'overlay' | 'copy' {
  const v = env.TSBUILD_SNAPSHOTTER;
  if (v === undefined || v === '' || v === 'auto') return 'auto';
  if (v === 'overlay' || v === 'copy') return v;
  throw new TsbuildError('USAGE', `TSBUILD_SNAPSHOTTER must be overlay, copy or auto, not ${JSON.stringify(v)}`);
}

/**
 * `TSBUILD_RUN_SYNC=keep` lets RUN steps' fsync, fdatasync, syncfs, sync and sync_file_range
 * reach the disk; by default (`suppress`) they return at once (sandbox/suppress-sync.ts).
 */
export function runSyncFromEnv(env: NodeJS.ProcessEnv): 'suppress' | 'keep' {
  const v = env.TSBUILD_RUN_SYNC;
  if (v === undefined || v === '' || v === 'suppress') return 'suppress';
  if (v === 'keep') return v;
  throw new TsbuildError('USAGE', `TSBUILD_RUN_SYNC must be suppress or keep, not ${JSON.stringify(v)}`);
}

/** The build context directory, absolute; CONTEXT_NOT_FOUND when it is not a directory. */
export async function resolveContextDir(context: string, cwd: string): Promise<string> {
  const contextDir = path.resolve(cwd, context);
  const st = await fs.stat(contextDir).catch(() => undefined);
  if (!st?.isDirectory()) {
    throw new TsbuildError('CONTEXT_NOT_FOUND', `build context ${JSON.stringify(context)} is not a directory`, { hint: 'pass the directory holding your sources, e.g. `tsbuild build .`' });
  }
  return contextDir;
}

/**
 * The Dockerfile: `file` (relative to `cwd`), else CONTEXT/Dockerfile; `readStdin` serves
 * `file === '-'` (the CLI's `-f -`; the API has no stdin and passes none).
 */
export async function readDockerfile(opts: { readonly contextDir: string; readonly file: string | undefined; readonly cwd: string; readonly readStdin?: () => Promise<Buffer> }): Promise<DockerfileSource> {
  const { contextDir, file, cwd } = opts;
  if (file === '-') {
    if (!opts.readStdin) throw new TsbuildError('USAGE', 'file "-" (the Dockerfile from stdin) is for the command line only', { hint: 'name a Dockerfile path' });
    return { name: 'Dockerfile', text: await opts.readStdin() };
  }
  const p = file ? path.resolve(cwd, file) : path.join(contextDir, 'Dockerfile');
  let text: Buffer;
  try {
    text = await fs.readFile(p);
  } catch {
    throw new TsbuildError('DOCKERFILE_NOT_FOUND', `cannot read the Dockerfile ${file ?? path.relative(cwd, p) ?? 'Dockerfile'}`, {
      hint: file ? undefined : 'put a Dockerfile in the context or name one with -f',
    });
  }
  return { name: file ?? (path.relative(cwd, p) || 'Dockerfile'), path: p, text };
}

/**
 * `--platform` values (each may be a comma-separated list, as buildx takes them) as target
 * platforms, normalised, in order; undefined when none is given (the host's). A value that does
 * not parse, or one named twice, is a usage error (exit 2).
 */
export function parsePlatforms(values: readonly string[]): Platform[] | undefined {
  const out: Platform[] = [];
  const seen = new Set<string>();
  for (const value of values) {
    for (const item of value.split(',')) {
      const text = item.trim();
      if (text === '') continue;
      let p: Platform;
      try {
        p = normalizePlatform(parsePlatform(text));
      } catch (e) {
        if (e instanceof TsbuildError) throw new TsbuildError('USAGE', `--platform: ${e.message}`, { ...(e.hint !== undefined ? { hint: e.hint } : {}) });
        throw e;
      }
      if (p.os !== 'linux') throw new TsbuildError('USAGE', `--platform ${text}: tsbuild builds Linux images`, { hint: 'use linux/ARCH, e.g. linux/arm64' });
      const key = formatPlatform(p);
      if (seen.has(key)) throw new TsbuildError('USAGE', `--platform names ${key} twice`);
      seen.add(key);
      out.push(p);
    }
  }
  return out.length > 0 ? out : undefined;
}

/**
 * Tags go to the local store (as `buildah build -t` and `docker build -t` do) unless an output
 * says otherwise; a `type=registry` output pushes them instead (buildx with a container
 * driver: `-o type=registry` does not load), so then they are not tagged locally.
 * A registry output with no name= needs a tag to push to: a usage error without one.
 */
export function withDefaultOutputs(tags: readonly string[], outputs: readonly OutputSpec[]): OutputSpec[] {
  const out = [...outputs];
  if (tags.length === 0 && out.some((o) => o.type === 'registry' && o.name === undefined)) {
    throw new TsbuildError('USAGE', '--output type=registry needs name=REF or at least one -t NAME to push to');
  }
  if (out.length === 0 || (tags.length > 0 && !out.some((o) => o.type === 'image' || o.type === 'registry'))) {
    if (tags.length > 0 || out.length === 0) out.unshift({ type: 'image' });
  }
  return out;
}

/** The build's environment: the engine's capabilities, handed in (STYLE.md 3). */
export interface BuildEnvParts {
  readonly store: Store;
  readonly signal: AbortSignal;
  readonly report: BuildReporter;
  /** RFC 3339 `created` of the image (SOURCE_DATE_EPOCH or now). */
  readonly created: string;
  readonly logger: () => Logger;
  readonly registry: () => Promise<RegistryClient>;
  /** The caller's PATH, where the sandbox looks for its tools. */
  readonly toolPath: string | undefined;
  /** `TSBUILD_BINFMT_MISC`: where binfmt_misc is read (default /proc/sys/fs/binfmt_misc). */
  readonly binfmtDir?: string | undefined;
}

export function buildEnvFor(p: BuildEnvParts): BuildEnv {
  return {
    store: p.store,
    signal: p.signal,
    report: p.report,
    platform: hostPlatform(),
    created: p.created,
    logger: p.logger,
    registry: p.registry,
    ...(p.toolPath !== undefined ? { toolPath: p.toolPath } : {}),
    ...(p.binfmtDir !== undefined && p.binfmtDir !== '' ? { binfmtDir: p.binfmtDir } : {}),
  };
}

/** What a build gives back to a program: the image ID, the manifest digest (the pushed one after a push) and buildx's metadata. */
export interface BuildOutcome {
  /** The config digest (docker's image ID); a multi-platform build's: its index digest. */
  readonly imageId: string;
  /** The manifest digest: the registry's after a push, else the local store's. */
  readonly digest: string;
  /** The keys of buildx's `--metadata-file`: containerimage.config.digest, containerimage.digest, containerimage.descriptor, image.name. */
  readonly metadata: Readonly<Record<string, unknown>>;
}

/**
 * Runs the engine's `build(request, env)` and gives back the metadata it made (the same
 * document as `--metadata-file`, which it writes when the request names one; a push's registry
 * digest is in it). An abort of `env.signal` becomes CANCELLED (exit code 130), whatever raised it.
 */
export async function runBuild(req: BuildRequest, env: BuildEnv): Promise<BuildOutcome> {
  try {
    // Loaded here: api/index.ts stays light for the commands that import it.
    const { build: engineBuild } = await import('../engine/index.js');
    const result = await engineBuild(req, env);
    const metadata = result.metadata;
    const built = result.index ?? result.image.manifestDescriptor;
    const digest = typeof metadata['containerimage.digest'] === 'string' ? metadata['containerimage.digest'] : built.digest;
    // A multi-platform build's ID is its index's digest (as --iidfile of buildx).
    return { imageId: result.index?.digest ?? result.image.configDescriptor.digest, digest, metadata };
  } catch (err) {
    throw asCancelled(err, env.signal);
  }
}

/** An abort (of `signal`, or anything an abort raised) as the typed CANCELLED error; other errors as they are. */
export function asCancelled(err: unknown, signal: AbortSignal | undefined): unknown {
  if (err instanceof TsbuildError && err.code === 'CANCELLED') return err;
  // Once the signal fired, whatever failed failed because of it (a killed RUN step, an aborted read).
  if (isAbortError(err) || signal?.aborted === true) {
    return new TsbuildError('CANCELLED', 'cancelled', { cause: err, exitCode: 130 });
  }
  return err;
}
