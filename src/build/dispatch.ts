import fsp from 'node:fs/promises';
import path from 'node:path';
import { TsbuildError, type SourceLocation } from '../errors.js';
import type { Instruction, ShellLex, CopyInstruction, AddInstruction } from '../dockerfile/index.js';
import { cacheKeyFor } from '../cache/index.js';
import {
  addExposedPorts,
  addHistory,
  addOnBuild,
  addVolumes,
  goQuoteList,
  setCmd,
  setEntrypoint,
  setEnv,
  setHealthcheck,
  setLabels,
  setShell,
  setStopSignal,
  setUser,
  setWorkdir,
  workdirPath,
} from '../image/config-edit.js';
import type { ImageConfig } from '../oci/types.js';
import type { Store } from '../store/index.js';
import { runCopy, type StepEnv } from './copy-step.js';
import type { SourceRoot } from './copy-sources.js';
import type { FileDigests } from './file-digests.js';
import { runMkdir } from './mkdir-step.js';
import type { ArgScope } from './stage-plan.js';
import type { StageState } from './stage-state.js';

export interface StageContext {
  readonly file: string;
  readonly lex: ShellLex;
  readonly store: Store;
  readonly platform: string;
  readonly globalArgs: ReadonlyMap<string, string>;
  readonly buildArgs: ReadonlyMap<string, string>;
  readonly usedArgs: Set<string>;
  readonly noCache: boolean;
  readonly created: string;
  readonly sourceDateEpoch?: number | undefined;
  readonly digests: FileDigests;
  readonly signal?: AbortSignal | undefined;
  readonly contextRoot: SourceRoot;
  fromRoot(ref: string, location: SourceLocation): Promise<{ root: SourceRoot; key: string }>;
  tempDir(): Promise<string>;
}

export interface DispatchResult {
  readonly state: StageState;
  readonly scope: ArgScope;
  readonly cached: boolean;
}

const DEFAULT_SHELL = ['/bin/sh', '-c'];

/**
 * The expansion environment at a point in a stage: declared args, then the image's ENV,
 * so ENV wins over an ARG of the same name (reference: "Using ARG variables").
 */
function expansionEnv(state: StageState, scope: ArgScope): string[] {
  const env: string[] = [];
  for (const [k, v] of scope) if (v !== undefined) env.push(`${k}=${v}`);
  env.push(...(state.config.config?.Env ?? []));
  return env;
}

function located<T>(location: SourceLocation, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof TsbuildError && !e.location) throw new TsbuildError(e.code, e.message, { location, hint: e.hint, cause: e });
    throw e;
  }
}

/** Applies a config-only edit: history entry, no layer, a new key. */
function configStep(state: StageState, scope: ArgScope, text: string, ctx: StageContext, edit: (c: ImageConfig) => ImageConfig, extra: Partial<StageState> = {}): DispatchResult {
  const key = cacheKeyFor({ parent: state.key, kind: text.split(' ', 1)[0] ?? '', instruction: text, platform: ctx.platform });
  const config = addHistory(edit(state.config), { createdBy: text, emptyLayer: true, created: ctx.created });
  return { state: { ...state, ...extra, config, key }, scope, cached: false };
}

function stepEnv(ctx: StageContext): StepEnv {
  return {
    store: ctx.store,
    digests: ctx.digests,
    platform: ctx.platform,
    noCache: ctx.noCache,
    sourceDateEpoch: ctx.sourceDateEpoch,
    created: ctx.created,
    signal: ctx.signal,
  };
}

/**
 * Runs one instruction of a stage against its state. Expansion follows BuildKit: ENV,
 * LABEL, ARG defaults, WORKDIR, USER, VOLUME, EXPOSE, STOPSIGNAL and COPY/ADD words expand;
 * RUN, CMD, ENTRYPOINT, SHELL, HEALTHCHECK and ONBUILD do not (the shell or a later build
 * does).
 */
export async function dispatchInstruction(ins: Instruction, state: StageState, scope: ArgScope, ctx: StageContext): Promise<DispatchResult> {
  const word = (w: string) => located(ins.location, () => ctx.lex.processWord(w, expansionEnv(state, scope)));
  const words = (w: string) => located(ins.location, () => ctx.lex.processWords(w, expansionEnv(state, scope)));
  switch (ins.kind) {
    case 'FROM':
      throw new TsbuildError('DOCKERFILE_INSTRUCTION', 'FROM inside a stage', { location: ins.location });
    case 'ENV': {
      const pairs = ins.pairs.map((p) => [word(p.key), word(p.value)] as const);
      return configStep(state, scope, `ENV ${pairs.map(([k, v]) => `${k}=${v}`).join(' ')}`, ctx, (c) => setEnv(c, pairs));
    }
    case 'LABEL': {
      const pairs = ins.pairs.map((p) => [word(p.key), word(p.value)] as const);
      return configStep(state, scope, `LABEL ${pairs.map(([k, v]) => `${k}=${v}`).join(' ')}`, ctx, (c) => setLabels(c, pairs));
    }
    case 'ARG': {
      const next = new Map(scope);
      const shown: string[] = [];
      for (const a of ins.args) {
        let value: string | undefined;
        if (ctx.buildArgs.has(a.key)) {
          value = ctx.buildArgs.get(a.key);
          ctx.usedArgs.add(a.key);
        } else if (a.value !== undefined) {
          value = word(a.value);
        } else {
          value = ctx.globalArgs.get(a.key);
        }
        next.set(a.key, value);
        shown.push(value === undefined ? a.key : `${a.key}=${value}`);
      }
      const r = configStep(state, next, `ARG ${shown.join(' ')}`, ctx, (c) => c);
      return r;
    }
    case 'WORKDIR': {
      const dir = workdirPath(state.config.config?.WorkingDir, word(ins.path));
      const withDir = await runMkdir(dir, `WORKDIR ${dir}`, state, stepEnv(ctx));
      return { state: { ...withDir, config: setWorkdir(withDir.config, dir) }, scope, cached: false };
    }
    case 'USER': {
      const user = word(ins.user);
      return configStep(state, scope, `USER ${user}`, ctx, (c) => setUser(c, user));
    }
    case 'VOLUME': {
      const vols = ins.volumes.map((v) => word(v));
      return configStep(state, scope, `VOLUME [${vols.join(' ')}]`, ctx, (c) => located(ins.location, () => addVolumes(c, vols)));
    }
    case 'EXPOSE': {
      const ports = ins.ports.flatMap((p) => words(p));
      return configStep(state, scope, `EXPOSE ${ports.join(' ')}`, ctx, (c) => located(ins.location, () => addExposedPorts(c, ports)));
    }
    case 'STOPSIGNAL': {
      const sig = word(ins.signal);
      return configStep(state, scope, `STOPSIGNAL ${sig}`, ctx, (c) => located(ins.location, () => setStopSignal(c, sig)));
    }
    case 'CMD': {
      const cmd = ins.form === 'exec' ? [...ins.args] : [...(state.config.config?.Shell ?? DEFAULT_SHELL), ins.args.join(' ')];
      return configStep(state, scope, `CMD ${goQuoteList(cmd)}`, ctx, (c) => setCmd(c, cmd), { cmdSet: true });
    }
    case 'ENTRYPOINT': {
      const ep = ins.form === 'exec' ? [...ins.args] : [...(state.config.config?.Shell ?? DEFAULT_SHELL), ins.args.join(' ')];
      return configStep(state, scope, `ENTRYPOINT ${goQuoteList(ep)}`, ctx, (c) => setEntrypoint(c, ep, state.cmdSet));
    }
    case 'SHELL':
      return configStep(state, scope, `SHELL ${goQuoteList(ins.args)}`, ctx, (c) => setShell(c, ins.args));
    case 'HEALTHCHECK': {
      // The config stores Go time.Duration values: nanoseconds (the parser gives ms).
      const ns = (ms: number) => Math.round(ms * 1e6);
      const hc = {
        Test: [...ins.test],
        ...(ins.interval !== undefined ? { Interval: ns(ins.interval) } : {}),
        ...(ins.timeout !== undefined ? { Timeout: ns(ins.timeout) } : {}),
        ...(ins.startPeriod !== undefined ? { StartPeriod: ns(ins.startPeriod) } : {}),
        ...(ins.startInterval !== undefined ? { StartInterval: ns(ins.startInterval) } : {}),
        ...(ins.retries !== undefined ? { Retries: ins.retries } : {}),
      };
      return configStep(state, scope, `HEALTHCHECK ${goQuoteList(ins.test)}`, ctx, (c) => setHealthcheck(c, hc));
    }
    case 'ONBUILD':
      return configStep(state, scope, `ONBUILD ${ins.expression}`, ctx, (c) => addOnBuild(c, ins.expression));
    case 'MAINTAINER': {
      const m = ins.maintainer;
      return configStep(state, scope, `MAINTAINER ${m}`, ctx, (c) => ({ ...c, author: m }));
    }
    case 'COPY':
    case 'ADD':
      return copyOrAdd(ins, state, scope, ctx, word);
    case 'RUN':
      throw new TsbuildError('UNSUPPORTED', 'RUN steps need the build sandbox, which is not wired into builds yet', {
        location: ins.location,
        hint: 'this version builds Dockerfiles made of COPY, ADD and config instructions; RUN support is tracked in the build-engine issue',
      });
    default:
      return ins satisfies never;
  }
}

async function copyOrAdd(ins: CopyInstruction | AddInstruction, state: StageState, scope: ArgScope, ctx: StageContext, word: (w: string) => string): Promise<DispatchResult> {
  if (ins.kind === 'ADD' && ins.sources.some((s) => /^[a-z][a-z0-9+.-]*:\/\//i.test(s) || s.startsWith('git@'))) {
    throw new TsbuildError('UNSUPPORTED', 'ADD of a URL or git repository is not supported yet', { location: ins.location, hint: 'download it in an earlier stage, or COPY it from the context' });
  }
  if (ins.exclude.length > 0) {
    throw new TsbuildError('UNSUPPORTED', `${ins.kind} --exclude is not supported yet`, { location: ins.location });
  }
  if (ins.kind === 'COPY' && ins.parents) {
    throw new TsbuildError('UNSUPPORTED', 'COPY --parents is not supported yet', { location: ins.location });
  }
  const dest = word(ins.dest);
  const chown = ins.chown === undefined ? undefined : word(ins.chown);
  const chmod = ins.chmod === undefined ? undefined : word(ins.chmod);
  let root = ctx.contextRoot;
  let rootKey: string | undefined;
  let sources: string[] = ins.sources.map((s) => word(s));
  if (ins.kind === 'COPY' && ins.from !== undefined) {
    const ref = located(ins.location, () => ctx.lex.processWord(ins.from!, [...ctx.globalArgs].map(([k, v]) => `${k}=${v}`)));
    ({ root, key: rootKey } = await ctx.fromRoot(ref, ins.location));
  }
  if (ins.sourceContents.length > 0) {
    // Here-documents become files in a private directory, copied like context files.
    const dir = await ctx.tempDir();
    sources = [];
    for (const h of ins.sourceContents) {
      const data = h.expand ? located(ins.location, () => ctx.lex.withOptions({ rawQuotes: true, rawEscapes: true }).processWord(h.data, expansionEnv(state, scope))) : h.data;
      const name = path.posix.basename(h.path);
      await fsp.writeFile(path.join(dir, name), data, { mode: 0o644 });
      // a fixed mtime: content, not the time of this build, defines the file
      await fsp.utimes(path.join(dir, name), 0, 0);
      sources.push(name);
    }
    root = { dir, kind: 'context', label: 'here-document' };
    rootKey = undefined;
  }
  const text = `${ins.kind}${ins.kind === 'COPY' && ins.from !== undefined ? ` --from=${ins.from}` : ''}${chown ? ` --chown=${chown}` : ''}${chmod ? ` --chmod=${chmod}` : ''} ${sources.join(' ')} ${dest}`;
  const r = await runCopy(
    { instruction: ins.kind, sources, dest, chown, chmod, text, location: ins.location, root, rootKey, workdir: state.config.config?.WorkingDir ?? '/' },
    state,
    stepEnv(ctx),
  );
  return { state: r.state, scope, cached: r.cached };
}
