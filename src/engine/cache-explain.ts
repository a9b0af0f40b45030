import { createHash } from 'node:crypto';
import { explainMiss, stepIdentityText, summarizeKeyInputs, type CacheKey, type KeyInputsSummary, type StepIdentity, type StepKeyInputs } from '../cache/index.js';
import type { Step } from '../plan/index.js';
import type { BuildSession } from './session.js';
import type { StageState } from './stage-state.js';

/**
 * Why a step runs instead of hitting the cache ("why it missed"). The step cache keeps, with
 * each key it records, the summary of the key's inputs (cache/key-explain.ts), and per step
 * identity (Dockerfile, stage, place in the stage, platform; in this build context) the last key
 * made for it. On a miss the new inputs are compared with that key's: the reason goes to the
 * progress as a `step-miss` event. A hit costs nothing here (no read, no write, no per-file work).
 */
export interface StepExplain {
  /** On a miss (or with the cache off), before the step executes: reports why. Never throws. */
  miss(key: CacheKey | undefined, inputs: StepKeyInputs | undefined): Promise<void>;
  /** The inputs summary to record with the key (computed once per step). */
  summary(inputs: StepKeyInputs): KeyInputsSummary;
  /** After the key is recorded: it is now the step's last key. Never throws. */
  made(key: CacheKey): Promise<void>;
  /** The key the step ended with, hit or made (the session's `stepKeys`, for an export). */
  seen(key: CacheKey): void;
}

interface Explainer {
  readonly label: string;
  lastKey(): Promise<CacheKey | undefined>;
  inputsOf(key: CacheKey): Promise<KeyInputsSummary | undefined>;
}

/** Where a miss can be explained from, in order: the local step cache (per build context), then sources with explain data. */
function* explainers(session: BuildSession, scope: string, identity: string): Generator<Explainer> {
  const signal = session.signal;
  const local = session.stepCache;
  yield { label: local.label, lastKey: () => local.lastKey(scope, { signal }), inputsOf: (k) => local.inputsOf(k, { signal }) };
  for (const s of session.cacheSources) {
    if (s === local || !s.lastKeyFor || !s.inputsOf) continue;
    const lastKeyFor = s.lastKeyFor.bind(s);
    const inputsOf = s.inputsOf.bind(s);
    yield { label: s.label ?? s.name, lastKey: () => lastKeyFor(identity, { signal }), inputsOf: (k) => inputsOf(k, { signal }) };
  }
}

export interface StepExplainOptions {
  readonly session: BuildSession;
  /** The step's progress id. */
  readonly id: number;
  readonly identity: StepIdentity;
  /** The build context's directory: last keys are per context, so two projects never compare. */
  readonly contextDir: string;
  readonly state: StageState;
  /** The config-only steps since the last step that may make a layer (they are never recorded). */
  readonly configSince: readonly ConfigLink[];
  /** --no-cache (or --no-cache-filter for the stage). */
  readonly noCache: boolean;
  /** A name the step sees is a build arg (not an env variable). */
  readonly isBuildArg: (name: string) => boolean;
}

export function stepExplain(opts: StepExplainOptions): StepExplain {
  const { session, id } = opts;
  const identityText = stepIdentityText(opts.identity);
  const scope = `${opts.contextDir}\n${identityText}`;
  const base = opts.state.base;
  const chain = opts.configSince;
  let summarized: { readonly inputs: StepKeyInputs; readonly summary: KeyInputsSummary } | undefined;
  const summary = (inputs: StepKeyInputs): KeyInputsSummary => {
    if (summarized?.inputs !== inputs) summarized = { inputs, summary: summarizeKeyInputs(inputs, { base, chain }) };
    return summarized.summary;
  };
  return {
    summary,
    async miss(key, inputs) {
      let reason: string | undefined;
      let source: string | undefined;
      try {
        if (opts.noCache) reason = 'cache disabled (--no-cache)';
        else if (key === undefined || inputs === undefined) reason = 'no cache key before executing';
        else {
          // The local step cache first, then the sources that carry explain data (an imported
          // cache): the first that knows the step's last key and that key's inputs explains.
          let fallback: string | undefined;
          for (const c of explainers(session, scope, identityText)) {
            const last = await c.lastKey();
            if (last === undefined) continue;
            if (last === key) {
              fallback ??= 'cache entry no longer usable';
              continue;
            }
            const prev = await c.inputsOf(last);
            if (prev === undefined) {
              fallback ??= 'inputs changed (the earlier inputs are not recorded)';
              continue;
            }
            reason = explainMiss(prev, summary(inputs), { isBuildArg: opts.isBuildArg });
            source = c.label;
            break;
          }
          reason ??= fallback ?? 'no cache entry';
        }
      } catch (e) {
        session.signal.throwIfAborted();
        reason = `unknown (${e instanceof Error ? e.message : String(e)})`;
      }
      session.report({ type: 'step-miss', id, hit: false, reason, ...(source ? { source } : {}) });
    },
    seen(key) {
      session.stepKeys.set(identityText, key);
    },
    async made(key) {
      await session.stepCache.rememberLastKey(scope, key).catch(() => undefined);
    },
  };
}

/** A config-only step as a later miss names it: a label and a digest of what it set. */
export type ConfigLink = readonly [label: string, digest: string];

/**
 * A config-only step (ARG, ENV, LABEL, USER...) for the chain a layer step records: it changes
 * the key of every later step but is never recorded itself, so the step after it names it.
 * Labels name keys, never values (`build arg VERSION`, `env PATH`).
 */
export function configLink(step: Step): ConfigLink {
  const label = step.kind === 'ARG' ? `build arg ${step.args.map((a) => a.key).join(', ')}` : step.kind === 'ENV' ? `env ${step.pairs.map((p) => p.key).join(', ')}` : step.kind;
  return [label, createHash('sha256').update(`${step.keyText}\n${JSON.stringify(step.visible)}`).digest('hex').slice(0, 16)];
}
