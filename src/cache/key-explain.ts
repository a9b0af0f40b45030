import { createHash } from 'node:crypto';
import { isDigest } from '../oci/index.js';
import type { CacheKey, CopiedEntry, CopySource, MountSource, StepKeyInputs } from './cache-key.js';

/**
 * Why a step missed the cache (issue "cache that travels", item "why it missed"). With each key
 * the step cache keeps a compact summary of the inputs it was made of (KeyInputsSummary); a miss
 * is explained by comparing the summary of the new inputs with that of the last key made for the
 * same step (StepIdentity). Pure: no I/O here.
 *
 * A summary holds digests of values, never values: build args and env can hold what a user would
 * not publish, and a summary travels with an exported cache. (The cache key is already a digest
 * over the same values, so a summary reveals nothing the key does not.) It is bounded: the
 * per-file list of a COPY stops at MAX_LISTED_FILES entries or MAX_LISTED_BYTES, so a record
 * stays far below the step cache's 64 KiB record limit whatever the size of the context.
 */
export interface KeyInputsSummary {
  readonly v: 1;
  /** The state key the step started from. */
  readonly parent: string;
  /** The image the stage (or the stage it is built on) started FROM: its reference and manifest digest. */
  readonly base?: { readonly ref: string; readonly digest: string } | undefined;
  /** [label, digest] of the config-only steps (ARG, ENV...) between the last layer step and this one. */
  readonly chain?: ReadonlyArray<readonly [string, string]> | undefined;
  readonly kind: string;
  /** Digest of the expanded instruction text. */
  readonly instruction: string;
  /** Name -> digest of the value, for the env and build args the step sees. */
  readonly visible?: Readonly<Record<string, string>> | undefined;
  /** [label, digest] of each source besides the context (COPY --from, URLs, archives, git). */
  readonly sources?: ReadonlyArray<readonly [string, string]> | undefined;
  /** [label, digest] of what a RUN's mounts expose. */
  readonly mounts?: ReadonlyArray<readonly [string, string]> | undefined;
  readonly epoch?: number | undefined;
  readonly platform: string;
  /** Digest of `--shm-size`/`--ulimit` and of a seal's layer list, when the step has them. */
  readonly resources?: string | undefined;
  readonly layers?: string | undefined;
  readonly files?: FilesSummary | undefined;
}

/** The destination entries of a COPY/ADD: their count, one digest over all, and the first ones by path. */
export interface FilesSummary {
  readonly count: number;
  readonly digest: string;
  /** [destination path, digest of its metadata and content], in the plan's (path) order; the first entries only. */
  readonly list: ReadonlyArray<readonly [string, string]>;
}

/**
 * Which step of which build a key was made for, to find "the last key made for this step": the
 * Dockerfile (as the build names it), the stage (name, or index), the instruction's place in the
 * stage (`3`, or `onbuild.0` for a trigger of the base) and the platform. A step that moves
 * (a line inserted above it) is compared with whatever step now has its place: its reason is
 * then "instruction changed", which is what happened to that place.
 */
export interface StepIdentity {
  readonly dockerfile: string;
  readonly stage: string;
  readonly step: string;
  readonly platform: string;
}

/** The identity as one string (the key of the last-key map, locally and in an exported cache). */
export function stepIdentityText(id: StepIdentity): string {
  return JSON.stringify([id.dockerfile, id.stage, id.step, id.platform]);
}

const MAX_LISTED_FILES = 400;
const MAX_LISTED_BYTES = 24 * 1024;
const MAX_LABEL = 200;
const MAX_VISIBLE = 200;
const MAX_CHAIN = 50;

/** What the dispatcher knows about a step besides its key inputs. */
export interface SummaryContext {
  readonly base?: { readonly ref: string; readonly digest: string } | undefined;
  /** [label, digest] of the config-only steps since the last layer step (never recorded themselves). */
  readonly chain?: ReadonlyArray<readonly [string, string]> | undefined;
}

/**
 * The summary of a step's key inputs. Iterates a COPY's entries once more (on a miss only: a hit
 * is never summarised), hashing each of them; only the first MAX_LISTED_FILES are kept apiece.
 */
export function summarizeKeyInputs(input: StepKeyInputs, ctx: SummaryContext = {}): KeyInputsSummary {
  const visibleNames = Object.keys(input.visible ?? {}).sort();
  const visible: Record<string, string> = {};
  for (const name of visibleNames.slice(0, MAX_VISIBLE)) visible[name] = short(`${name}=${input.visible![name]}`);
  const sources = (input.sources ?? []).map((s, i) => [clip(sourceLabel(s, i)), short(JSON.stringify(s))] as const);
  const mounts = (input.mounts ?? []).map((m, i) => [clip(mountLabel(m, i)), short(JSON.stringify(m))] as const);
  const r = input.resources;
  const hasResources = r !== undefined && (r.shmSize !== undefined || (r.ulimits?.length ?? 0) > 0);
  return {
    v: 1,
    parent: input.parent,
    ...(ctx.base ? { base: { ref: clip(ctx.base.ref), digest: ctx.base.digest } } : {}),
    ...(ctx.chain && ctx.chain.length > 0 ? { chain: ctx.chain.slice(-MAX_CHAIN).map(([l, d]) => [clip(l), d] as const) } : {}),
    kind: input.kind,
    instruction: short(input.instruction),
    ...(visibleNames.length > 0 ? { visible } : {}),
    ...(sources.length > 0 ? { sources } : {}),
    ...(mounts.length > 0 ? { mounts } : {}),
    ...(input.epoch !== undefined ? { epoch: input.epoch } : {}),
    platform: input.platform,
    ...(hasResources ? { resources: short(JSON.stringify(r)) } : {}),
    ...(input.layers && input.layers.length > 0 ? { layers: short(input.layers.join(',')) } : {}),
    ...(input.entries ? { files: summarizeEntries(input.entries) } : {}),
  };
}

function summarizeEntries(entries: Iterable<CopiedEntry>): FilesSummary {
  const all = createHash('sha256');
  const list: Array<readonly [string, string]> = [];
  let bytes = 0;
  let count = 0;
  let listing = true;
  for (const e of entries) {
    const text = `${e.path}\0${e.type}\0${e.mode.toString(8)}\0${e.uid}:${e.gid}\0${e.linkTarget ?? ''}\0${e.content ?? ''}\n`;
    all.update(text);
    count++;
    if (listing) {
      bytes += e.path.length + 20;
      if (list.length >= MAX_LISTED_FILES || bytes > MAX_LISTED_BYTES) listing = false;
      else list.push([e.path, short(text)]);
    }
  }
  return { count, digest: all.digest('hex').slice(0, 16), list };
}

/**
 * A summary read back from a record (the step cache's, or an exported cache's `inputs`):
 * undefined unless it has this version's shape. Loose on purpose: it explains, never decides.
 */
export function parseKeyInputsSummary(doc: unknown): KeyInputsSummary | undefined {
  if (typeof doc !== 'object' || doc === null) return undefined;
  const s = doc as Partial<Record<keyof KeyInputsSummary, unknown>>;
  if (s.v !== 1 || typeof s.parent !== 'string' || typeof s.kind !== 'string' || typeof s.instruction !== 'string' || typeof s.platform !== 'string') return undefined;
  const pairs = (v: unknown) => v === undefined || (Array.isArray(v) && v.every((p) => Array.isArray(p) && p.length === 2 && typeof p[0] === 'string' && typeof p[1] === 'string'));
  if (!pairs(s.sources) || !pairs(s.mounts) || !pairs(s.chain)) return undefined;
  if (s.visible !== undefined && (typeof s.visible !== 'object' || s.visible === null || !Object.values(s.visible).every((x) => typeof x === 'string'))) return undefined;
  if (s.files !== undefined) {
    const f = s.files as Partial<FilesSummary> | null;
    if (typeof f !== 'object' || f === null || typeof f.count !== 'number' || typeof f.digest !== 'string' || !pairs(f.list)) return undefined;
  }
  if (s.base !== undefined) {
    const b = s.base as { ref?: unknown; digest?: unknown } | null;
    if (typeof b !== 'object' || b === null || typeof b.ref !== 'string' || typeof b.digest !== 'string') return undefined;
  }
  return doc as KeyInputsSummary;
}

/** Who the names a step sees are, for the message: a build arg or an env variable. */
export interface ExplainContext {
  readonly isBuildArg?: ((name: string) => boolean) | undefined;
}

/** At most this many reasons on the one line. */
const MAX_REASONS = 2;

/**
 * Why `cur` missed, given the inputs of the last key made for the same step (`prev`). Reasons
 * are named most specific first: the instruction, the values it sees, its files and sources,
 * its mounts, the base image, the step before it.
 */
export function explainMiss(prev: KeyInputsSummary, cur: KeyInputsSummary, ctx: ExplainContext = {}): string {
  const reasons: string[] = [];
  if (prev.kind !== cur.kind || prev.instruction !== cur.instruction) reasons.push('instruction changed');
  reasons.push(...visibleReasons(prev.visible ?? {}, cur.visible ?? {}, ctx));
  if (prev.files && cur.files) reasons.push(...fileReasons(prev.files, cur.files));
  else if (prev.files || cur.files) reasons.push('copied files changed');
  reasons.push(...pairReasons(prev.sources ?? [], cur.sources ?? []));
  reasons.push(...pairReasons(prev.mounts ?? [], cur.mounts ?? []));
  if (prev.platform !== cur.platform) reasons.push(`platform changed from ${prev.platform} to ${cur.platform}`);
  if (prev.epoch !== cur.epoch) reasons.push('SOURCE_DATE_EPOCH changed');
  if (prev.resources !== cur.resources) reasons.push('--shm-size or --ulimit changed');
  if (prev.layers !== cur.layers) reasons.push('layers changed');
  if (prev.parent !== cur.parent) {
    const before = reasons.length;
    reasons.push(...chainReasons(prev.chain ?? [], cur.chain ?? []));
    const pb = prev.base;
    const cb = cur.base;
    if (pb && cb && pb.digest !== cb.digest) reasons.push(pb.ref === cb.ref ? `base image ${cb.ref} changed digest` : `base image changed from ${pb.ref} to ${cb.ref}`);
    else if ((pb === undefined) !== (cb === undefined)) reasons.push('base image changed');
    if (reasons.length === before) reasons.push('previous step changed');
  }
  if (reasons.length === 0) return 'inputs changed';
  return [...new Set(reasons)].slice(0, MAX_REASONS).join('; ');
}

function visibleReasons(prev: Readonly<Record<string, string>>, cur: Readonly<Record<string, string>>, ctx: ExplainContext): string[] {
  const names = [...new Set([...Object.keys(prev), ...Object.keys(cur)])].filter((n) => prev[n] !== cur[n]).sort();
  if (names.length === 0) return [];
  const args = names.filter((n) => ctx.isBuildArg?.(n) === true);
  const env = names.filter((n) => !args.includes(n));
  const out: string[] = [];
  if (args.length > 0) out.push(`build arg${args.length > 1 ? 's' : ''} ${listed(args)} changed`);
  if (env.length > 0) out.push(`env ${listed(env)} changed`);
  return out;
}

/** The config-only steps before the step, compared by place (an ENV added or removed: "previous steps changed"). */
function chainReasons(prev: ReadonlyArray<readonly [string, string]>, cur: ReadonlyArray<readonly [string, string]>): string[] {
  if (prev.length !== cur.length) return [];
  const out: string[] = [];
  for (const [i, [label, d]] of cur.entries()) if (prev[i]![0] !== label || prev[i]![1] !== d) out.push(`${label} changed`);
  return out;
}

function fileReasons(prev: FilesSummary, cur: FilesSummary): string[] {
  if (prev.digest === cur.digest && prev.count === cur.count) return [];
  // Lists hold the first entries by path: only paths up to the shorter list's last are comparable.
  const end = (f: FilesSummary) => (f.list.length < f.count ? f.list[f.list.length - 1]?.[0] : undefined);
  const ends = [end(prev), end(cur)].filter((p): p is string => p !== undefined);
  const limit = ends.length === 0 ? undefined : ends.reduce((a, b) => (a < b ? a : b));
  const within = (p: string) => limit === undefined || p <= limit;
  const before = new Map(prev.list.filter(([p]) => within(p)).map(([p, d]) => [p, d] as const));
  const changed: string[] = [];
  const added: string[] = [];
  for (const [p, d] of cur.list) {
    if (!within(p)) continue;
    const old = before.get(p);
    if (old === undefined) added.push(p);
    else if (old !== d) changed.push(p);
    before.delete(p);
  }
  const removed = [...before.keys()];
  const out: string[] = [];
  if (changed.length > 0) out.push(`${fileList(changed)} changed`);
  if (added.length > 0) out.push(`${fileList(added)} added`);
  if (removed.length > 0) out.push(`${fileList(removed)} removed`);
  if (out.length === 0) out.push(`copied files changed (${cur.count} files, the first ${cur.list.length} recorded one by one)`);
  return out;
}

function pairReasons(prev: ReadonlyArray<readonly [string, string]>, cur: ReadonlyArray<readonly [string, string]>): string[] {
  const before = new Map(prev);
  const out: string[] = [];
  for (const [label, d] of cur) if (before.get(label) !== d) out.push(`${label} changed`);
  if (out.length === 0 && prev.length !== cur.length) out.push('sources changed');
  return out;
}

function fileList(paths: readonly string[]): string {
  const first = paths[0]!.startsWith('/') ? paths[0]! : `/${paths[0]!}`;
  return paths.length === 1 ? first : `${first} and ${paths.length - 1} more`;
}

function listed(names: readonly string[]): string {
  return names.length <= 3 ? names.join(', ') : `${names.slice(0, 3).join(', ')} and ${names.length - 3} more`;
}

function sourceLabel(s: CopySource, i: number): string {
  switch (s.kind) {
    case 'state':
      return i === 0 ? 'the --from source' : `source ${i + 1}`;
    case 'url':
    case 'url-unpacked':
      return s.url;
    case 'archive':
      return s.path;
    case 'git':
      return `git ${s.remote}${s.subdir ? `:${s.subdir}` : ''}`;
    default:
      return s satisfies never;
  }
}

function mountLabel(m: MountSource, i: number): string {
  switch (m.kind) {
    case 'bind-state':
      return `the stage or image of mount ${i + 1}`;
    case 'bind-context':
      return `mounted ${m.path}`;
    case 'extra-hosts':
      return '--add-host';
    default:
      return m satisfies never;
  }
}

function short(text: string): string {
  return createHash('sha256').update(text).digest('hex').slice(0, 16);
}

function clip(text: string): string {
  return text.length > MAX_LABEL ? `${text.slice(0, MAX_LABEL - 1)}…` : text;
}

/** At most this many step identities in an exported cache's `explain` map (the newest kept). */
const MAX_EXPLAIN_STEPS = 4096;

/**
 * The `explain` field of an exported cache: for each step identity (stepIdentityText) the key
 * the last export made or used for it, so a miss on another machine is compared with it. An
 * export merges its own steps over what the ref held (`previous`, as parsed), newest last, and
 * keeps at most MAX_EXPLAIN_STEPS identities.
 */
export function formatExplainMap(steps: ReadonlyMap<string, CacheKey>, previous?: unknown): { readonly v: 1; readonly steps: Readonly<Record<string, CacheKey>> } {
  const merged = new Map(parseExplainMap(previous));
  for (const [identity, key] of steps) {
    merged.delete(identity);
    merged.set(identity, key);
  }
  const kept = [...merged].slice(-MAX_EXPLAIN_STEPS);
  return { v: 1, steps: Object.fromEntries(kept) };
}

/** An exported cache's `explain` field as a map; empty for anything that is not one. */
export function parseExplainMap(doc: unknown): ReadonlyMap<string, CacheKey> {
  const out = new Map<string, CacheKey>();
  if (typeof doc !== 'object' || doc === null) return out;
  const { v, steps } = doc as { v?: unknown; steps?: unknown };
  if (v !== 1 || typeof steps !== 'object' || steps === null) return out;
  for (const [identity, key] of Object.entries(steps)) if (typeof key === 'string' && isDigest(key)) out.set(identity, key as CacheKey);
  return out;
}
