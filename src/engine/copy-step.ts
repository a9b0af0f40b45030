import type { BigIntStats } from 'node:fs';
import { createHash } from 'node:crypto';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { cacheKeyFor, type CacheKey, type CopiedEntry, type CopySource, type StateKey, type StepKeyInputs } from '../cache/index.js';
import { IgnoreMatcher, patternsFromList } from '../context/index.js';
import { TsbuildError, withLocation, type SourceLocation } from '../errors.js';
import { knownLayerIndex, rememberLayerIndex, RootfsView } from '../image/index.js';
import { resolveChown, type IdPair } from '../image/index.js';
import { readLayerFile, type LayerIndex } from '../layer/layer-index.js';
import type { LayerEntry } from '../layer/index.js';
import { displayName, fsPath, isDigest, keyName, type Digest } from '../oci/index.js';
import type { AddStep, CopyStep } from '../plan/index.js';
import { archiveKind, fetchUrl, isRemoteSource, unpackArchive } from './add-sources.js';
import { fetchGitSource, isGitSource } from './git-source.js';
import { parseChmodSpec, type ChmodSpec } from './chmod-mode.js';
import { keepLinksWhole } from './hardlink-plan.js';
import { unreadableSource } from './unreadable-source.js';
import { planCopy, sortedByPath, type PlannedEntry } from './copy-plan.js';
import { resolveSources, type SourceMatch, type SourceRoot } from './copy-sources.js';
import type { BuildSession } from './session.js';
import { lookInto, readRecordedFile, viewOf, type StageState } from './stage-state.js';
import type { LayerChange, MadeLayer, StepContext, StepModule } from './step.js';

/** Context files hashed at once for a COPY's cache key (libuv's pool has 4 threads; the rest queue). */
const DIGEST_CONCURRENCY = 16;

const MAX_ID_FILE = 4 * 1024 * 1024;

/**
 * COPY and ADD: resolves sources (the context, another stage or image, downloads, here-documents,
 * archives to unpack), plans the destination, and makes the key from the content and metadata of
 * what is copied (never timestamps). On a miss the layer is written into the store.
 */
export const copyStep: StepModule<CopyStep | AddStep> = {
  async prepare(step, ctx): Promise<LayerChange> {
    // COPY --from a stage or an image, ADD of archives: the key is made from the files copied,
    // read from the source unpacked; seen before on the same inputs, the key is known without.
    const alias = await copyAlias(step, ctx);
    if (alias?.key !== undefined) {
      const key = alias.key;
      return {
        kind: 'layer',
        keyInputs: undefined,
        key,
        history: step.history ?? `${step.kind} ${step.sources.join(' ')} ${step.dest} # buildkit`,
        linked: step.link && step.chmod === undefined,
        // On a miss after all (its record went between the two lookups): prepared as usual.
        async execute() {
          const full = await prepareCopy(step, ctx, alias);
          const out = await full.execute();
          return { made: out.made, keyInputs: full.keyInputs ?? out.keyInputs };
        },
      };
    }
    return prepareCopy(step, ctx, alias);
  },
};

/**
 * meta/copy-alias.<hash>.json, `{key}`: the key a COPY --from or an ADD of local archives had,
 * by what decides it apart from the files it reads: the instruction, the destination's state
 * (its key and its layers' diff IDs), the working directory, epoch and platform, and the source:
 * for COPY --from the source state (key and layers), for ADD each archive's name, kind and
 * content digest. Planned and keyed once, such a step is looked up by that key next time,
 * without unpacking the source stage, image or archive and hashing what it copies (a COPY --from
 * a Debian stage unpacked 127 MB at every fully cached build). An exported cache carries the
 * aliases of its entries (remote-cache/cache-document.ts CacheEntry.aliases): on a machine that
 * has no record, the key comes from the imported caches, so a fully cached multi-stage build on
 * a fresh CI runner does not pull and unpack a builder stage to find its COPY --from is a hit.
 * When the key has no entry (pruned, or never recorded) the step is prepared as usual; `name` is
 * where that records the key.
 */
async function copyAlias(step: CopyStep | AddStep, ctx: StepContext): Promise<CopyAlias | undefined> {
  if (step.contents.length > 0 || ctx.noCache) return undefined;
  const { session, inputs, state } = ctx;
  const sides = step.kind === 'COPY' ? await copyFromSource(step, ctx) : await addedArchives(step, ctx);
  if (sides === undefined) return undefined;
  const identity = JSON.stringify({
    instruction: step.keyText,
    parent: state.key,
    parentLayers: state.layers.map((l) => l.diffId),
    workdir: state.config.config?.WorkingDir ?? '',
    ...sides,
    epoch: inputs.sourceDateEpoch ?? null,
    platform: ctx.platformText,
  });
  const alias = createHash('sha256').update(identity).digest('hex');
  const name = `copy-alias.${alias}`;
  const doc = (await session.store.readMeta(name, { memo: true, maxBytes: 4096, signal: session.signal }).catch(() => undefined)) as { key?: unknown } | undefined;
  const local = typeof doc?.key === 'string' && isDigest(doc.key) ? (doc.key as CacheKey) : undefined;
  // Only a key the cache still answers for: else the step is planned, keyed and looked up as usual.
  if (local !== undefined && (await session.lookup(local)) !== undefined) {
    session.noteAlias(alias, local);
    return { name, alias, key: local };
  }
  const imported = await session.importedAliasKey(alias);
  if (imported !== undefined && imported !== local && (await session.lookup(imported)) !== undefined) {
    session.noteAlias(alias, imported);
    // Kept here too (a memo), so the next build on this machine needs no import for it.
    await session.store.writeMeta(name, { key: imported }, { memo: true, signal: session.signal }).catch(() => undefined);
    return { name, alias, key: imported };
  }
  return { name, alias, key: undefined };
}

/** A COPY --from's or ADD's alias: its record's name, the alias itself (hex), and the key it leads to, if the cache still answers for it. */
interface CopyAlias {
  readonly name: string;
  readonly alias: string;
  readonly key: CacheKey | undefined;
}

/** A COPY --from's source state, as its alias identity names it (no files read). */
async function copyFromSource(step: CopyStep, ctx: StepContext): Promise<Record<string, unknown> | undefined> {
  if (step.source.kind === 'context') return undefined;
  const source = await ctx.session.sourceState(step.source, step.location);
  return source === undefined ? undefined : { source: source.key, sourceLayers: source.layers.map((l) => l.diffId) };
}

/**
 * An ADD whose sources are all local archives it unpacks (`ADD rootfs.tar.xz /`): each by its
 * name, kind and content digest (the stat index's, read again only when the file changed), so
 * a hit unpacks nothing (a cached ADD of a 121 MB tar unpacked it at every build: 3.5 s).
 * Undefined for any other ADD, which is prepared as usual.
 */
async function addedArchives(step: AddStep, ctx: StepContext): Promise<Record<string, unknown> | undefined> {
  if (step.unpack === false || step.sources.some((s) => isGitSource(s) || isRemoteSource(s))) return undefined;
  const { inputs, session } = ctx;
  const matches = await resolveSources(inputs.contextRoot, step.sources, { instruction: step.kind, location: step.location }).catch(() => undefined);
  if (matches === undefined) return undefined; // the full path says what is wrong, with its location
  const archives: Array<[string, string, string, Digest]> = [];
  for (const m of matches) {
    if (m.matches.length === 0) return undefined;
    for (const f of m.matches) {
      if (!f.stat.isFile()) return undefined;
      const kind = await archiveKind(f.abs, session.signal);
      if (kind === undefined) return undefined;
      archives.push([m.arg, f.rel, kind, await inputs.digests.digestOf(f.abs, await fsp.stat(fsPath(f.abs), { bigint: true }), session.signal)]);
    }
  }
  return { archives };
}

async function prepareCopy(step: CopyStep | AddStep, ctx: StepContext, alias: CopyAlias | undefined): Promise<LayerChange> {
  const { session, inputs } = ctx;
  const from = await sourcesOf(step, ctx);
  // Errors of the source walk carry no location of their own; an unreadable source is the user's to fix.
  const located = <T>(fn: () => Promise<T>): Promise<T> => fn().catch((e: unknown) => {
    throw copyError(e, from.root, step.location);
  });
  const { planned, groups } = await located(() => planEntries(step, ctx, from));
  // Sockets, fifos and devices are not content: skipped, each named (BuildKit's file sender
  // leaves them out too), never silently.
  for (const e of planned) {
    if (e.skipped) session.warn(`${step.kind}: ${JSON.stringify(displayName(e.skipped.rel))} of the ${from.root.label} is a ${e.skipped.what}: not copied`, step.location);
  }
  // The files whose content is read, in plan order; `files[i]` is file i of the read-ahead and
  // of the digest lookups below (no maps keyed by path: a COPY may have 20,000 files).
  const files = planned.filter(isSourceFile);
  const keyInputs = (content: (fileIndex: number) => Digest | undefined): StepKeyInputs => ({
    // --link: made on an empty tree, so nothing below is part of the key (the dispatcher
    // keys the state after it by both).
    parent: from.linked ? 'scratch' : ctx.state.key,
    kind: step.kind,
    instruction: step.keyText,
    sources: [...(from.rootKey ? [{ kind: 'state', key: from.rootKey } as const] : []), ...groups.map((g) => g.source)],
    epoch: inputs.sourceDateEpoch,
    // One entry per destination path, made as the key is hashed (not held: 20,000 objects for a big context).
    entries: {
      *[Symbol.iterator](): Generator<CopiedEntry> {
        let fileIndex = 0;
        for (const e of planned) yield { path: keyName(e.path), type: e.type, mode: e.mode, uid: e.uid, gid: e.gid, linkTarget: e.linkTarget === undefined ? undefined : keyName(e.linkTarget), content: isSourceFile(e) ? content(fileIndex++) : undefined };
      },
    },
    platform: ctx.platformText,
  });
  // With the cache on, the key (and so every file's content digest) is needed before the
  // layer: the digests come from the stat index or are read, several files at once. With
  // --no-cache nothing is looked up, so each file is read once, for the layer, and its
  // digest taken from the same bytes (ReadAhead); the key follows the layer.
  let known: StepKeyInputs | undefined;
  if (!ctx.noCache) {
    const digests = await located(() => inputs.digests.digestsOf(files, { concurrency: DIGEST_CONCURRENCY, signal: session.signal }));
    known = keyInputs((i) => digests[i]);
    // A memo (copyAlias): if it cannot be written, the next build plans the step again.
    if (alias !== undefined) {
      const key = cacheKeyFor(known);
      session.noteAlias(alias.alias, key);
      await session.store.writeMeta(alias.name, { key }, { memo: true, signal: session.signal }).catch(() => undefined);
    }
  }
  return {
    kind: 'layer',
    keyInputs: known,
    history: `${from.text} # buildkit`,
    linked: from.linked,
    async execute() {
      const { made, read } = await located(() => writeCopyLayer(planned, files, known === undefined, ctx));
      return { made, ...(known === undefined ? { keyInputs: keyInputs(read) } : {}) };
    },
  };
}

/** Where a COPY/ADD reads from: its main root (the context, a stage, an image, here-documents) and downloads. */
interface CopyFrom {
  readonly root: SourceRoot;
  /** The state of a stage or image root; undefined for the context and here-documents. */
  readonly rootKey: StateKey | undefined;
  readonly sources: readonly string[];
  readonly downloads: readonly SourceGroup[];
  /** COPY --parents: the sources keep their paths (below a `/./` pivot); see copy-parents.ts. */
  readonly parents: boolean;
  /**
   * COPY/ADD --link: the layer is planned on an empty tree (BuildKit's copy onto llb.Scratch,
   * merged over the state): the destination is not resolved through the layers below (their
   * symlinks are not followed, an existing directory is not the destination's), missing parents
   * are made in the layer (0755, the --chown owner else 0:0, as BuildKit's mkdir on scratch).
   * BuildKit does this only without --chmod (dispatchCopy: `cfg.link && cfg.chmod == ""`);
   * with --chmod the step is a plain COPY, here too.
   */
  readonly linked: boolean;
  /** The expanded instruction for the history entry. */
  readonly text: string;
}

async function sourcesOf(step: CopyStep | AddStep, ctx: StepContext): Promise<CopyFrom> {
  const { session, inputs } = ctx;
  const location = step.location;
  // Repositories and downloads (ADD <git URL>, ADD <url>) are sources of their own, each from its own root.
  const git = step.kind === 'ADD' ? step.sources.filter(isGitSource) : [];
  const remote = step.kind === 'ADD' ? step.sources.filter((s) => isRemoteSource(s) && !git.includes(s)) : [];
  const downloads: SourceGroup[] = [];
  for (const src of git) {
    const got = await fetchGitSource(src, { tempDir: () => session.tempDir('heredoc'), keepGitDir: step.kind === 'ADD' && step.keepGitDir === true, location, signal: session.signal, sshAuthSock: inputs.sshSockets?.get('default') });
    downloads.push({ ...got, matches: [] });
  }
  for (const url of remote) downloads.push(await download(url, step as AddStep, session));
  let root = inputs.contextRoot;
  let rootKey: StateKey | undefined;
  let sources: readonly string[] = step.sources.filter((s) => !remote.includes(s) && !git.includes(s));
  if (step.kind === 'COPY' && step.source.kind !== 'context') {
    ({ root, key: rootKey } = await session.sourceRoot(step.source, location));
  }
  if (step.contents.length > 0) {
    // Here-documents become files in a private directory, copied like context files.
    const dir = await session.tempDir('heredoc');
    const names: string[] = [];
    for (const h of step.contents) {
      const name = path.posix.basename(h.path);
      await fsp.writeFile(path.join(dir, name), h.data, { mode: 0o644 });
      // a fixed mtime: the content, not the time of this build, defines the file
      await fsp.utimes(path.join(dir, name), 0, 0);
      names.push(name);
    }
    sources = names;
    root = { dir, kind: 'context', label: 'here-document' };
    rootKey = undefined;
  }
  const text = (step.history ?? `${step.kind} ${sources.join(' ')} ${step.dest}`).replace(/ # buildkit$/, '');
  return { root, rootKey, sources, downloads, text, parents: step.kind === 'COPY' && step.parents && step.contents.length === 0, linked: step.link && step.chmod === undefined };
}

/**
 * The destination entries, sorted by path: the sources matched (local archives to unpack become
 * roots of their own), owners and modes from --chown and --chmod, parents as copy-plan.ts says.
 */
async function planEntries(step: CopyStep | AddStep, ctx: StepContext, from: CopyFrom): Promise<{ planned: PlannedEntry[]; groups: SourceGroup[] }> {
  const { session, inputs } = ctx;
  const location = step.location;
  const chmod = step.chmod === undefined ? undefined : parseChmod(step.chmod, location);
  const chown = step.chown === undefined ? undefined : await withLocation(location, () => resolveChown(step.chown!, imageFileReader(session, ctx.state)));
  // --parents sources are planned on their own (planParents below), not resolved here.
  const matches = from.parents ? [] : await withLocation(location, () => resolveSources(from.root, from.sources, { instruction: step.kind, location }));
  // Groups of sources from other roots: unpacked archives, then downloads.
  const groups: SourceGroup[] = [];
  const plain: SourceMatch[] = [];
  const unpackArchives = step.kind === 'ADD' && step.unpack !== false;
  for (const m of matches) {
    const kept: (typeof m)['matches'][number][] = [];
    for (const f of m.matches) {
      const kind = unpackArchives && f.stat.isFile() ? await archiveKind(f.abs, session.signal) : undefined;
      if (!kind) {
        kept.push(f);
        continue;
      }
      const dir = await session.tempDir('heredoc');
      await unpackArchive(f.abs, kind, dir, location, session.signal);
      const content = await inputs.digests.digestOf(f.abs, await fsp.stat(fsPath(f.abs), { bigint: true }), session.signal);
      groups.push({
        root: { dir, kind: 'stage', label: `archive ${f.rel}` },
        matches: [{ arg: m.arg, wildcard: false, matches: [{ abs: dir, rel: '', stat: await fsp.stat(dir), name: f.name }] }],
        source: { kind: 'archive', path: keyName(f.rel), digest: content },
        unpacked: true,
      });
    }
    if (kept.length > 0 || !m.wildcard) plain.push({ ...m, matches: kept });
  }
  for (const g of from.downloads) groups.push({ ...g, matches: await resolveSources(g.root, g.sources ?? [], { instruction: step.kind, location }) });
  const main = plain.filter((m) => m.matches.length > 0);
  const total = plain.filter((m) => m.matches.length > 0 || !m.wildcard).length + groups.length;
  const exclude = step.exclude.length > 0 ? new IgnoreMatcher(patternsFromList([...step.exclude], '--exclude')) : undefined;
  const epoch = inputs.sourceDateEpoch;
  // --chown names still come from the image's /etc/passwd (BuildKit's --link cannot read them
  // and fails); the key holds the numeric owners, so it stays independent of the layers below.
  const plan = async (view: RootfsView): Promise<PlannedEntry[]> => {
    const planOpts = { dest: step.dest, workdir: ctx.state.config.config?.WorkingDir || '/', view, chown, chmod, createdMtime: epoch ?? Math.floor(Date.parse(inputs.created) / 1000), exclude };
    const mainPlan = await planCopy(from.root, main, { ...planOpts, otherSources: total - main.length });
    // One plan (the common case) is already unique by path, sorted, and its links whole.
    if (!from.parents && groups.length === 0) return mainPlan;
    const byPath = new Map<string, PlannedEntry>();
    for (const e of mainPlan) byPath.set(e.path, e);
    if (from.parents) {
      const { planParents } = await import('./copy-parents.js');
      const kept = await withLocation(location, () => planParents(from.root, from.sources, { ...planOpts, location, instruction: step.kind }));
      for (const e of kept) byPath.set(e.path, e);
    }
    for (const g of groups) {
      // An archive's content keeps the modes the archive has: --chmod is for copied files
      // (BuildKit's unpack gets the owner but no mode).
      for (const e of await planCopy(g.root, g.matches, { ...planOpts, ...(g.unpacked ? { chmod: undefined } : {}), otherSources: total - 1 })) byPath.set(e.path, e);
    }
    keepLinksWhole(byPath);
    const planned = sortedByPath([...byPath.values()]);
    byPath.clear(); // the async function's frame would keep its 20,000 entries to the end
    return planned;
  };
  // Planning only reads (sources, and the view's answers), so it may run again with the
  // layers' own view when the recorded answers lack one (stage-state.ts lookInto).
  const planned = from.linked ? await plan(new RootfsView([])) : await lookInto(ctx.state, session.store, plan, session.signal);
  return { planned, groups };
}

/**
 * Writes the layer of planned entries into the store, each file read once (ReadAhead). With
 * `learn` (--no-cache: no key was made before) the files' digests are taken from the bytes
 * read and taught to the stat index; `read(i)` gives file i's digest for the key.
 */
async function writeCopyLayer(planned: readonly PlannedEntry[], files: ReadonlyArray<PlannedEntry & { srcAbs: string }>, learn: boolean, ctx: StepContext): Promise<{ made: MadeLayer; read: (i: number) => Digest | undefined }> {
  const { session, inputs } = ctx;
  const epoch = inputs.sourceDateEpoch;
  // What the stat index would have learnt from reading each file for the key.
  if (learn) await inputs.digests.ready();
  const onStat = learn ? (_i: number, abs: string, st: BigIntStats, d: Digest) => inputs.digests.learn(abs, st, d) : undefined;
  // Not needed on a cache hit; the tar writer alone, not layer/'s compressors and applier (zlib).
  const [{ ReadAhead }, { layerTarChunks }] = await Promise.all([import('../layer/read-ahead.js'), import('../layer/write-layer.js')]);
  const ahead = new ReadAhead(files, { onStat, digests: learn, signal: session.signal });
  const entries: LayerEntry[] = [];
  let fileIndex = 0;
  for (const e of planned) {
    if (e.type !== 'other') entries.push(toLayerEntry(e, isSourceFile(e) ? ahead.source(fileIndex++) : undefined));
  }
  // The tar goes into the store chunk by chunk with nothing buffered in between, as ReadAhead's
  // recycled buffers require; the stored blob's digest is the layer's diff ID.
  const stored = await session.store.blobs.putChunks(layerTarChunks(entries, { ...(epoch !== undefined ? { sourceDateEpoch: epoch } : {}), signal: session.signal }), { signal: session.signal });
  const unread = new Map<number, Digest>();
  if (learn) {
    for (const [i, e] of files.entries()) {
      if (ahead.digest(i) !== undefined) continue;
      // Not read for the layer (cannot happen for a file entry; kept as a safe fallback).
      unread.set(i, await inputs.digests.digestOf(e.srcAbs, await fsp.lstat(fsPath(e.srcAbs), { bigint: true }), session.signal));
    }
  }
  const index: LayerIndex = {
    entries: planned
      .filter((e) => e.type !== 'other')
      .map((e) => ({ path: e.path, type: e.type, mode: e.mode, uid: e.uid, gid: e.gid, mtime: epoch !== undefined ? Math.min(e.mtime, epoch) : e.mtime, size: e.size, ...(e.linkTarget !== undefined ? { linkTarget: e.linkTarget } : {}) })),
    whiteouts: [],
    opaqueDirs: [],
  };
  await rememberLayerIndex(session.store, stored.digest, index);
  return { made: { layer: { diffId: stored.digest, size: stored.size }, index: knownLayerIndex(index) }, read: (i) => ahead.digest(i) ?? unread.get(i) };
}

/** Sources of a COPY/ADD from a root of their own (an unpacked archive, a download). */
interface SourceGroup {
  readonly root: SourceRoot;
  readonly source: CopySource;
  /** The source arguments to match in `root` (downloads). */
  readonly sources?: readonly string[];
  readonly matches: readonly SourceMatch[];
  /** An archive's content (unpacked), which --chmod leaves as the archive has it. */
  readonly unpacked?: boolean;
}

/**
 * ADD <url>: fetched into a private directory. A download is copied as it is, unless ADD
 * --unpack=true asks for an archive's contents (local archives are unpacked by default,
 * downloads only when asked: the reference's ADD --unpack).
 */
async function download(url: string, step: AddStep, session: BuildSession): Promise<SourceGroup> {
  const dir = await session.tempDir('heredoc');
  const got = await fetchUrl(url, dir, { checksum: step.checksum, location: step.location, signal: session.signal });
  const kind = step.unpack === true ? await archiveKind(path.join(dir, got.name), session.signal) : undefined;
  if (kind !== undefined) {
    const out = await session.tempDir('heredoc');
    await unpackArchive(path.join(dir, got.name), kind, out, step.location, session.signal);
    return { root: { dir: out, kind: 'stage', label: url }, sources: ['.'], source: { kind: 'url-unpacked', url, digest: got.digest }, matches: [], unpacked: true };
  }
  return { root: { dir, kind: 'context', label: url }, sources: [got.name], source: { kind: 'url', url, digest: got.digest }, matches: [] };
}

/**
 * Reads a file of the image being built (for --chown names, a USER), following the merged view;
 * what an earlier build read from the same layers comes from their record (readRecordedFile).
 */
export function imageFileReader(session: BuildSession, state: StageState): (p: string) => Promise<string | undefined> {
  const read = async (p: string): Promise<string | undefined> => {
    const { entry } = (await viewOf(state)).resolve(p);
    if (!entry || (entry.type !== 'file' && entry.type !== 'hardlink')) return undefined;
    const layer = state.layers[entry.layer];
    if (!layer) return undefined;
    // The layer may be a cache hit, deferred into the lease (or lazy): held before it is read.
    await session.claim([layer]);
    const buf = await readLayerFile(() => session.store.blobs.openBlob(layer.diffId, { signal: session.signal }), entry.path, MAX_ID_FILE);
    return buf?.toString('utf8');
  };
  return (p) => readRecordedFile(state, session.store, p, () => read(p), session.signal);
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

/** A COPY error with the step's location; an unreadable source named as the user's to fix. */
function copyError(e: unknown, root: SourceRoot, location: SourceLocation): unknown {
  if (e instanceof TsbuildError) return e.location ? e : new TsbuildError(e.code, e.message, { location, hint: e.hint, cause: e, exitCode: e.exitCode });
  return unreadableSource(e, root, location) ?? e;
}

/** A file entry whose content comes from a host file. */
function isSourceFile(e: PlannedEntry): e is PlannedEntry & { srcAbs: string } {
  return e.type === 'file' && e.srcAbs !== undefined;
}

/**
 * One object literal with the same fields in the same order for every entry: built with
 * spreads, each of 20,000 entries got a hidden class of its own in V8 (~350 bytes apiece).
 */
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
