import path from 'node:path';
import { cacheKeyFor, linkedStateKey, type CacheKey, type StepKeyInputs } from '../cache/index.js';
import type { Instruction } from '../dockerfile/index.js';
import { expandInstruction, scopeAfter, type StageScope, type Step } from '../plan/index.js';
import { addHistory } from '../image/index.js';
import { configStep } from './config-step.js';
import { copyStep } from './copy-step.js';
import { runStep } from './run-step.js';
import type { StageState } from './stage-state.js';
import type { BuildInputs, MadeLayer, StepContext, StepModule } from './step.js';
import type { BuildSession } from './session.js';
import { workdirStep } from './workdir-step.js';
import type { InFlightSteps } from './in-flight.js';
import { configLink, stepExplain, type ConfigLink, type StepExplain } from './cache-explain.js';

/** The module of each step kind: a new kind does not compile until it has one. */
const STEPS: { readonly [K in Step['kind']]: StepModule<Extract<Step, { kind: K }>> } = {
  COPY: copyStep,
  ADD: copyStep,
  RUN: runStep,
  WORKDIR: workdirStep,
  ENV: configStep,
  LABEL: configStep,
  ARG: configStep,
  USER: configStep,
  VOLUME: configStep,
  EXPOSE: configStep,
  STOPSIGNAL: configStep,
  CMD: configStep,
  ENTRYPOINT: configStep,
  SHELL: configStep,
  HEALTHCHECK: configStep,
  ONBUILD: configStep,
  MAINTAINER: configStep,
};

/** Where a stage is between two steps. */
export interface StageProgress {
  readonly state: StageState;
  readonly scope: StageScope;
  /** The config-only steps since the last step that may make a layer, to explain its miss (cache-explain.ts). */
  readonly configSince?: readonly ConfigLink[] | undefined;
}

export interface StageStepOptions {
  readonly session: BuildSession;
  /** The platform the stage's steps run on and are keyed by (FROM --platform, else the target). */
  readonly platformText: string;
  readonly inputs: BuildInputs;
  readonly noCache: boolean;
  /** The stage as a step identity names it (its name, or its index): see cache-explain.ts. */
  readonly stage?: string | undefined;
}

/**
 * Runs one instruction of a stage as a progress step: expanded by the plan into a typed step
 * (BuildKit's expansion rules), prepared by its module, then key -> lookup -> execute ->
 * record here. What the new state's layers need is held in the session's lease.
 */
export async function dispatchInstruction(ins: Instruction, name: string, at: StageProgress, opts: StageStepOptions, place?: string): Promise<StageProgress> {
  const { session } = opts;
  const id = session.nextStepId();
  session.report({ type: 'step-start', id, name, location: ins.location });
  const started = Date.now();
  try {
    const cfg = at.state.config.config ?? {};
    const step = expandInstruction(ins, { env: cfg.Env ?? [], scope: at.scope, lex: opts.inputs.lex, workdir: cfg.WorkingDir || '/', shell: cfg.Shell ?? [] });
    const ctx: StepContext = { ...opts, state: at.state, onOutput: (stream, text) => session.report({ type: 'step-log', id, stream, text }) };
    const explain = explainFor(id, at, opts, place ?? name);
    const r = await applyStep(step, ctx, explain);
    const configSince = r.config ? [...(at.configSince ?? []), configLink(step)] : undefined;
    // A step that made no layer (a cache hit, a config-only step) adds nothing new to protect.
    await session.holdLayers(r.state.layers, name, r.cached || r.state.layers.length === at.state.layers.length);
    session.report(r.cached ? { type: 'step-cached', id, name, hit: true, ...(r.source ? { source: r.source } : {}) } : { type: 'step-done', id, durationMs: Date.now() - started });
    return { state: r.state, scope: scopeAfter(at.scope, step), configSince };
  } catch (e) {
    session.report({ type: 'step-error', id, message: e instanceof Error ? e.message : String(e) });
    throw e;
  }
}

/** The step's "why it missed" reporter (cache-explain.ts), by its identity in the build. */
function explainFor(id: number, at: StageProgress, opts: StageStepOptions, place: string): StepExplain {
  const { session, inputs } = opts;
  return stepExplain({
    session,
    id,
    identity: { dockerfile: dockerfileIdentity(inputs.file, inputs.contextDir), stage: opts.stage ?? '', step: place, platform: opts.platformText },
    contextDir: inputs.contextDir,
    state: at.state,
    configSince: at.configSince ?? [],
    noCache: opts.noCache,
    isBuildArg: (n) => at.scope.argEnv.has(n),
  });
}

/**
 * The Dockerfile as a step identity names it: its path inside the build context when it is there
 * (the same on every checkout of the project), else its file name.
 */
function dockerfileIdentity(file: string, contextDir: string): string {
  const rel = path.relative(path.resolve(contextDir), path.resolve(file));
  return rel === '' || rel.startsWith('..') || path.isAbsolute(rel) ? path.basename(file) : rel.split(path.sep).join('/');
}

async function applyStep(step: Step, ctx: StepContext, explain: StepExplain): Promise<{ state: StageState; cached: boolean; config?: boolean; source?: string | undefined }> {
  const { session, state } = ctx;
  const prepared = await (STEPS[step.kind] as StepModule<Step>).prepare(step, ctx);
  if (prepared.kind === 'config') return { state: { ...prepared.apply(state), key: cacheKeyFor(prepared.keyInputs) }, cached: false, config: true };
  try {
    const history = { createdBy: prepared.history, created: ctx.inputs.created };
    const after = prepared.after ?? ((s: StageState) => s);
    let source: string | undefined;
    const r = await runCached<MadeLayer | undefined>({
      keyInputs: prepared.keyInputs,
      key: prepared.key,
      noCache: ctx.noCache,
      lookup: async (key) => {
        const found = await session.lookupWithSource(key);
        if (found === undefined) return undefined;
        source = found.source;
        // An imported hit is this machine's last key for the step from now on (a local hit's
        // already is): a later miss here compares with it.
        if (found.imported) await explain.made(key);
        const hit = found.hit;
        return { value: hit.kind === 'layer' ? { layer: hit.layer, index: hit.index } : undefined };
      },
      onMiss: (key) => explain.miss(key, prepared.keyInputs),
      // The step reads the layers it builds on: what cache hits deferred is held from here.
      beforeExecute: () => session.claim(state.layers),
      execute: async () => {
        const out = await prepared.execute();
        return { value: out.made, keyInputs: out.keyInputs };
      },
      record: async (key, made, inputs) => {
        const summary = explain.summary(inputs);
        await session.record(key, made ? { kind: 'layer', diffId: made.layer.diffId, size: made.layer.size, inputs: summary } : { kind: 'empty', inputs: summary });
        await explain.made(key);
      },
      inFlight: session.inFlight,
      signal: session.signal,
    });
    explain.seen(r.key);
    // A step that changed nothing adds no layer, as BuildKit's exporter drops empty layers.
    const key = prepared.linked ? linkedStateKey(state.key, r.key, ctx.platformText) : r.key;
    const next = r.value ? withLayer(state, key, r.value, history) : withoutLayer(state, key, history);
    return { state: after(next), cached: r.cached, ...(r.cached ? { source } : {}) };
  } finally {
    prepared.release?.();
  }
}

/** A cached operation as the dispatcher runs it: key -> lookup -> execute -> record. */
export interface CachedOperation<T> {
  /** What the key is made of; undefined: learnt by executing (then nothing is looked up). */
  readonly keyInputs: StepKeyInputs | undefined;
  /** The key, known without its inputs; `execute` returns the inputs, which must make it. */
  readonly key?: CacheKey | undefined;
  /** Nothing is looked up (the result is still recorded). */
  readonly noCache: boolean;
  /** A usable earlier result; a query, never a write. */
  lookup(key: CacheKey): Promise<{ readonly value: T } | undefined>;
  /** On a miss (or with the cache off), before executing: says why (the key when known before). */
  onMiss?(key: CacheKey | undefined): Promise<void>;
  /** On a miss, before executing. */
  beforeExecute?(): Promise<void>;
  execute(): Promise<{ readonly value: T; readonly keyInputs?: StepKeyInputs | undefined }>;
  /** Records the result under its key; `inputs` are what the key was made of. */
  record(key: CacheKey, value: T, inputs: StepKeyInputs): Promise<void>;
  /** Steps other builds of the env execute now: a miss on one of them waits and looks again. */
  readonly inFlight?: InFlightSteps | undefined;
  /** Stops waiting for another build's execution (cancel, fail fast). */
  readonly signal?: AbortSignal | undefined;
}

/** The one place a result is looked up, made and recorded. */
export async function runCached<T>(op: CachedOperation<T>): Promise<{ readonly key: CacheKey; readonly value: T; readonly cached: boolean }> {
  const known = op.key ?? (op.keyInputs === undefined ? undefined : cacheKeyFor(op.keyInputs));
  if (known !== undefined) {
    for (;;) {
      // --no-cache takes no earlier result, only one a build of this env (another platform of
      // the same build, a compose service) made in this run.
      if (!op.noCache || op.inFlight?.recorded(known) === true) {
        const hit = await op.lookup(known);
        if (hit) return { key: known, value: hit.value, cached: true };
      }
      // Another build executes this key now: its result, once recorded, is a hit here. If it
      // failed (nothing recorded), the next lookup misses and this build runs the step itself.
      const other = op.inFlight?.running(known);
      if (!other) break;
      await untilSettledOrAborted(other, op.signal);
    }
  }
  // No await between the last `running` check and this: two builds cannot both start the key.
  const done = known !== undefined ? op.inFlight?.start(known) : undefined;
  let recorded = false;
  try {
    await op.onMiss?.(known);
    await op.beforeExecute?.();
    const out = await op.execute();
    const inputs = op.keyInputs ?? out.keyInputs;
    if (inputs === undefined) throw new Error('internal: a step without key inputs learnt none by executing');
    const key = known ?? cacheKeyFor(inputs);
    if (op.key !== undefined && cacheKeyFor(inputs) !== op.key) throw new Error('internal: a step executed under a key its inputs do not make');
    await op.record(key, out.value, inputs);
    recorded = true;
    return { key, value: out.value, cached: false };
  } finally {
    done?.(recorded);
  }
}

/** Waits for `p`, or throws the abort reason as soon as `signal` aborts. */
async function untilSettledOrAborted(p: Promise<void>, signal: AbortSignal | undefined): Promise<void> {
  if (!signal) return p;
  signal.throwIfAborted();
  let onAbort!: () => void;
  const aborted = new Promise<never>((_, reject) => {
    onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
  });
  try {
    await Promise.race([p, aborted]);
  } finally {
    signal.removeEventListener('abort', onAbort);
  }
}

/** The state after a step that added a layer, with its history entry. */
function withLayer(state: StageState, key: CacheKey, made: MadeLayer, history: { createdBy: string; created: string }): StageState {
  const config = addHistory(state.config, { createdBy: history.createdBy, emptyLayer: false, created: history.created });
  return {
    ...state,
    key,
    config: { ...config, rootfs: { type: 'layers', diff_ids: [...config.rootfs.diff_ids, made.layer.diffId] } },
    layers: [...state.layers, made.layer],
    indexes: [...state.indexes, made.index],
  };
}

/** The state after a step that added no layer. */
function withoutLayer(state: StageState, key: CacheKey, history: { createdBy: string; created: string }): StageState {
  return { ...state, key, config: addHistory(state.config, { createdBy: history.createdBy, emptyLayer: true, created: history.created }) };
}
