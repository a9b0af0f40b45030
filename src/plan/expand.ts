/**
 * expandInstruction: one typed instruction + the running state of its stage -> a fully
 * expanded Step, as BuildKit's dispatcher prepares each command before acting on it
 * (frontend/dockerfile/dockerfile2llb/convert.go dispatch and dispatch* functions;
 * frontend/dockerfile/instructions/commands.go Expand/ExpandRaw say which words expand).
 * https://docs.docker.com/reference/dockerfile/#environment-replacement
 *
 * Which words expand (against config Env + ARG values, see scope.ts):
 * - ENV: keys and values, all against the env *before* the instruction (`ENV A=1 B=$A` gives B
 *   the old A), as Expand runs before dispatchEnv.
 * - LABEL: keys and values. ARG: defaults only, each seeing the ARGs before it (dispatchArg).
 * - COPY/ADD: sources, destination, --chown, --chmod, --exclude; ADD --checksum; heredoc bodies
 *   whose delimiter was not quoted, with a fresh `\` lexer that keeps quotes (ExpandRaw).
 *   COPY --from is never expanded (planBuild rejects variables in it).
 * - WORKDIR, USER, STOPSIGNAL, VOLUME (each entry): one word each.
 * - EXPOSE: split into words after expansion (ProcessWords), then port specs.
 * - RUN: only the --mount option values (RunCommand.Expand -> setMountState); the command is left
 *   to the shell. CMD, ENTRYPOINT, SHELL, HEALTHCHECK, MAINTAINER, ONBUILD: nothing.
 * - FROM: global args only, in planBuild.
 *
 * Each Step carries `history` (the image history `created_by` BuildKit writes), `keyText` (a
 * stable canonical text of everything the step's result depends on besides its parent and
 * inputs) and `visible` (values the step sees that are not in keyText: RUN's environment).
 */
import { goQuote, parseHeredocWord, ShellLex } from '../dockerfile/index.js';
import type {
  AddInstruction,
  CopyInstruction,
  EnvGetter,
  HealthcheckTest,
  Instruction,
  RunInstruction,
} from '../dockerfile/index.js';
import { TsbuildError } from '../errors.js';
import type { SourceLocation } from '../errors.js';
import type { CacheSharing, MountType, ParsedMount } from './run-mounts.js';
import { mountError, parseMount } from './run-mounts.js';
import { expansionGetter, located, resolveArgs, runEnvironment, runHistoryArgs, shadowByEnv } from './scope.js';
import type { DeclaredArg, StageRefs, StageScope } from './scope.js';

/** BuildKit's default shell on Linux (defaultShell). */
const DEFAULT_SHELL: readonly string[] = ['/bin/sh', '-c'];

/** Where files of a COPY/ADD or a RUN mount come from. */
export type SourceRef =
  | { readonly kind: 'context' }
  | { readonly kind: 'scratch' }
  | { readonly kind: 'stage'; readonly index: number }
  | { readonly kind: 'image'; readonly ref: string };

export interface ExpandContext {
  /** The image config's Env at this point (the engine adds PATH when the base has none). */
  readonly env: readonly string[];
  readonly scope: StageScope;
  /** The lexer of the Dockerfile's escape token. */
  readonly lex: ShellLex;
  /** Current working directory (image config WorkingDir, "/" when unset). */
  readonly workdir: string;
  /** Current SHELL (image config Shell); empty means the default `/bin/sh -c`. */
  readonly shell: readonly string[];
}

interface StepBase {
  readonly location: SourceLocation;
  /** Canonical text of the expanded instruction, for the cache key. */
  readonly keyText: string;
  /** Values the step can observe beyond keyText (RUN: its environment, proxies excluded). */
  readonly visible: Readonly<Record<string, string>>;
  /** The history entry's created_by as BuildKit writes it; undefined: no history entry. */
  readonly history: string | undefined;
}

export interface KeyValue {
  readonly key: string;
  readonly value: string;
}

export interface RunMount {
  readonly type: MountType;
  /** Absent for type tmpfs/secret/ssh; context for a bind without from=; scratch for a cache without from=. */
  readonly from?: SourceRef;
  readonly source?: string;
  /** Absolute (relative targets are joined to the working directory). */
  readonly target?: string;
  readonly readOnly: boolean;
  readonly id?: string;
  readonly sharing?: CacheSharing;
  readonly required: boolean;
  readonly mode?: number;
  readonly uid?: number;
  readonly gid?: number;
  readonly env?: string;
}

export interface RunStep extends StepBase {
  readonly kind: 'RUN';
  /** Final argv: exec form as written; shell form (and heredocs) wrapped in the shell. */
  readonly args: readonly string[];
  /** The process environment, `NAME=VALUE`, including proxy args from --build-arg. */
  readonly env: readonly string[];
  readonly mounts: readonly RunMount[];
  readonly network?: string;
  readonly security?: string;
  /**
   * A single heredoc starting with `#!`: the engine writes it as an executable file at `path`
   * (mode 0755, read-only mount of /dev/pipes/) and `args` runs it.
   */
  readonly inlineFile?: { readonly path: string; readonly data: string };
}

export interface CmdStep extends StepBase {
  readonly kind: 'CMD';
  readonly cmd: readonly string[];
}

/** ENTRYPOINT; the engine clears Cmd unless a CMD was set earlier in this stage (dispatchEntrypoint). */
export interface EntrypointStep extends StepBase {
  readonly kind: 'ENTRYPOINT';
  readonly entrypoint: readonly string[];
}

export interface ShellStep extends StepBase {
  readonly kind: 'SHELL';
  readonly shell: readonly string[];
}

export interface EnvStep extends StepBase {
  readonly kind: 'ENV';
  readonly pairs: readonly KeyValue[];
  /** The scope after the step (ENV keys shadow ARG values of the same name). */
  readonly scope: StageScope;
}

export interface LabelStep extends StepBase {
  readonly kind: 'LABEL';
  readonly pairs: readonly KeyValue[];
}

export interface ArgStep extends StepBase {
  readonly kind: 'ARG';
  /** Resolved values (absent: declared without a value). */
  readonly args: readonly DeclaredArg[];
  /** The scope after the step. */
  readonly scope: StageScope;
}

export interface InlineSource {
  /** File name (the heredoc delimiter). */
  readonly path: string;
  /** Body, chomped for `<<-` and expanded unless the delimiter was quoted. */
  readonly data: string;
}

interface CopyLike {
  /** Source paths (or URLs for ADD), expanded. */
  readonly sources: readonly string[];
  /** Heredoc sources. */
  readonly contents: readonly InlineSource[];
  /** Destination as written after expansion (not yet joined to the working directory). */
  readonly dest: string;
  readonly chown?: string;
  readonly chmod?: string;
  readonly link: boolean;
  readonly exclude: readonly string[];
}

export interface CopyStep extends StepBase, CopyLike {
  readonly kind: 'COPY';
  /** The build context, a stage, or an image (`--from`). */
  readonly source: SourceRef;
  readonly parents: boolean;
}

export interface AddStep extends StepBase, CopyLike {
  readonly kind: 'ADD';
  readonly checksum?: string;
  readonly keepGitDir?: boolean;
  readonly unpack?: boolean;
}

export interface WorkdirStep extends StepBase {
  readonly kind: 'WORKDIR';
  /** Absolute and clean, relative paths resolved against the previous working directory. */
  readonly path: string;
}

export interface UserStep extends StepBase {
  readonly kind: 'USER';
  readonly user: string;
}

export interface VolumeStep extends StepBase {
  readonly kind: 'VOLUME';
  readonly volumes: readonly string[];
}

export interface ExposeStep extends StepBase {
  readonly kind: 'EXPOSE';
  /** `port/proto`, ranges spelled out, in order (may repeat). */
  readonly ports: readonly string[];
}

export interface StopSignalStep extends StepBase {
  readonly kind: 'STOPSIGNAL';
  readonly signal: string;
}

export interface HealthcheckStep extends StepBase {
  readonly kind: 'HEALTHCHECK';
  readonly test: HealthcheckTest;
  /** Milliseconds; absent = inherit / default. */
  readonly interval?: number;
  readonly timeout?: number;
  readonly startPeriod?: number;
  readonly startInterval?: number;
  readonly retries?: number;
}

export interface OnbuildStep extends StepBase {
  readonly kind: 'ONBUILD';
  /** Appended to the image config's OnBuild, unexpanded. */
  readonly expression: string;
}

export interface MaintainerStep extends StepBase {
  readonly kind: 'MAINTAINER';
  /** Sets the image config's author. */
  readonly maintainer: string;
}

export type Step =
  | RunStep
  | CmdStep
  | EntrypointStep
  | ShellStep
  | EnvStep
  | LabelStep
  | ArgStep
  | CopyStep
  | AddStep
  | WorkdirStep
  | UserStep
  | VolumeStep
  | ExposeStep
  | StopSignalStep
  | HealthcheckStep
  | OnbuildStep
  | MaintainerStep;

/** Canonical JSON (sorted keys) for keyText. */
function canonical(value: unknown): string {
  if (value === undefined) return 'null';
  if (value === null || typeof value !== 'object') return JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map((v) => canonical(v)).join(',')}]`;
  const entries = Object.entries(value as Record<string, unknown>)
    .filter(([, v]) => v !== undefined)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonical(v)}`).join(',')}}`;
}

const keyTextOf = (kind: string, fields: Record<string, unknown>): string => `${kind} ${canonical(fields)}`;

/** Go's %q for a []string: `["a" "b"]`. */
const goQuoteList = (list: readonly string[]): string => `[${list.map(goQuote).join(' ')}]`;
/** Go's %v for a []string: `[a b]`. */
const goList = (list: readonly string[]): string => `[${list.join(' ')}]`;

/** The scope after a step: ARG declares, ENV shadows. Other steps leave it unchanged. */
export function scopeAfter(scope: StageScope, step: Step): StageScope {
  return step.kind === 'ARG' || step.kind === 'ENV' ? step.scope : scope;
}

/**
 * Resolves a COPY --from value (validated by planBuild) against the stages: an index, a stage
 * name (case-insensitive), `scratch` (an empty source, as BuildKit's unregistered "scratch"
 * state), else an image reference.
 */
function resolveFrom(from: string | undefined, refs: StageRefs): SourceRef {
  if (from === undefined || from === '') return { kind: 'context' };
  if (/^[+-]?[0-9]+$/.test(from)) return { kind: 'stage', index: Number(from) };
  const index = refs.names.get(from.toLowerCase());
  if (index !== undefined) return { kind: 'stage', index };
  return from === 'scratch' ? { kind: 'scratch' } : { kind: 'image', ref: from };
}

/** path.Clean for slash paths. */
function cleanPath(p: string): string {
  const abs = p.startsWith('/');
  const out: string[] = [];
  for (const part of p.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') {
      if (out.length > 0 && out[out.length - 1] !== '..') out.pop();
      else if (!abs) out.push('..');
      continue;
    }
    out.push(part);
  }
  const joined = out.join('/');
  return abs ? `/${joined}` : joined === '' ? '.' : joined;
}

/**
 * util/system NormalizeWorkdir for Linux: relative paths join the current directory; the result
 * is absolute and clean. An empty path is DOCKERFILE_INSTRUCTION (no location; the caller adds it).
 */
export function normalizeWorkdir(current: string, requested: string): string {
  if (requested === '') throw new TsbuildError('DOCKERFILE_INSTRUCTION', 'normalizing workdir: cannot normalize nothing');
  if (!requested.startsWith('/')) return cleanPath(`/${current}/${requested}`);
  return cleanPath(requested);
}

/** Expands one instruction. Errors carry the instruction's location. */
export function expandInstruction(instr: Instruction, ctx: ExpandContext): Step {
  const get = expansionGetter(ctx.env, ctx.scope);
  const word = (w: string): string => {
    try {
      return ctx.lex.processWord(w, get);
    } catch (e) {
      throw located(e, instr);
    }
  };
  const fail = (message: string, hint?: string): TsbuildError =>
    new TsbuildError('DOCKERFILE_INSTRUCTION', message, { location: instr.location, ...(hint === undefined ? {} : { hint }) });
  const shell = ctx.shell.length > 0 ? ctx.shell : DEFAULT_SHELL;
  const base = { location: instr.location };
  const noVisible: Readonly<Record<string, string>> = {};

  switch (instr.kind) {
    case 'FROM':
      // splitStages turns every FROM into a stage; a FROM here is a caller bug.
      throw new Error('expandInstruction: FROM is planned by planBuild, not expanded per step');
    case 'RUN':
      return expandRun(instr, ctx, shell, get);
    case 'CMD':
    case 'ENTRYPOINT': {
      const argv = instr.form === 'shell' ? [...shell, instr.args.join(' ')] : [...instr.args];
      const history = `${instr.kind} ${goQuoteList(argv)}`;
      const keyText = keyTextOf(instr.kind, { argv });
      return instr.kind === 'CMD'
        ? { kind: 'CMD', ...base, cmd: argv, keyText, visible: noVisible, history }
        : { kind: 'ENTRYPOINT', ...base, entrypoint: argv, keyText, visible: noVisible, history };
    }
    case 'SHELL':
      return {
        kind: 'SHELL',
        ...base,
        shell: [...instr.args],
        keyText: keyTextOf('SHELL', { shell: instr.args }),
        visible: noVisible,
        history: `SHELL ${goList(instr.args)}`,
      };
    case 'ENV':
    case 'LABEL': {
      const pairs = instr.pairs.map((p) => ({ key: word(p.key), value: word(p.value) }));
      const history = `${instr.kind}${pairs.map((p) => ` ${p.key}=${p.value}`).join('')}`;
      const keyText = keyTextOf(instr.kind, { pairs: pairs.map((p) => [p.key, p.value]) });
      if (instr.kind === 'LABEL') return { kind: 'LABEL', ...base, pairs, keyText, visible: noVisible, history };
      const scope = shadowByEnv(ctx.scope, pairs.map((p) => p.key));
      return { kind: 'ENV', ...base, pairs, scope, keyText, visible: noVisible, history };
    }
    case 'ARG': {
      const { args, scope } = resolveArgs(instr, ctx.scope, { env: ctx.env, lex: ctx.lex });
      const history = `ARG ${args.map((a) => (a.value === undefined ? a.key : `${a.key}=${a.value}`)).join(' ')}`;
      return {
        kind: 'ARG',
        ...base,
        args,
        scope,
        // Names only, as BuildKit (where ARG makes no operation at all): a value is observed
        // where it is expanded (that step's own text carries it) or in a RUN's environment
        // (RUN's `visible`), so `--build-arg VERSION=...` changing leaves a COPY after it cached.
        keyText: keyTextOf('ARG', { args: args.map((a) => [a.key]) }),
        visible: noVisible,
        history,
      };
    }
    case 'COPY':
    case 'ADD':
      return expandCopy(instr, ctx, word, get);
    case 'WORKDIR': {
      const requested = word(instr.path);
      let path: string;
      try {
        path = normalizeWorkdir(ctx.workdir === '' ? '/' : ctx.workdir, requested);
      } catch (e) {
        throw located(e, instr);
      }
      return { kind: 'WORKDIR', ...base, path, keyText: keyTextOf('WORKDIR', { path }), visible: noVisible, history: `WORKDIR ${path}` };
    }
    case 'USER': {
      const user = word(instr.user);
      return { kind: 'USER', ...base, user, keyText: keyTextOf('USER', { user }), visible: noVisible, history: `USER ${user}` };
    }
    case 'VOLUME': {
      const volumes = instr.volumes.map(word);
      if (volumes.some((v) => v === '')) throw fail('VOLUME specified can not be an empty string');
      return {
        kind: 'VOLUME',
        ...base,
        volumes,
        keyText: keyTextOf('VOLUME', { volumes }),
        visible: noVisible,
        history: `VOLUME ${goList(volumes)}`,
      };
    }
    case 'EXPOSE': {
      const words: string[] = [];
      for (const p of instr.ports) {
        try {
          words.push(...ctx.lex.processWords(p, get));
        } catch (e) {
          throw located(e, instr);
        }
      }
      let ports: string[];
      try {
        ports = words.flatMap(parsePortSpec);
      } catch (e) {
        if (e instanceof PortError) throw fail(e.message);
        throw e;
      }
      // History prints the port set as Go prints a map (sorted, no repeats): `EXPOSE map[80/tcp:{}]`,
      // the long-standing format dockerfile 1.19 restored (moby/buildkit#6217).
      const set = [...new Set(ports)].sort();
      const history = `EXPOSE map[${set.map((p) => `${p}:{}`).join(' ')}]`;
      return { kind: 'EXPOSE', ...base, ports, keyText: keyTextOf('EXPOSE', { ports }), visible: noVisible, history };
    }
    case 'STOPSIGNAL': {
      const signal = word(instr.signal);
      if (!isValidSignal(signal)) throw fail(`Invalid signal: ${signal}`, 'use a signal name such as SIGTERM or a number');
      return {
        kind: 'STOPSIGNAL',
        ...base,
        signal,
        keyText: keyTextOf('STOPSIGNAL', { signal }),
        visible: noVisible,
        history: `STOPSIGNAL ${signal}`,
      };
    }
    case 'HEALTHCHECK': {
      const { kind: _k, location: _l, original: _o, ...config } = instr;
      return {
        kind: 'HEALTHCHECK',
        ...base,
        ...config,
        keyText: keyTextOf('HEALTHCHECK', { ...config }),
        visible: noVisible,
        history: `HEALTHCHECK ${healthcheckText(instr)}`,
      };
    }
    case 'ONBUILD':
      // dispatchOnbuild records the trigger without a history entry.
      return {
        kind: 'ONBUILD',
        ...base,
        expression: instr.expression,
        keyText: keyTextOf('ONBUILD', { expression: instr.expression }),
        visible: noVisible,
        history: undefined,
      };
    case 'MAINTAINER':
      return {
        kind: 'MAINTAINER',
        ...base,
        maintainer: instr.maintainer,
        keyText: keyTextOf('MAINTAINER', { maintainer: instr.maintainer }),
        visible: noVisible,
        history: `MAINTAINER ${instr.maintainer}`,
      };
    default:
      return instr satisfies never;
  }
}

/** dispatchRun: heredoc handling, the shell, mounts, env and history. */
function expandRun(instr: RunInstruction, ctx: ExpandContext, shell: readonly string[], get: EnvGetter): RunStep {
  let args: string[] = [...instr.args];
  let inlineFile: { path: string; data: string } | undefined;
  if (instr.heredocs.length > 0 && instr.form === 'shell') {
    const first = instr.heredocs[0];
    const marker = args.length === 1 ? parseHeredocWord(args[0] ?? '') : undefined;
    if (marker !== undefined && first !== undefined) {
      // A lone heredoc: its body is the script (not expanded; the shell does that).
      const data = first.chomp ? chompTabs(first.content) : first.content;
      if (data.startsWith('#!')) {
        // A script with a shebang runs as a file, without the shell.
        inlineFile = { path: `/dev/pipes/${first.name}`, data };
        args = [inlineFile.path];
      } else {
        args = [data];
      }
    } else {
      // More complex: reconstitute the heredocs and let the shell handle them.
      let text = args[0] ?? '';
      for (const h of instr.heredocs) text += `\n${h.content}${h.name}`;
      args = [text];
    }
  }
  // Shell form gets the shell (withShell), also for a shebang script: `/bin/sh -c /dev/pipes/EOF`.
  if (instr.form === 'shell') args = [...shell, args.join(' ')];

  const mounts: RunMount[] = [];
  const expand = (w: string): string => {
    try {
      return ctx.lex.processWord(w, get);
    } catch (e) {
      throw located(e, instr);
    }
  };
  for (const value of instr.mounts) {
    let m: ParsedMount;
    try {
      m = parseMount(value, expand);
    } catch (e) {
      throw mountError(e, instr.location);
    }
    let target = m.target;
    if (target !== undefined) {
      const cleaned = cleanPath(target);
      if (!cleaned.startsWith('/')) target = cleanPath(`/${ctx.workdir}/${target}`);
      if (target === '/') {
        throw new TsbuildError('DOCKERFILE_INSTRUCTION', `invalid mount target ${JSON.stringify(target)}`, {
          location: instr.location,
        });
      }
    }
    let from: SourceRef | undefined;
    if (m.type === 'bind' || m.type === 'cache') {
      from =
        m.from !== undefined
          ? resolveMountFrom(m.from, ctx.scope.stages)
          : m.type === 'cache'
            ? { kind: 'scratch' }
            : { kind: 'context' };
    }
    const { from: _f, target: _t, ...rest } = m;
    mounts.push({ ...rest, ...(from === undefined ? {} : { from }), ...(target === undefined ? {} : { target }) });
  }

  const { env, keyed } = runEnvironment(ctx.env, ctx.scope);
  const history = `RUN ${[...runHistoryArgs(ctx.env, ctx.scope), ...args].join(' ')} # buildkit`;
  const fields = {
    args,
    mounts,
    network: instr.network,
    security: instr.security,
    inlineFile,
  };
  return {
    kind: 'RUN',
    location: instr.location,
    args,
    env,
    mounts,
    ...(instr.network === undefined ? {} : { network: instr.network }),
    ...(instr.security === undefined ? {} : { security: instr.security }),
    ...(inlineFile === undefined ? {} : { inlineFile }),
    keyText: keyTextOf('RUN', fields),
    visible: keyed,
    history,
  };
}

/** Mount from= is a stage name or an image (no indexes, detectRunMount). */
function resolveMountFrom(from: string, refs: StageRefs): SourceRef {
  const index = refs.names.get(from.toLowerCase());
  if (index !== undefined) return { kind: 'stage', index };
  return from === 'scratch' ? { kind: 'scratch' } : { kind: 'image', ref: from };
}

/** ChompHeredocContent: leading tabs of every line. */
function chompTabs(content: string): string {
  return content.replace(/(^|\n)\t+/g, '$1');
}

/** COPY/ADD: Expand (paths, flags) and ExpandRaw (heredoc bodies). */
function expandCopy(
  instr: CopyInstruction | AddInstruction,
  ctx: ExpandContext,
  word: (w: string) => string,
  get: EnvGetter,
): CopyStep | AddStep {
  const chown = instr.chown === undefined ? undefined : word(instr.chown);
  const chmod = instr.chmod === undefined ? undefined : word(instr.chmod);
  const sources = instr.sources.map(word);
  const dest = word(instr.dest);
  const exclude = instr.exclude.map(word);
  // ExpandRaw: a fresh lexer with escape `\` whatever the escape directive, quotes kept.
  const raw = new ShellLex('\\', { skipProcessQuotes: true });
  const contents = instr.sourceContents.map((c) => {
    if (!c.expand) return { path: c.path, data: c.data };
    try {
      return { path: c.path, data: raw.processWord(c.data, get) };
    } catch (e) {
      throw located(e, instr);
    }
  });
  // dispatchCopy's commit message: sources, heredoc names, destination; flags are not shown.
  const history = `${instr.kind}${sources.map((s) => ` ${s}`).join('')}${contents.map((c) => ` <<${c.path}`).join('')} ${dest} # buildkit`;
  const common = {
    location: instr.location,
    sources,
    contents,
    dest,
    ...(chown === undefined || chown === '' ? {} : { chown }),
    ...(chmod === undefined || chmod === '' ? {} : { chmod }),
    link: instr.link,
    exclude,
    visible: {},
    history,
  };
  if (instr.kind === 'COPY') {
    const source = resolveFrom(instr.from, ctx.scope.stages);
    const keyText = keyTextOf('COPY', {
      source,
      sources,
      contents,
      dest,
      chown,
      chmod,
      link: instr.link,
      exclude,
      parents: instr.parents,
    });
    return { kind: 'COPY', ...common, source, parents: instr.parents, keyText };
  }
  const checksum = instr.checksum === undefined ? undefined : word(instr.checksum);
  if (checksum !== undefined && checksum !== '') {
    // dispatchCopy: a checksum pins exactly one download; anywhere else it would be ignored.
    const fail = (message: string): TsbuildError =>
      new TsbuildError('DOCKERFILE_INSTRUCTION', message, { location: instr.location });
    if (sources.length !== 1) throw fail("checksum can't be specified for multiple sources");
    if (!/^https?:\/\//.test(sources[0] ?? '')) throw fail("checksum can't be specified for non-HTTP(S) sources");
  }
  const keyText = keyTextOf('ADD', {
    sources,
    contents,
    dest,
    chown,
    chmod,
    link: instr.link,
    exclude,
    checksum,
    keepGitDir: instr.keepGitDir,
    unpack: instr.unpack,
  });
  return {
    kind: 'ADD',
    ...common,
    ...(checksum === undefined || checksum === '' ? {} : { checksum }),
    ...(instr.keepGitDir === undefined ? {} : { keepGitDir: instr.keepGitDir }),
    ...(instr.unpack === undefined ? {} : { unpack: instr.unpack }),
    keyText,
  };
}

class PortError extends Error {}

/** convert_expose.go parsePortSpec: `[ip:][hostPort:]containerPort[/proto]` -> `port/proto` list. */
export function parsePortSpec(raw: string): string[] {
  const parts = raw.split(':');
  let ip = '';
  let hostPort = '';
  let containerPort: string;
  if (parts.length === 1) containerPort = parts[0] ?? '';
  else if (parts.length === 2) [hostPort, containerPort] = [parts[0] ?? '', parts[1] ?? ''];
  else if (parts.length === 3) [ip, hostPort, containerPort] = [parts[0] ?? '', parts[1] ?? '', parts[2] ?? ''];
  else {
    const n = parts.length;
    ip = parts.slice(0, n - 2).join(':');
    hostPort = parts[n - 2] ?? '';
    containerPort = parts[n - 1] ?? '';
  }
  const slash = containerPort.indexOf('/');
  const port = slash < 0 ? containerPort : containerPort.slice(0, slash);
  let proto = slash < 0 ? '' : containerPort.slice(slash + 1).toLowerCase();
  if (port === '') throw new PortError(`no port specified: ${containerPort}<empty>`);
  if (proto === '') proto = 'tcp';
  else if (!['tcp', 'udp', 'sctp'].includes(proto)) throw new PortError(`invalid proto: ${proto}`);
  if (ip.startsWith('[')) {
    if (!ip.endsWith(']')) throw new PortError(`invalid IP address ${ip}`);
    ip = ip.slice(1, -1);
  }
  if (ip !== '' && !isIp(ip)) throw new PortError(`invalid IP address: ${ip}`);
  const range = parsePortRange(port);
  if (range === undefined) throw new PortError(`invalid containerPort: ${port}`);
  if (hostPort !== '') {
    const hostRange = parsePortRange(hostPort);
    if (hostRange === undefined) throw new PortError(`invalid hostPort: ${hostPort}`);
    if (range[1] - range[0] !== hostRange[1] - hostRange[0] && range[1] !== range[0]) {
      throw new PortError(`invalid ranges specified for container and host Ports: ${port} and ${hostPort}`);
    }
  }
  const out: string[] = [];
  for (let p = range[0]; p <= range[1]; p++) out.push(`${p}/${proto}`);
  return out;
}

/** parsePortRange with strconv.ParseUint(_, 10, 16). */
function parsePortRange(ports: string): [number, number] | undefined {
  const one = (s: string): number | undefined => {
    if (!/^[0-9]+$/.test(s)) return undefined;
    const n = Number(s);
    return n <= 65535 ? n : undefined;
  };
  if (ports === '') return undefined;
  if (!ports.includes('-')) {
    const n = one(ports);
    return n === undefined ? undefined : [n, n];
  }
  const parts = ports.split('-');
  if (parts.length !== 2) return undefined;
  const start = one(parts[0] ?? '');
  const end = one(parts[1] ?? '');
  if (start === undefined || end === undefined || end < start) return undefined;
  return [start, end];
}

/** net.ParseIP, roughly: dotted IPv4 or an IPv6 literal. */
function isIp(s: string): boolean {
  if (/^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/.test(s)) return true;
  return s.includes(':') && /^[0-9a-fA-F:.]+$/.test(s) && (s.match(/::/g) ?? []).length <= 1;
}

/** Linux signal names moby/sys/signal knows (SignalMap), without the SIG prefix. */
const SIGNALS: ReadonlySet<string> = new Set([
  'ABRT', 'ALRM', 'BUS', 'CHLD', 'CLD', 'CONT', 'FPE', 'HUP', 'ILL', 'INT', 'IO', 'IOT', 'KILL', 'PIPE',
  'POLL', 'PROF', 'PWR', 'QUIT', 'SEGV', 'STKFLT', 'STOP', 'SYS', 'TERM', 'TRAP', 'TSTP', 'TTIN', 'TTOU',
  'URG', 'USR1', 'USR2', 'VTALRM', 'WINCH', 'XCPU', 'XFSZ', 'RTMIN', 'RTMAX',
  ...Array.from({ length: 15 }, (_, i) => `RTMIN+${i + 1}`),
  ...Array.from({ length: 14 }, (_, i) => `RTMAX-${i + 1}`),
]);

/** signal.ParseSignal: a non-zero number, or a known name with or without `SIG`. */
function isValidSignal(s: string): boolean {
  if (/^[+-]?[0-9]+$/.test(s)) return Number(s) !== 0;
  const upper = s.toUpperCase();
  return SIGNALS.has(upper.startsWith('SIG') ? upper.slice(3) : upper);
}

/** Go time.Duration String for a whole number of milliseconds. */
function goDuration(ms: number): string {
  if (ms === 0) return '0s';
  const neg = ms < 0;
  let rest = Math.abs(ms);
  if (rest < 1000) return `${neg ? '-' : ''}${rest}ms`;
  const h = Math.floor(rest / 3_600_000);
  rest -= h * 3_600_000;
  const m = Math.floor(rest / 60_000);
  rest -= m * 60_000;
  const s = rest / 1000;
  const secs = `${Number.isInteger(s) ? s : s.toFixed(3).replace(/0+$/, '')}s`;
  return `${neg ? '-' : ''}${h > 0 ? `${h}h` : ''}${h > 0 || m > 0 ? `${m}m` : ''}${secs}`;
}

/** `%+v` of BuildKit's HealthcheckConfig, as its history shows it. */
function healthcheckText(h: {
  readonly test: HealthcheckTest;
  readonly interval?: number;
  readonly timeout?: number;
  readonly startPeriod?: number;
  readonly startInterval?: number;
  readonly retries?: number;
}): string {
  return `{Test:${goList(h.test)} Interval:${goDuration(h.interval ?? 0)} Timeout:${goDuration(h.timeout ?? 0)} StartPeriod:${goDuration(h.startPeriod ?? 0)} StartInterval:${goDuration(h.startInterval ?? 0)} Retries:${h.retries ?? 0}}`;
}
