/**
 * Syntax tree node -> typed instruction, following BuildKit's instructions package
 * (frontend/dockerfile/instructions/parse.go, commands.go, bflag.go): per-instruction argument
 * counts, flags validated against the flags each instruction accepts, exec vs shell form.
 * https://docs.docker.com/reference/dockerfile/
 *
 * Values stay raw: no variable expansion and no quote removal happens here (ENV/LABEL values,
 * ARG defaults, paths keep their quotes and `$VAR`s); the shell lexer does that when the
 * planner expands an instruction against its state, as BuildKit's dispatcher does.
 *
 * Errors: TsbuildError('DOCKERFILE_INSTRUCTION') located at the instruction's lines, with
 * BuildKit's messages ("COPY requires at least two arguments, ...", "unknown flag: x", ...).
 */
import { TsbuildError } from '../errors.js';
import type { SourceLocation } from '../errors.js';
import { parseFlags, isFlagError } from './flags.js';
import type { FlagSpec, ParsedFlags } from './flags.js';
import { parseGoDuration } from './go-duration.js';
import { goQuote, goToUpper, trimSpaceText } from './go-text.js';
import { chompHeredocContent, parseHeredocWord } from './heredoc.js';
import type { Heredoc } from './heredoc.js';
import type { Node, ParsedDockerfile } from './parser.js';
import { closestMatch } from './suggest.js';

const INSTRUCTION_KINDS = [
  'FROM',
  'RUN',
  'CMD',
  'ENTRYPOINT',
  'SHELL',
  'ENV',
  'LABEL',
  'ARG',
  'COPY',
  'ADD',
  'WORKDIR',
  'USER',
  'VOLUME',
  'EXPOSE',
  'STOPSIGNAL',
  'HEALTHCHECK',
  'ONBUILD',
  'MAINTAINER',
] as const;

export type InstructionKind = (typeof INSTRUCTION_KINDS)[number];

/** Exec form: a JSON array, run without a shell. Shell form: one string for the shell. */
export type CommandForm = 'exec' | 'shell';

interface InstructionBase {
  readonly location: SourceLocation;
  /** The logical line as written (continuations joined). */
  readonly original: string;
}

export interface FromInstruction extends InstructionBase {
  readonly kind: 'FROM';
  /** The image reference as written (may contain `$VAR`s; expanded with the meta ARGs). */
  readonly image: string;
  /** `AS name`, lower-cased. */
  readonly stageName?: string;
  readonly platform?: string;
}

export interface RunInstruction extends InstructionBase {
  readonly kind: 'RUN';
  readonly form: CommandForm;
  /** Exec form: the argv. Shell form: one element, the command line (or the heredoc marker). */
  readonly args: readonly string[];
  /** Here-documents; with `<<-` the content is still unchomped (see chompHeredocContent). */
  readonly heredocs: readonly Heredoc[];
  /** Raw `--mount` values, in order (parsed by the planner). */
  readonly mounts: readonly string[];
  readonly network?: string;
  readonly security?: string;
}

export interface CmdInstruction extends InstructionBase {
  readonly kind: 'CMD';
  readonly form: CommandForm;
  readonly args: readonly string[];
}

export interface EntrypointInstruction extends InstructionBase {
  readonly kind: 'ENTRYPOINT';
  readonly form: CommandForm;
  readonly args: readonly string[];
}

export interface ShellInstruction extends InstructionBase {
  readonly kind: 'SHELL';
  /** Always exec form (BuildKit rejects anything else). */
  readonly args: readonly string[];
}

export interface KeyValuePair {
  readonly key: string;
  /** Raw text: quotes, escapes and `$VAR`s as written. */
  readonly value: string;
  /** True for the legacy `ENV key value` form (no `=`). */
  readonly legacy: boolean;
}

export interface EnvInstruction extends InstructionBase {
  readonly kind: 'ENV';
  readonly pairs: readonly KeyValuePair[];
}

export interface LabelInstruction extends InstructionBase {
  readonly kind: 'LABEL';
  readonly pairs: readonly KeyValuePair[];
}

export interface ArgDefinition {
  readonly key: string;
  /** The raw default after `=`; absent for `ARG name`. */
  readonly value?: string;
}

export interface ArgInstruction extends InstructionBase {
  readonly kind: 'ARG';
  readonly args: readonly ArgDefinition[];
}

/** A COPY/ADD source given inline as a here-document (`COPY <<EOF /dst`). */
export interface HeredocSource {
  /** The heredoc name, which is also the file name it gets. */
  readonly path: string;
  /** The body, already chomped for `<<-`. */
  readonly data: string;
  readonly expand: boolean;
}

interface SourcesAndDest {
  readonly form: CommandForm;
  /** Source paths as written (heredoc sources excluded). */
  readonly sources: readonly string[];
  /** Heredoc sources, in order. */
  readonly sourceContents: readonly HeredocSource[];
  readonly dest: string;
  readonly heredocs: readonly Heredoc[];
  readonly chown?: string;
  readonly chmod?: string;
  readonly link: boolean;
  readonly exclude: readonly string[];
}

export interface CopyInstruction extends InstructionBase, SourcesAndDest {
  readonly kind: 'COPY';
  readonly from?: string;
  readonly parents: boolean;
}

export interface AddInstruction extends InstructionBase, SourcesAndDest {
  readonly kind: 'ADD';
  readonly checksum?: string;
  readonly keepGitDir?: boolean;
  readonly unpack?: boolean;
}

export interface WorkdirInstruction extends InstructionBase {
  readonly kind: 'WORKDIR';
  readonly path: string;
}

export interface UserInstruction extends InstructionBase {
  readonly kind: 'USER';
  readonly user: string;
}

export interface VolumeInstruction extends InstructionBase {
  readonly kind: 'VOLUME';
  readonly form: CommandForm;
  readonly volumes: readonly string[];
}

export interface ExposeInstruction extends InstructionBase {
  readonly kind: 'EXPOSE';
  /** As written (`80/tcp`, `$PORT`), in source order. */
  readonly ports: readonly string[];
}

export interface StopSignalInstruction extends InstructionBase {
  readonly kind: 'STOPSIGNAL';
  readonly signal: string;
}

/** The image config's Healthcheck.Test. */
export type HealthcheckTest = readonly ['NONE'] | readonly ['CMD', ...string[]] | readonly ['CMD-SHELL', string];

export interface HealthcheckInstruction extends InstructionBase {
  readonly kind: 'HEALTHCHECK';
  readonly test: HealthcheckTest;
  /** Milliseconds; absent when not given (or given as 0, which means "inherit"). */
  readonly interval?: number;
  readonly timeout?: number;
  readonly startPeriod?: number;
  readonly startInterval?: number;
  readonly retries?: number;
}

export interface OnbuildInstruction extends InstructionBase {
  readonly kind: 'ONBUILD';
  /** The trigger as written after `ONBUILD` (what goes into the image config). */
  readonly expression: string;
  readonly trigger: Instruction;
}

export interface MaintainerInstruction extends InstructionBase {
  readonly kind: 'MAINTAINER';
  readonly maintainer: string;
}

export type Instruction =
  | FromInstruction
  | RunInstruction
  | CmdInstruction
  | EntrypointInstruction
  | ShellInstruction
  | EnvInstruction
  | LabelInstruction
  | ArgInstruction
  | CopyInstruction
  | AddInstruction
  | WorkdirInstruction
  | UserInstruction
  | VolumeInstruction
  | ExposeInstruction
  | StopSignalInstruction
  | HealthcheckInstruction
  | OnbuildInstruction
  | MaintainerInstruction;

/** Flags each instruction accepts (bflag types); everything else is "unknown flag". */
const FLAGS: Readonly<Record<InstructionKind, FlagSpec>> = {
  FROM: { platform: 'string' },
  RUN: { mount: 'strings', network: 'string', security: 'string', device: 'strings' },
  CMD: {},
  ENTRYPOINT: {},
  SHELL: {},
  ENV: {},
  LABEL: {},
  ARG: {},
  COPY: { from: 'string', chown: 'string', chmod: 'string', link: 'bool', parents: 'bool', exclude: 'strings' },
  ADD: {
    chown: 'string',
    chmod: 'string',
    link: 'bool',
    checksum: 'string',
    'keep-git-dir': 'bool',
    exclude: 'strings',
    unpack: 'bool',
  },
  WORKDIR: {},
  USER: {},
  VOLUME: {},
  EXPOSE: {},
  STOPSIGNAL: {},
  HEALTHCHECK: {
    interval: 'string',
    timeout: 'string',
    'start-period': 'string',
    'start-interval': 'string',
    retries: 'string',
  },
  ONBUILD: {},
  MAINTAINER: {},
};

/** RUN --network values BuildKit accepts (instructions.allowedNetwork). */
const RUN_NETWORKS: ReadonlySet<string> = new Set(['default', 'none', 'host']);
/** RUN --security values BuildKit accepts (instructions.allowedSecurity). */
const RUN_SECURITY: ReadonlySet<string> = new Set(['sandbox', 'insecure']);

/** BuildKit's container.MinimumDuration for healthcheck intervals. */
const MIN_INTERVAL_NS = 1e6;

const STAGE_NAME = /^[a-z][a-z0-9\-_.]*$/;

/** A problem with one instruction; the caller attaches the location. */
interface InstructionProblem {
  readonly instructionProblem: string;
}

const problem = (message: string): InstructionProblem => ({ instructionProblem: message });
const isProblem = (e: unknown): e is InstructionProblem =>
  typeof e === 'object' && e !== null && typeof (e as { instructionProblem?: unknown }).instructionProblem === 'string';

const atLeastOne = (cmd: string): InstructionProblem => problem(`${cmd} requires at least one argument`);
const exactlyOne = (cmd: string): InstructionProblem => problem(`${cmd} requires exactly one argument`);
const blankNames = (cmd: string): InstructionProblem => problem(`${cmd} names can not be blank`);

/** The kind of a parser keyword (already lower-cased by the parser), if it is a known one. */
function kindOf(keyword: string): InstructionKind | undefined {
  return INSTRUCTION_KINDS.find((k) => k.toLowerCase() === keyword);
}

function flagsOf(node: Node, kind: InstructionKind): ParsedFlags {
  try {
    return parseFlags(node.flags, FLAGS[kind]);
  } catch (e) {
    if (isFlagError(e)) throw problem(e.flagError);
    throw e;
  }
}

/** handleJSONArgs: exec form keeps the array; shell form is one string. */
function commandLine(node: Node, args: readonly string[]): string[] {
  return node.json ? [...args] : [args.join(' ')];
}

const formOf = (node: Node): CommandForm => (node.json ? 'exec' : 'shell');

/** `{ key: value }`, or `{}` when the value is absent (optional fields stay absent, not undefined). */
function optional<K extends string, V>(key: K, value: V | undefined): Partial<Record<K, V>> {
  return value === undefined ? {} : ({ [key]: value } as Record<K, V>);
}

/** Keys of ENV/LABEL from the parser's (key, value, separator) triples. */
function keyValuePairs(node: Node, cmd: 'ENV' | 'LABEL'): KeyValuePair[] {
  const args = node.args;
  if (args.length === 0) throw atLeastOne(cmd);
  if (args.length % 3 !== 0) throw problem(`Bad input to ${cmd}, too many arguments`);
  const pairs: KeyValuePair[] = [];
  for (let i = 0; i < args.length; i += 3) {
    const key = args[i] ?? '';
    if (key === '') throw blankNames(cmd);
    pairs.push({ key, value: args[i + 1] ?? '', legacy: (args[i + 2] ?? '') === '' });
  }
  return pairs;
}

/** parseSourcesAndDest: heredoc sources become inline contents; a heredoc destination is an error. */
function sourcesAndDest(node: Node, cmd: 'COPY' | 'ADD', flags: ParsedFlags): SourcesAndDest {
  const args = node.args;
  const dest = args[args.length - 1] ?? '';
  if (!node.json && parseHeredocWord(dest) !== undefined) {
    throw problem(`${cmd} cannot accept a heredoc as a destination`);
  }
  const byName = new Map(node.heredocs.map((h) => [h.name, h]));
  const sources: string[] = [];
  const sourceContents: HeredocSource[] = [];
  for (const src of args.slice(0, -1)) {
    const marker = node.json ? undefined : parseHeredocWord(src);
    if (marker === undefined) {
      sources.push(src);
      continue;
    }
    const content = byName.get(marker.name)?.content ?? '';
    sourceContents.push({
      path: marker.name,
      data: marker.chomp ? chompHeredocContent(content) : content,
      expand: marker.expand,
    });
  }
  return {
    form: formOf(node),
    sources,
    sourceContents,
    dest,
    heredocs: node.heredocs,
    ...optional('chown', flags.string('chown')),
    ...optional('chmod', flags.string('chmod')),
    link: flags.bool('link') ?? false,
    exclude: flags.strings('exclude'),
  };
}

/** parseOptInterval: a Go duration of at least 1ms, or 0/absent. Returns milliseconds. */
function interval(flags: ParsedFlags, name: string): number | undefined {
  const text = flags.string(name);
  if (text === undefined || text === '') return undefined;
  const parsed = parseGoDuration(text);
  if ('error' in parsed) throw problem(parsed.error);
  if (parsed.ns === 0) return undefined;
  if (parsed.ns < MIN_INTERVAL_NS) throw problem(`Interval ${JSON.stringify(name)} cannot be less than 1ms`);
  return parsed.ns / 1e6;
}

function retriesOf(flags: ParsedFlags): number | undefined {
  const text = flags.string('retries');
  if (text === undefined || text === '') return undefined;
  if (!/^[+-]?[0-9]+$/.test(text)) throw problem(`strconv.ParseInt: parsing ${JSON.stringify(text)}: invalid syntax`);
  const n = Number(text);
  if (n > 2147483647 || n < -2147483648) {
    throw problem(`strconv.ParseInt: parsing ${JSON.stringify(text)}: value out of range`);
  }
  if (n < 1) throw problem(`--retries must be at least 1 (not ${n})`);
  return n;
}

function healthcheck(node: Node, base: InstructionBase): HealthcheckInstruction {
  const args = node.args;
  if (args.length === 0) throw atLeastOne('HEALTHCHECK');
  const type = goToUpper(args[0] ?? '');
  const rest = args.slice(1);
  if (type === 'NONE') {
    // BuildKit does not look at flags for NONE.
    if (rest.length !== 0) throw problem('HEALTHCHECK NONE takes no arguments');
    return { kind: 'HEALTHCHECK', ...base, test: ['NONE'] };
  }
  const flags = flagsOf(node, 'HEALTHCHECK');
  if (type !== 'CMD') throw problem(`Unknown type ${JSON.stringify(type)} in HEALTHCHECK (try CMD)`);
  const cmd = commandLine(node, rest);
  if (cmd.length === 0) throw problem('Missing command after HEALTHCHECK CMD');
  const test: HealthcheckTest = node.json ? ['CMD', ...cmd] : ['CMD-SHELL', cmd[0] ?? ''];
  return {
    kind: 'HEALTHCHECK',
    ...base,
    test,
    ...optional('interval', interval(flags, 'interval')),
    ...optional('timeout', interval(flags, 'timeout')),
    ...optional('startPeriod', interval(flags, 'start-period')),
    ...optional('startInterval', interval(flags, 'start-interval')),
    ...optional('retries', retriesOf(flags)),
  };
}

/** strings.EqualFold(word, "as"), including the Unicode fold of ſ (U+017F) to s. */
const isAs = (word: string): boolean => word.toLowerCase().replace(/\u017f/g, 's') === 'as';

function from(node: Node, base: InstructionBase): FromInstruction {
  const args = node.args;
  let stageName: string | undefined;
  if (args.length === 3 && isAs(args[1] ?? '')) {
    const written = args[2] ?? '';
    stageName = written.toLowerCase();
    if (!STAGE_NAME.test(stageName)) {
      throw problem(
        `invalid name for build stage: ${goQuote(written)}, name can't start with a number or contain symbols`,
      );
    }
  } else if (args.length !== 1) {
    throw problem('FROM requires either one or three arguments');
  }
  const flags = flagsOf(node, 'FROM');
  const platform = flags.string('platform');
  return {
    kind: 'FROM',
    ...base,
    image: args[0] ?? '',
    ...optional('stageName', stageName),
    ...optional('platform', platform === '' ? undefined : platform),
  };
}

function onbuild(node: Node, base: InstructionBase, file: string): OnbuildInstruction {
  const trigger = node.next;
  if (trigger === undefined) throw atLeastOne('ONBUILD');
  flagsOf(node, 'ONBUILD');
  const word = goToUpper(trimSpaceText(trigger.keyword));
  if (word === 'ONBUILD') throw problem('Chaining ONBUILD via `ONBUILD ONBUILD` isn\'t allowed');
  if (word === 'MAINTAINER' || word === 'FROM') throw problem(`${word} isn't allowed as an ONBUILD trigger`);
  // The trigger shares its parent's lines and here-documents.
  const nested: Node = { ...trigger, heredocs: node.heredocs, startLine: node.startLine, endLine: node.endLine };
  return {
    kind: 'ONBUILD',
    ...base,
    expression: node.original.replace(/^[\t\n\f\r ]*onbuild[\t\n\f\r ]*/i, ''),
    trigger: toInstruction(nested, file),
  };
}

function build(node: Node, kind: InstructionKind, base: InstructionBase, file: string): Instruction {
  const args = node.args;
  switch (kind) {
    case 'FROM':
      return from(node, base);
    case 'RUN': {
      const flags = flagsOf(node, 'RUN');
      // commands_runnetwork.go / commands_runsecurity.go: the raw values are checked at parse
      // time (they are not expanded), so a typo fails here instead of silently meaning "host".
      const network = flags.string('network');
      if (network !== undefined && !RUN_NETWORKS.has(network)) throw problem(`invalid network mode ${goQuote(network)}`);
      const security = flags.string('security');
      if (security !== undefined && !RUN_SECURITY.has(security)) throw problem(`security ${goQuote(security)} is not valid`);
      // BuildKit's labs flag (dockerfile:1-labs): a CDI device name, resolved by its daemon from
      // the host's CDI specs into device nodes, mounts and env. Parsed so the refusal says why.
      const devices = flags.strings('device');
      if (devices.length > 0) {
        throw new TsbuildError('UNSUPPORTED', `RUN --device=${devices[0]} is not supported: the flag names a CDI (Container Device Interface) device, which tsbuild does not resolve or pass into RUN steps`, {
          location: base.location,
          hint: 'remove the flag, or build this Dockerfile with BuildKit (dockerfile:1-labs and `--allow device`)',
        });
      }
      return {
        kind,
        ...base,
        form: formOf(node),
        args: commandLine(node, args),
        heredocs: node.heredocs,
        mounts: flags.strings('mount'),
        ...optional('network', network),
        ...optional('security', security),
      };
    }
    case 'CMD':
    case 'ENTRYPOINT':
      flagsOf(node, kind);
      return { kind, ...base, form: formOf(node), args: commandLine(node, args) };
    case 'SHELL': {
      flagsOf(node, kind);
      const shell = commandLine(node, args);
      if (shell.length === 0) throw atLeastOne('SHELL');
      if (!node.json) throw problem('SHELL requires the arguments to be in JSON form');
      return { kind, ...base, args: shell };
    }
    case 'ENV':
    case 'LABEL':
      flagsOf(node, kind);
      return { kind, ...base, pairs: keyValuePairs(node, kind) };
    case 'ARG': {
      if (args.length === 0) throw atLeastOne('ARG');
      flagsOf(node, kind);
      const defs: ArgDefinition[] = args.map((arg) => {
        const eq = arg.indexOf('=');
        if (eq < 0) return { key: arg };
        if (eq === 0) throw blankNames('ARG');
        return { key: arg.slice(0, eq), value: arg.slice(eq + 1) };
      });
      return { kind, ...base, args: defs };
    }
    case 'COPY': {
      if (args.length < 2) throw noDestination(kind);
      const flags = flagsOf(node, kind);
      return {
        kind,
        ...base,
        ...sourcesAndDest(node, kind, flags),
        ...optional('from', flags.string('from')),
        parents: flags.bool('parents') ?? false,
      };
    }
    case 'ADD': {
      if (args.length < 2) throw noDestination(kind);
      const flags = flagsOf(node, kind);
      return {
        kind,
        ...base,
        ...sourcesAndDest(node, kind, flags),
        ...optional('checksum', flags.string('checksum')),
        ...optional('keepGitDir', flags.bool('keep-git-dir')),
        ...optional('unpack', flags.bool('unpack')),
      };
    }
    case 'WORKDIR':
    case 'USER':
    case 'MAINTAINER':
    case 'STOPSIGNAL': {
      if (args.length !== 1) throw exactlyOne(kind);
      flagsOf(node, kind);
      const value = args[0] ?? '';
      if (kind === 'WORKDIR') return { kind, ...base, path: value };
      if (kind === 'USER') return { kind, ...base, user: value };
      if (kind === 'MAINTAINER') return { kind, ...base, maintainer: value };
      return { kind, ...base, signal: value };
    }
    case 'VOLUME': {
      if (args.length === 0) throw atLeastOne(kind);
      flagsOf(node, kind);
      const volumes = args.map((v) => trimSpaceText(v));
      if (volumes.some((v) => v === '')) throw problem('VOLUME specified can not be an empty string');
      return { kind, ...base, form: formOf(node), volumes };
    }
    case 'EXPOSE':
      if (args.length === 0) throw atLeastOne(kind);
      flagsOf(node, kind);
      return { kind, ...base, ports: [...args] };
    case 'HEALTHCHECK':
      return healthcheck(node, base);
    case 'ONBUILD':
      return onbuild(node, base, file);
    default:
      return kind satisfies never;
  }
}

function noDestination(cmd: string): InstructionProblem {
  return problem(
    `${cmd} requires at least two arguments, but only one was provided. Destination could not be determined`,
  );
}

/**
 * One typed instruction from one syntax-tree node. `file` names the Dockerfile in locations.
 * Throws TsbuildError('DOCKERFILE_INSTRUCTION') with the node's location.
 */
export function toInstruction(node: Node, file: string): Instruction {
  const location: SourceLocation = { file, startLine: node.startLine, endLine: node.endLine };
  const kind = kindOf(node.keyword);
  if (kind === undefined) {
    const match = closestMatch(node.keyword, INSTRUCTION_KINDS, false);
    throw new TsbuildError('DOCKERFILE_INSTRUCTION', `unknown instruction: ${goToUpper(node.keyword)}`, {
      location,
      ...(match === undefined ? {} : { hint: `did you mean ${match}?` }),
    });
  }
  try {
    return build(node, kind, { location, original: node.original }, file);
  } catch (e) {
    if (isProblem(e)) throw new TsbuildError('DOCKERFILE_INSTRUCTION', e.instructionProblem, { location });
    throw e;
  }
}

/** Every instruction of a parsed file, in order; the first problem throws. */
export function toInstructions(parsed: ParsedDockerfile): Instruction[] {
  return parsed.children.map((node) => toInstruction(node, parsed.file));
}
