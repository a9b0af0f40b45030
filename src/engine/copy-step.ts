import type { BigIntStats } from 'node:fs';
import type { SourceLocation } from '../errors.js';
import { TsbuildError } from '../errors.js';
import { cacheKeyFor } from '../cache/index.js';
import { rememberLayerIndex } from '../image/layer-index-cache.js';
import { resolveChown, type IdPair } from '../image/users.js';
import { readLayerFile, type LayerIndex } from '../layer/layer-index.js';
import type { LayerEntry } from '../layer/index.js';
import type { Digest } from '../oci/index.js';
import type { Store } from '../store/index.js';
import type { FileDigests } from './file-digests.js';
import { planCopy, type PlannedEntry } from './copy-plan.js';
import { parseChmodSpec, type ChmodSpec } from './chmod-mode.js';
import { keepLinksWhole } from './hardlink-plan.js';
import { resolveSources, type SourceRoot } from './copy-sources.js';
import { archiveKind, unpackArchive } from './add-sources.js';
import { IgnoreMatcher, patternsFromList } from '../context/index.js';
import { viewOf, type StageState } from './stage-state.js';
import { lookupStep, recordStep, withLayer } from './step-cache.js';
import { ReadAhead, mapLimit } from './read-ahead.js';
import { unreadableSource } from './unreadable-source.js';

/** Context files hashed at once for a COPY's cache key (libuv's pool has 4 threads; the rest queue). */
const DIGEST_CONCURRENCY = 16;

/** A COPY or ADD, expanded, with where its sources come from. */
export interface CopyRequest {
  readonly instruction: 'COPY' | 'ADD';
  readonly sources: readonly string[];
  readonly dest: string;
  readonly chown?: string | undefined;
  readonly chmod?: string | undefined;
  /** The expanded instruction text, for history. */
  readonly text: string;
  /** The step's canonical key text (the plan's keyText); defaults to `text`. */
  readonly keyText?: string | undefined;
  readonly location: SourceLocation;
  readonly root: SourceRoot;
  /** Identity of the source root when it is a stage or image (its key), else undefined = context. */
  readonly rootKey?: string | undefined;
  /** More sources of the same instruction from other roots (ADD <url>), already fetched. */
  readonly extraGroups?: ReadonlyArray<{ readonly root: SourceRoot; readonly sources: readonly string[]; readonly key: string; readonly unpacked?: boolean }>;
  /** `--exclude` patterns. */
  readonly exclude?: readonly string[];
  /** COPY --parents: the sources keep their paths (below a `/./` pivot); see copy-parents.ts. */
  readonly parents?: boolean | undefined;
  /** ADD: unpack local tar archives into the destination instead of copying them. */
  readonly unpackArchives?: boolean;
  readonly workdir: string;
}

export interface StepEnv {
  readonly store: Store;
  readonly digests: FileDigests;
  readonly platform: string;
  readonly noCache: boolean;
  readonly sourceDateEpoch?: number | undefined;
  readonly created: string;
  readonly signal?: AbortSignal | undefined;
  /** A private temporary directory, removed when the build ends. */
  tempDir(): Promise<string>;
  /**
   * Makes the build's lease hold what its cache hits deferred (lease-layers.ts); called before a
   * step reads the layers it builds on.
   */
  claim(): Promise<void>;
}

const MAX_ID_FILE = 4 * 1024 * 1024;

/** Reads a file of the image being built (for --chown names), following the merged view. */
export function imageFileReader(env: StepEnv, state: StageState): (p: string) => Promise<string | undefined> {
  return async (p) => {
    const { entry } = viewOf(state).resolve(p);
    if (!entry || (entry.type !== 'file' && entry.type !== 'hardlink')) return undefined;
    const layer = state.layers[entry.layer];
    if (!layer) return undefined;
    await env.claim();
    const buf = await readLayerFile(() => env.store.blobs.openBlob(layer.diffId, { signal: env.signal }), entry.path, MAX_ID_FILE);
    return buf?.toString('utf8');
  };
}

function parseChmod(s: string, location: SourceLocation): ChmodSpec {
  try {
    return parseChmodSpec(s);
  } catch (e) {
    throw new TsbuildError('DOCKERFILE_INSTRUCTION', `invalid --chmod value ${JSON.stringify(s)}: ${(e as Error).message}`, {
      location,
      hint: 'use an octal mode such as 0755, or a symbolic one such as u+x,go-w',
    });
  }
}

/**
 * Runs a COPY/ADD: resolves sources, plans the destination, computes the cache key from
 * the content and metadata of what is copied (never timestamps), and either reuses the
 * cached layer or writes a new one into the store. Returns the new state and whether it
 * was cached.
 */
export async function runCopy(req: CopyRequest, state: StageState, env: StepEnv): Promise<{ state: StageState; cached: boolean }> {
  try {
    return await copyStep(req, state, env);
  } catch (e) {
    // Errors of the source walk carry no location of their own.
    if (e instanceof TsbuildError && !e.location) throw new TsbuildError(e.code, e.message, { location: req.location, hint: e.hint, cause: e });
    throw unreadableSource(e, req.root, req.location) ?? e;
  }
}

async function copyStep(req: CopyRequest, state: StageState, env: StepEnv): Promise<{ state: StageState; cached: boolean }> {
  const chmod = req.chmod === undefined ? undefined : parseChmod(req.chmod, req.location);
  let chown: IdPair | undefined;
  if (req.chown !== undefined) {
    try {
      chown = await resolveChown(req.chown, imageFileReader(env, state));
    } catch (e) {
      if (e instanceof TsbuildError && !e.location) throw new TsbuildError(e.code, e.message, { location: req.location, hint: e.hint, cause: e });
      throw e;
    }
  }
  // --parents sources are planned on their own (planParents below), not resolved here.
  const matches = req.parents ? [] : await withLocation(req.location, () => resolveSources(req.root, req.sources, { instruction: req.instruction, location: req.location }));
  const epoch = env.sourceDateEpoch;
  // Groups of sources by root: the main root, fetched URLs, unpacked archives.
  // `unpacked`: an archive's content, which --chmod leaves as the archive has it (BuildKit's
  // unpack gets the owner but no mode), unlike copied files.
  const groups: Array<{ root: SourceRoot; matches: typeof matches; key?: string; unpacked?: boolean }> = [];
  const plain: typeof matches = [];
  for (const m of matches) {
    const kept: (typeof m)['matches'][number][] = [];
    for (const f of m.matches) {
      const kind = req.unpackArchives && f.stat.isFile() ? await archiveKind(f.abs, env.signal) : undefined;
      if (!kind) {
        kept.push(f);
        continue;
      }
      const dir = await env.tempDir();
      await unpackArchive(f.abs, kind, dir, req.location, env.signal);
      const { stat } = await import('node:fs/promises');
      const content = await env.digests.digestOf(f.abs, await stat(f.abs, { bigint: true }), env.signal);
      groups.push({ root: { dir, kind: 'stage', label: `archive ${f.rel}` }, matches: [{ arg: m.arg, wildcard: false, matches: [{ abs: dir, rel: '', stat: await stat(dir), name: f.name }] }], key: `archive:${f.rel}:${content}`, unpacked: true });
    }
    if (kept.length > 0 || !m.wildcard) plain.push({ ...m, matches: kept });
  }
  for (const g of req.extraGroups ?? []) {
    groups.push({ root: g.root, matches: await resolveSources(g.root, g.sources, { instruction: req.instruction, location: req.location }), key: g.key, unpacked: g.unpacked === true });
  }
  const total = plain.filter((m) => m.matches.length > 0 || !m.wildcard).length + groups.length;
  const exclude = req.exclude && req.exclude.length > 0 ? new IgnoreMatcher(patternsFromList([...req.exclude], '--exclude')) : undefined;
  const planOpts = { dest: req.dest, workdir: req.workdir, view: viewOf(state), chown, chmod, createdMtime: epoch ?? Math.floor(Date.parse(env.created) / 1000), exclude };
  const byPath = new Map<string, PlannedEntry>();
  const plannedMain = await planCopy(req.root, plain.filter((m) => m.matches.length > 0), { ...planOpts, otherSources: total - plain.filter((m) => m.matches.length > 0).length });
  for (const e of plannedMain) byPath.set(e.path, e);
  if (req.parents) {
    const { planParents } = await import('./copy-parents.js');
    const kept = await withLocation(req.location, () => planParents(req.root, req.sources, { ...planOpts, location: req.location, instruction: req.instruction }));
    for (const e of kept) byPath.set(e.path, e);
  }
  for (const g of groups) {
    for (const e of await planCopy(g.root, g.matches, { ...planOpts, ...(g.unpacked ? { chmod: undefined } : {}), otherSources: total - 1 })) byPath.set(e.path, e);
  }
  keepLinksWhole(byPath);
  const planned = [...byPath.values()].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  byPath.clear(); // the async function's frame would keep its 20,000 entries to the end

  // Inputs of the key: every entry's path and metadata and, for files, the content digest.
  // mtimes are left out on purpose: a touched but unchanged file must not miss the cache.
  const inputs: string[] = [];
  if (req.rootKey) inputs.push(`root:${req.rootKey}`);
  for (const g of groups) if (g.key) inputs.push(`group:${g.key}`);
  // SOURCE_DATE_EPOCH changes the layer's bytes (mtimes are clamped), so it is an input.
  if (epoch !== undefined) inputs.push(`epoch:${epoch}`);
  // The files whose content is read, in plan order; `files[i]` is file i of the read-ahead and
  // of the digest lookups below (no maps keyed by path: a COPY may have 20,000 files).
  const files = planned.filter(isSourceFile);
  // One input per entry, made as the key is hashed (not held: 20,000 strings for a big context).
  const keyOf = (content: (fileIndex: number) => Digest | undefined): Digest => {
    function* all(): Generator<string> {
      yield* inputs;
      let fileIndex = 0;
      for (const e of planned) {
        const d = isSourceFile(e) ? content(fileIndex++) : undefined;
        yield `${e.path}\0${e.type}\0${e.mode.toString(8)}\0${e.uid}:${e.gid}\0${e.linkTarget ?? ''}\0${d ?? ''}`;
      }
    }
    return cacheKeyFor({ parent: state.key, kind: req.instruction, instruction: req.keyText ?? req.text, inputs: all(), platform: env.platform });
  };
  const history = { createdBy: `${req.text} # buildkit`, created: env.created };

  // With the cache on, the key (and so every file's content digest) is needed before the
  // layer: the digests come from the stat index or are read, several files at once. With
  // --no-cache nothing is looked up, so each file is read once, for the layer, and its
  // digest taken from the same bytes (ReadAhead); the key follows the layer.
  let key: Digest | undefined;
  if (!env.noCache) {
    const { lstat } = await import('node:fs/promises');
    const digests = await mapLimit(files, DIGEST_CONCURRENCY, async (e) => env.digests.digestOf(e.srcAbs, await lstat(e.srcAbs, { bigint: true }), env.signal));
    key = keyOf((i) => digests[i]);
    const hit = await lookupStep(env.store, key, { noCache: env.noCache, signal: env.signal, claim: env.claim });
    if (hit?.kind === 'layer') return { state: withLayer(state, key, hit.layer, hit.index, history), cached: true };
  }

  // With --no-cache there was no lookup to claim the layers this step builds on.
  if (key === undefined) await env.claim();
  // What the stat index would have learnt from reading each file for the key.
  if (key === undefined) await env.digests.ready();
  const learn = key === undefined ? (_i: number, abs: string, st: BigIntStats, d: Digest) => env.digests.learn(abs, st, d) : undefined;
  const ahead = new ReadAhead(files, { onStat: learn, signal: env.signal });
  const entries: LayerEntry[] = [];
  let fileIndex = 0;
  for (const e of planned) {
    if (e.type !== 'other') entries.push(toLayerEntry(e, isSourceFile(e) ? ahead.source(fileIndex++) : undefined));
  }
  const { layerTarChunks } = await import('../layer/index.js'); // not needed on a cache hit
  // The tar goes into the store chunk by chunk with nothing buffered in between, as ReadAhead's
  // recycled buffers require; the stored blob's digest is the layer's diff ID.
  const stored = await env.store.blobs.putChunks(
    layerTarChunks(entries, { ...(epoch !== undefined ? { sourceDateEpoch: epoch } : {}), ...(env.signal ? { signal: env.signal } : {}) }),
    { signal: env.signal },
  );
  if (key === undefined) {
    const unread = new Map<number, Digest>();
    for (const [i, e] of files.entries()) {
      if (ahead.digest(i) !== undefined) continue;
      // Not read for the layer (cannot happen for a file entry; kept as a safe fallback).
      const { lstat } = await import('node:fs/promises');
      unread.set(i, await env.digests.digestOf(e.srcAbs, await lstat(e.srcAbs, { bigint: true }), env.signal));
    }
    key = keyOf((i) => ahead.digest(i) ?? unread.get(i));
  }
  const index: LayerIndex = {
    entries: planned
      .filter((e) => e.type !== 'other')
      .map((e) => ({ path: e.path, type: e.type, mode: e.mode, uid: e.uid, gid: e.gid, mtime: epoch !== undefined ? Math.min(e.mtime, epoch) : e.mtime, size: e.size, ...(e.linkTarget !== undefined ? { linkTarget: e.linkTarget } : {}) })),
    whiteouts: [],
    opaqueDirs: [],
  };
  await rememberLayerIndex(env.store, stored.digest, index);
  await recordStep(env.store, key, { diffId: stored.digest, size: stored.size });
  return { state: withLayer(state, key, { diffId: stored.digest, size: stored.size }, index, history), cached: false };
}

/**
 * One object literal with the same fields in the same order for every entry: built with
 * spreads, each of 20,000 entries got a hidden class of its own in V8 (~350 bytes apiece).
 */
/** A file entry whose content comes from a host file. */
function isSourceFile(e: PlannedEntry): e is PlannedEntry & { srcAbs: string } {
  return e.type === 'file' && e.srcAbs !== undefined;
}

function toLayerEntry(e: PlannedEntry, source: LayerEntry['source']): LayerEntry {
  if (e.type === 'other') throw new Error('unreachable: other entries are filtered out');
  const link = e.type === 'symlink' || e.type === 'hardlink';
  return {
    path: e.path,
    type: e.type,
    mode: e.mode,
    uid: e.uid,
    gid: e.gid,
    mtime: e.mtime,
    size: e.type === 'file' ? e.size : undefined,
    linkTarget: link ? (e.linkTarget ?? '') : undefined,
    source,
  };
}

async function withLocation<T>(location: SourceLocation, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    if (e instanceof TsbuildError && !e.location) throw new TsbuildError(e.code, e.message, { location, hint: e.hint, cause: e });
    throw e;
  }
}
