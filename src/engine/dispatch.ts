import fsp from 'node:fs/promises';
import path from 'node:path';
import { TsbuildError, type SourceLocation } from '../errors.js';
import type { Instruction, ShellLex } from '../dockerfile/index.js';
import { expandInstruction, scopeAfter, expansionEnv, type AddStep, type CopyStep, type StageScope, type Step } from '../plan/index.js';
import { cacheKeyFor } from '../cache/index.js';
import {
  addExposedPorts,
  addHistory,
  addOnBuild,
  addVolumes,
  setCmd,
  setEntrypoint,
  setEnv,
  setHealthcheck,
  setLabels,
  setShell,
  setStopSignal,
  setUser,
  setWorkdir,
} from '../image/config-edit.js';
import type { ImageConfig } from '../oci/index.js';
import type { Store } from '../store/index.js';
import { runCopy, type StepEnv } from './copy-step.js';
import type { SourceRoot } from './copy-sources.js';
import type { FileDigests } from './file-digests.js';
import { runMkdir } from './mkdir-step.js';
import { runRun, type RunEnv } from './run-step.js';
import { archiveKind, fetchUrl, isRemoteSource, unpackArchive } from './add-sources.js';
import { fetchGitSource, isGitSource } from './git-source.js';
import type { StageState } from './stage-state.js';

export interface StageContext {
  readonly file: string;
  readonly lex: ShellLex;
  readonly store: Store;
  readonly platform: string;
  readonly noCache: boolean;
  readonly created: string;
  readonly sourceDateEpoch?: number | undefined;
  readonly digests: FileDigests;
  readonly signal?: AbortSignal | undefined;
  readonly contextRoot: SourceRoot;
  /** The files of another stage or an image, for COPY --from. */
  fromRoot(source: CopyStep['source'], location: SourceLocation): Promise<{ root: SourceRoot; key: string | undefined }>;
  tempDir(): Promise<string>;
  /** See StepEnv.claim. */
  claim(): Promise<void>;
  sandbox: RunEnv['sandbox'];
  readonly mountEnv: RunEnv['mountEnv'];
  readonly defaultNetwork: 'host' | 'none';
}

export interface DispatchResult {
  readonly state: StageState;
  readonly scope: StageScope;
  readonly cached: boolean;
}

/** Applies a config-only step: history entry (if the step has one), no layer, a new key. */
function configStep(state: StageState, scope: StageScope, step: Step, ctx: StageContext, edit: (c: ImageConfig) => ImageConfig, extra: Partial<StageState> = {}): DispatchResult {
  const key = cacheKeyFor({ parent: state.key, kind: step.kind, instruction: step.keyText, visible: step.visible, platform: ctx.platform });
  let config = edit(state.config);
  if (step.history !== undefined) config = addHistory(config, { createdBy: step.history, emptyLayer: true, created: ctx.created });
  return { state: { ...state, ...extra, config, key }, scope: scopeAfter(scope, step), cached: false };
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
    tempDir: () => ctx.tempDir(),
    claim: () => ctx.claim(),
  };
}

/**
 * Runs one instruction of a stage against its state: the plan expands it into a typed step
 * (BuildKit's expansion rules), and the step edits the config or writes a layer.
 */
export async function dispatchInstruction(
  ins: Instruction,
  state: StageState,
  scope: StageScope,
  ctx: StageContext,
  onOutput: (stream: 'stdout' | 'stderr', text: string) => void = () => undefined,
): Promise<DispatchResult> {
  const cfg = state.config.config ?? {};
  const step = expandInstruction(ins, { env: cfg.Env ?? [], scope, lex: ctx.lex, workdir: cfg.WorkingDir || '/', shell: cfg.Shell ?? [] });
  const at = <T>(fn: () => T): T => located(ins.location, fn);
  switch (step.kind) {
    case 'ENV':
      return configStep(state, scope, step, ctx, (c) => setEnv(c, step.pairs.map((p) => [p.key, p.value] as const)));
    case 'LABEL':
      return configStep(state, scope, step, ctx, (c) => setLabels(c, step.pairs.map((p) => [p.key, p.value] as const)));
    case 'ARG':
      return configStep(state, scope, step, ctx, (c) => c);
    case 'WORKDIR': {
      const r = await runMkdir(step.path, step.history ?? `WORKDIR ${step.path}`, state, stepEnv(ctx), { user: cfg.User });
      return { state: { ...r.state, config: setWorkdir(r.state.config, step.path) }, scope, cached: r.cached };
    }
    case 'USER':
      return configStep(state, scope, step, ctx, (c) => setUser(c, step.user));
    case 'VOLUME':
      return configStep(state, scope, step, ctx, (c) => at(() => addVolumes(c, step.volumes)));
    case 'EXPOSE':
      return configStep(state, scope, step, ctx, (c) => at(() => addExposedPorts(c, step.ports)));
    case 'STOPSIGNAL':
      return configStep(state, scope, step, ctx, (c) => at(() => setStopSignal(c, step.signal)));
    case 'CMD':
      return configStep(state, scope, step, ctx, (c) => setCmd(c, step.cmd), { cmdSet: true });
    case 'ENTRYPOINT':
      return configStep(state, scope, step, ctx, (c) => setEntrypoint(c, step.entrypoint, state.cmdSet));
    case 'SHELL':
      return configStep(state, scope, step, ctx, (c) => setShell(c, step.shell));
    case 'HEALTHCHECK': {
      // The config stores Go time.Duration values: nanoseconds (the parser gives ms).
      const ns = (ms: number) => Math.round(ms * 1e6);
      const hc = {
        Test: [...step.test],
        ...(step.interval !== undefined ? { Interval: ns(step.interval) } : {}),
        ...(step.timeout !== undefined ? { Timeout: ns(step.timeout) } : {}),
        ...(step.startPeriod !== undefined ? { StartPeriod: ns(step.startPeriod) } : {}),
        ...(step.startInterval !== undefined ? { StartInterval: ns(step.startInterval) } : {}),
        ...(step.retries !== undefined ? { Retries: step.retries } : {}),
      };
      return configStep(state, scope, step, ctx, (c) => setHealthcheck(c, hc));
    }
    case 'ONBUILD':
      return configStep(state, scope, step, ctx, (c) => addOnBuild(c, step.expression));
    case 'MAINTAINER':
      return configStep(state, scope, step, ctx, (c) => ({ ...c, author: step.maintainer }));
    case 'COPY':
    case 'ADD':
      return copyOrAdd(step, state, scope, ctx);
    case 'RUN': {
      // RUN --network=default means the build's default (BuildKit's NetworkDefault), like no flag.
      const usesDefault = step.network === undefined || step.network === 'default';
      const r = await runRun(usesDefault && ctx.defaultNetwork === 'none' ? { ...step, network: 'none' } : step, state, { ...stepEnv(ctx), sandbox: ctx.sandbox, mountEnv: ctx.mountEnv, onOutput });
      return { state: r.state, scope, cached: r.cached };
    }
    default:
      return step satisfies never;
  }
}

function located<T>(location: SourceLocation, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof TsbuildError && !e.location) throw new TsbuildError(e.code, e.message, { location, hint: e.hint, cause: e });
    throw e;
  }
}

async function copyOrAdd(step: CopyStep | AddStep, state: StageState, scope: StageScope, ctx: StageContext): Promise<DispatchResult> {
  const git = step.kind === 'ADD' ? step.sources.filter(isGitSource) : [];
  const remote = step.kind === 'ADD' ? step.sources.filter((s) => isRemoteSource(s) && !git.includes(s)) : [];
  const extraGroups: Array<{ root: SourceRoot; sources: string[]; key: string; unpacked?: boolean }> = [];
  for (const src of git) {
    const sshAuthSock = ctx.mountEnv.sshSockets?.get('default');
    extraGroups.push(await fetchGitSource(src, { tempDir: ctx.tempDir, keepGitDir: step.kind === 'ADD' && step.keepGitDir === true, location: step.location, signal: ctx.signal, sshAuthSock }));
  }
  for (const url of remote) {
    const dir = await ctx.tempDir();
    const got = await fetchUrl(url, dir, { checksum: step.kind === 'ADD' ? step.checksum : undefined, location: step.location, signal: ctx.signal });
    // A download is copied as it is, unless ADD --unpack=true asks for an archive's contents
    // (local archives are unpacked by default, downloads only when asked: the reference's ADD --unpack).
    const kind = step.kind === 'ADD' && step.unpack === true ? await archiveKind(path.join(dir, got.name)) : undefined;
    if (kind !== undefined) {
      const out = await ctx.tempDir();
      await unpackArchive(path.join(dir, got.name), kind, out, step.location, ctx.signal);
      extraGroups.push({ root: { dir: out, kind: 'stage', label: url }, sources: ['.'], key: `url-unpacked:${url}:${got.digest}`, unpacked: true });
      continue;
    }
    extraGroups.push({ root: { dir, kind: 'context', label: url }, sources: [got.name], key: `url:${url}:${got.digest}` });
  }
  let root = ctx.contextRoot;
  let rootKey: string | undefined;
  let sources: readonly string[] = step.sources.filter((s) => !remote.includes(s) && !git.includes(s));
  if (step.kind === 'COPY' && step.source.kind !== 'context') {
    ({ root, key: rootKey } = await ctx.fromRoot(step.source, step.location));
  }
  if (step.contents.length > 0) {
    // Here-documents become files in a private directory, copied like context files.
    const dir = await ctx.tempDir();
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
  const text = step.history ?? `${step.kind} ${sources.join(' ')} ${step.dest}`;
  const r = await runCopy(
    {
      instruction: step.kind,
      sources,
      dest: step.dest,
      chown: step.chown,
      chmod: step.chmod,
      text: text.replace(/ # buildkit$/, ''),
      keyText: step.keyText,
      location: step.location,
      root,
      rootKey,
      extraGroups,
      exclude: step.exclude,
      unpackArchives: step.kind === 'ADD' && step.unpack !== false,
      parents: step.kind === 'COPY' && step.parents && step.contents.length === 0,
      workdir: state.config.config?.WorkingDir || '/',
    },
    state,
    stepEnv(ctx),
  );
  return { state: r.state, scope, cached: r.cached };
}

export { expansionEnv };
