/**
 * BuildKit's build checks over a parsed Dockerfile (pure: what the file system or a registry
 * knows comes in through `CheckOptions`).
 *
 * Where each check runs follows dockerfile2llb: the parse-time checks (casing, stage names,
 * MAINTAINER, descriptions, empty continuations, the FROM lines' ARGs and --platform) look at
 * every stage; the dispatch-time ones (UndefinedVar, WorkdirRelativePath, JSONArgsRecommended,
 * MultipleInstructionsDisallowed, LegacyKeyValueFormat, SecretsUsedInArgOrEnv, Expose*,
 * CopyIgnoredFile) look only at the stages the build dispatches: the target and what it needs,
 * or every stage under `--check` without a target.
 * https://docs.docker.com/reference/build-checks/
 */
import type { SourceLocation } from '../../errors.js';
import { parsePlatform, parseReference } from '../../oci/index.js';
import { parseCheckOptions } from '../directives.js';
import type { Instruction } from '../instructions.js';
import type { Node, ParsedDockerfile } from '../parser.js';
import { looksLikeSecretName } from '../secret-names.js';
import { ShellLex } from '../shell-lex.js';
import { closestMatch } from '../suggest.js';
import { CHECK_RULES, isCheckName, type CheckName, type CheckRule } from './rules.js';

export interface CheckHit {
  readonly rule: CheckRule;
  /** The message for this hit (BuildKit's formatted text). */
  readonly message: string;
  readonly location: SourceLocation;
  /** What to do about it, where tsbuild has more to say than BuildKit's message. */
  readonly advice?: string;
}

/** What the base image of a stage brings (its config), when it is known without a pull. */
export interface BaseImageFacts {
  readonly env: readonly string[];
  readonly shell?: readonly string[];
  /** The image config's `os/architecture`, for InvalidBaseImagePlatform. */
  readonly platform?: string;
}

export interface CheckOptions {
  /** `--build-arg` values. */
  readonly buildArgs: ReadonlyMap<string, string>;
  /** The automatic platform args of the global scope (BUILDPLATFORM, TARGETPLATFORM, ...). */
  readonly automaticArgs: ReadonlyMap<string, string>;
  /** Stage indexes whose instructions are dispatched; `'all'` under `--check` without a target. */
  readonly dispatched: 'all' | ReadonlySet<number>;
  /**
   * The config of an image named by FROM, if known. Unknown (undefined) means its ENV is
   * unknown too, so UndefinedVar stays quiet in stages on that image rather than guess.
   */
  readonly baseImage?: (ref: string) => BaseImageFacts | undefined;
  /** Whether a context path is excluded by .dockerignore (for CopyIgnoredFile). */
  readonly isIgnored?: (source: string) => boolean;
}

export interface CheckReport {
  readonly hits: readonly CheckHit[];
  /** `error=true`: a hit fails the build ("lint violation found for rules: ..."). */
  readonly failOnHit: boolean;
  /** Names in `skip=` / `experimental=` that are no check: reported as warnings. */
  readonly unknownNames: readonly string[];
}

/** BuildKit's `BUILDKIT_DOCKERFILE_CHECK` build arg replaces the `# check=` directive. */
const CHECK_BUILD_ARG = 'BUILDKIT_DOCKERFILE_CHECK';

const ADVICE: Partial<Record<CheckName, string>> = {
  SecretsUsedInArgOrEnv: "an ARG value ends up in the image's history, an ENV value in its config and history; pass a secret with --secret and RUN --mount=type=secret",
};

const RESERVED_STAGE_NAMES = new Set(['context', 'scratch']);
const USED_ONCE = new Set(['CMD', 'ENTRYPOINT', 'HEALTHCHECK']);

const isSelfConsistent = (s: string): boolean => s === s.toLowerCase() || s === s.toUpperCase();
/** The instruction word as written (the parser keeps it only lower-cased). */
const writtenKeyword = (original: string): string => original.trimStart().split(/[\s]/, 1)[0] ?? '';

interface StageFacts {
  /** Names defined in the environment of the stage (image ENV, ENV, ARG with a value). */
  readonly env: Map<string, string>;
  /** Declared ARG names (with or without a value): never "undefined". */
  readonly declared: Set<string>;
  /** False when the base image's ENV is unknown. */
  readonly envKnown: boolean;
  workdirSet: boolean;
  shell: boolean;
}

/**
 * Runs the checks. The `# check=` directive (or the BUILDKIT_DOCKERFILE_CHECK build arg) picks
 * what is skipped and whether a hit is an error; an invalid value is the caller's to reject
 * (directiveWarnings does, as BuildKit's "failed to parse check options").
 */
export function runBuildChecks(parsed: ParsedDockerfile, instructions: readonly Instruction[], opts: CheckOptions): CheckReport {
  const directive = opts.buildArgs.get(CHECK_BUILD_ARG) ?? parsed.directives.check ?? '';
  const config = parseCheckOptions(directive);
  const cfg = 'problem' in config ? { skipAll: false, skip: [], experimentalAll: false, experimental: [], error: false } : config;
  const unknownNames = [...cfg.skip, ...cfg.experimental].filter((n) => n !== '' && !isCheckName(n));
  const enabled = (r: CheckRule): boolean => {
    if (cfg.skipAll || cfg.skip.includes(r.name)) return false;
    return !r.experimental || cfg.experimentalAll || cfg.experimental.includes(r.name);
  };

  const hits: CheckHit[] = [];
  const hit = (name: CheckName, message: string, location: SourceLocation): void => {
    const r = CHECK_RULES[name];
    if (enabled(r)) hits.push({ rule: r, message, location, ...(ADVICE[name] ? { advice: ADVICE[name] } : {}) });
  };
  const lex = new ShellLex(parsed.directives.escape);
  const nodes: readonly Node[] = parsed.children;

  // Parse time: every instruction of the file.
  for (let i = 0; i < instructions.length; i++) {
    const ins = instructions[i]!;
    const node = nodes[i];
    if (node?.emptyContinuation) hit('NoEmptyContinuation', 'Empty continuation line', ins.location);
    if (ins.kind === 'MAINTAINER') hit('MaintainerDeprecated', 'Maintainer instruction is deprecated in favor of using label', ins.location);
    if (ins.kind === 'FROM' && node !== undefined) {
      const args = node.args;
      const command = writtenKeyword(ins.original);
      if (args.length === 3) {
        const written = args[2]!;
        if (written !== written.toLowerCase()) hit('StageNameCasing', `Stage name '${written}' should be lowercase`, ins.location);
        const as = args[1]!;
        const lower = command === command.toLowerCase();
        const upper = command === command.toUpperCase();
        if ((lower && as !== as.toLowerCase()) || (!lower && upper && as !== as.toUpperCase())) {
          hit('FromAsCasing', `'${as}' and '${command}' keywords' casing do not match`, ins.location);
        }
      }
      if (ins.stageName !== undefined) describedBy(node, [ins.stageName], 'FROM', ins.location, hit);
    }
    if (ins.kind === 'ARG' && node !== undefined) describedBy(node, ins.args.map((a) => a.key), 'ARG', ins.location, hit);
  }

  // Stages (as dockerfile2llb splits them, without failing on what the build itself rejects).
  interface CheckStage { index: number; from: Extract<Instruction, { kind: 'FROM' }>; body: Instruction[] }
  const stages: CheckStage[] = [];
  const metaArgs: Extract<Instruction, { kind: 'ARG' }>[] = [];
  for (const ins of instructions) {
    if (ins.kind === 'FROM') stages.push({ index: stages.length, from: ins, body: [] });
    else if (stages.length > 0) stages[stages.length - 1]!.body.push(ins);
    else if (ins.kind === 'ARG') metaArgs.push(ins);
  }

  // Stage names: reserved and duplicate.
  const seen = new Set<string>();
  for (const st of stages) {
    const name = st.from.stageName;
    if (name === undefined) continue;
    if (RESERVED_STAGE_NAMES.has(name)) hit('ReservedStageName', `Stage name should not use the same name as reserved stage "${name}"`, st.from.location);
    if (seen.has(name)) hit('DuplicateStageName', `Duplicate stage name "${name}", stage names should be unique`, st.from.location);
    seen.add(name);
  }

  // Instruction casing: the majority of the stages' words decides (meta ARGs do not count).
  let lowerCount = 0;
  let upperCount = 0;
  const words: { word: string; location: SourceLocation }[] = [];
  for (const st of stages) {
    for (const ins of [st.from, ...st.body]) {
      const word = writtenKeyword(ins.original);
      words.push({ word, location: ins.location });
      if (isSelfConsistent(word)) {
        if (word === word.toLowerCase()) lowerCount++;
        else upperCount++;
      }
    }
  }
  const majorityLower = lowerCount > upperCount;
  for (const { word, location } of words) {
    const casing = majorityLower ? (word !== word.toLowerCase() ? 'lowercase' : '') : word !== word.toUpperCase() ? 'uppercase' : '';
    if (casing !== '') hit('ConsistentInstructionCasing', `Command '${word}' should match the case of the command majority (${casing})`, location);
  }

  // The FROM lines against the global args.
  const declaredMeta = new Set(metaArgs.flatMap((a) => a.args.map((d) => d.key)));
  const globalWith = (buildArgs: ReadonlyMap<string, string>): Map<string, string> => {
    const out = new Map(opts.automaticArgs);
    for (const ins of metaArgs) {
      for (const def of ins.args) {
        let value = buildArgs.get(def.key);
        if (value === undefined && def.value !== undefined) {
          try {
            value = lex.processWord(def.value, (n) => out.get(n));
          } catch {
            return out;
          }
        }
        if (value !== undefined) out.set(def.key, value);
      }
    }
    return out;
  };
  const defaults = globalWith(new Map());
  const globals = globalWith(opts.buildArgs);
  const argKeys = [...new Set([...declaredMeta, ...globals.keys()])];
  for (const st of stages) {
    try {
      const atDefaults = lex.processWord(st.from.image, (n) => defaults.get(n));
      parseReference(atDefaults);
    } catch {
      hit('InvalidDefaultArgInFrom', `Default value for ARG ${st.from.image} results in empty or invalid base image name`, st.from.location);
    }
    const undeclared = (unmatched: ReadonlySet<string>): void => {
      for (const name of unmatched) {
        if (argKeys.includes(name)) continue;
        const near = closestMatch(name, argKeys, true);
        hit('UndefinedArgInFrom', `FROM argument '${name}' is not declared${near === undefined ? '' : ` (did you mean ${near}?)`}`, st.from.location);
      }
    };
    try {
      undeclared(lex.processWordWithMatches(st.from.image, (n) => globals.get(n)).unmatched);
    } catch {
      // The build reports a bad expansion with its own error.
    }
    const platform = st.from.platform;
    if (platform === undefined) continue;
    let m;
    try {
      m = lex.processWordWithMatches(platform, (n) => globals.get(n));
    } catch {
      continue;
    }
    undeclared(m.unmatched);
    if (m.matched.size === 1 && m.unmatched.size === 0 && m.matched.has('TARGETPLATFORM') && m.result === globals.get('TARGETPLATFORM')) {
      hit('RedundantTargetPlatform', `Setting platform to predefined ${platform} in FROM is redundant as this is the default behavior`, st.from.location);
    }
    if (m.matched.size === 0 && m.unmatched.size === 0) {
      try {
        const p = parsePlatform(m.result);
        const name = st.from.stageName ?? '';
        if (!name.includes(p.os) && !name.includes(p.architecture)) {
          hit('FromPlatformFlagConstDisallowed', `FROM --platform flag should not use constant value ${JSON.stringify(m.result)}`, st.from.location);
        }
      } catch {
        // An unparsable platform fails the build later, with its own error.
      }
    }
  }

  // Dispatch time: the stages the build runs, in file order (a base stage comes first).
  const facts = new Map<string, StageFacts>();
  for (const st of stages) {
    let base: StageFacts | undefined;
    let image = st.from.image;
    try {
      image = lex.processWord(st.from.image, (n) => globals.get(n));
    } catch {
      // Reported by the build.
    }
    base = facts.get(image.toLowerCase());
    const own: StageFacts = base
      ? { env: new Map(base.env), declared: new Set(base.declared), envKnown: base.envKnown, workdirSet: base.workdirSet, shell: base.shell }
      : fromImage(image, opts.baseImage);
    if (st.from.stageName !== undefined) facts.set(st.from.stageName, own);
    if (opts.dispatched !== 'all' && !opts.dispatched.has(st.index)) continue;
    // InvalidBaseImagePlatform: the image's config against the platform the stage builds for
    // (FROM --platform, else TARGETPLATFORM); OS and architecture compared, as BuildKit does.
    const actual = base === undefined && image !== 'scratch' ? opts.baseImage?.(image)?.platform : undefined;
    if (actual !== undefined) {
      let expected = globals.get('TARGETPLATFORM') ?? '';
      if (st.from.platform !== undefined) {
        try {
          expected = lex.processWord(st.from.platform, (n) => globals.get(n));
        } catch {
          // Reported by the build.
        }
      }
      const osArch = (p: string): string => p.split('/').slice(0, 2).join('/');
      if (expected !== '' && osArch(actual) !== osArch(expected)) {
        hit('InvalidBaseImagePlatform', `Base image ${st.from.image} was pulled with platform ${JSON.stringify(actual)}, expected ${JSON.stringify(expected)} for current build`, st.from.location);
      }
    }
    dispatchStage(st.body, own, { lex, globals, buildArgs: opts.buildArgs, hit, isIgnored: opts.isIgnored });
  }

  hits.sort((a, b) => a.location.startLine - b.location.startLine);
  return { hits, failOnHit: cfg.error, unknownNames };
}

function fromImage(image: string, baseImage: CheckOptions['baseImage']): StageFacts {
  const env = new Map<string, string>();
  let known = true;
  let shell = false;
  if (image !== 'scratch') {
    const facts = baseImage?.(image);
    if (facts === undefined) known = false;
    for (const kv of facts?.env ?? []) {
      const eq = kv.indexOf('=');
      env.set(eq < 0 ? kv : kv.slice(0, eq), eq < 0 ? '' : kv.slice(eq + 1));
    }
    shell = (facts?.shell?.length ?? 0) > 0;
  }
  // BuildKit always sets PATH.
  if (!env.has('PATH')) env.set('PATH', '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin');
  return { env, declared: new Set(), envKnown: known, workdirSet: false, shell };
}

/** Comments right above FROM/ARG must start with the name they describe (InvalidDefinitionDescription). */
function describedBy(node: Node, keys: readonly string[], instruction: string, location: SourceLocation, hit: (n: CheckName, m: string, l: SourceLocation) => void): void {
  const comments = node.comments ?? [];
  if (comments.length === 0 || keys.length === 0) return;
  const first = (comments[comments.length - 1] ?? '').split(' ')[0] ?? '';
  if (keys.includes(first)) return;
  const example = keys.length > 1 ? '<arg_key>' : keys[0]!;
  hit('InvalidDefinitionDescription', `Comment for ${instruction} should follow the format: \`# ${example} <description>\``, location);
}

interface DispatchContext {
  readonly lex: ShellLex;
  readonly globals: ReadonlyMap<string, string>;
  readonly buildArgs: ReadonlyMap<string, string>;
  readonly hit: (n: CheckName, m: string, l: SourceLocation) => void;
  readonly isIgnored?: ((source: string) => boolean) | undefined;
}

function dispatchStage(body: readonly Instruction[], st: StageFacts, ctx: DispatchContext): void {
  const { lex, hit } = ctx;
  const lastUse = new Map<string, SourceLocation>();
  const expand = (ins: Instruction, word: string): string => {
    let r;
    try {
      r = lex.processWordWithMatches(word, (n) => st.env.get(n));
    } catch {
      return word;
    }
    if (st.envKnown) {
      for (const name of r.unmatched) {
        if (st.declared.has(name)) continue;
        const near = closestMatch(name, [...st.env.keys()], true);
        hit('UndefinedVar', `Usage of undefined variable '$${name}'${near === undefined ? '' : ` (did you mean $${near}?)`}`, ins.location);
      }
    }
    return r.result;
  };
  for (const ins of body) {
    const word = writtenKeyword(ins.original);
    if (USED_ONCE.has(ins.kind)) {
      const previous = lastUse.get(ins.kind);
      if (previous !== undefined) {
        hit('MultipleInstructionsDisallowed', `Multiple ${word} instructions should not be used in the same stage because only the last one will be used`, previous);
      }
      lastUse.set(ins.kind, ins.location);
    }
    switch (ins.kind) {
      case 'ENV':
        for (const p of ins.pairs) {
          if (p.legacy) hit('LegacyKeyValueFormat', `"${word} key=value" should be used instead of legacy "${word} key value" format`, ins.location);
          if (looksLikeSecretName(p.key)) hit('SecretsUsedInArgOrEnv', `Do not use ARG or ENV instructions for sensitive data (ENV ${JSON.stringify(p.key)})`, ins.location);
        }
        // Every value is expanded against the environment before this ENV (Docker's rule).
        for (const [k, v] of ins.pairs.map((p) => [p.key, expand(ins, p.value)] as const)) st.env.set(k, v);
        break;
      case 'LABEL':
        for (const p of ins.pairs) {
          if (p.legacy) hit('LegacyKeyValueFormat', `"${word} key=value" should be used instead of legacy "${word} key value" format`, ins.location);
          expand(ins, p.key);
          expand(ins, p.value);
        }
        break;
      case 'ARG':
        for (const def of ins.args) {
          if (looksLikeSecretName(def.key)) hit('SecretsUsedInArgOrEnv', `Do not use ARG or ENV instructions for sensitive data (ARG ${JSON.stringify(def.key)})`, ins.location);
          let value = ctx.buildArgs.get(def.key);
          if (value === undefined && def.value === undefined) value = ctx.globals.get(def.key);
          else if (value === undefined && def.value !== undefined) value = expand(ins, def.value);
          st.declared.add(def.key);
          if (value !== undefined) st.env.set(def.key, value);
        }
        break;
      case 'CMD':
      case 'ENTRYPOINT':
        if (ins.form === 'shell' && !st.shell) {
          hit('JSONArgsRecommended', `JSON arguments recommended for ${word} to prevent unintended behavior related to OS signals`, ins.location);
        }
        break;
      case 'SHELL':
        st.shell = true;
        break;
      case 'WORKDIR': {
        const p = expand(ins, ins.path);
        if (!st.workdirSet && !p.startsWith('/')) hit('WorkdirRelativePath', `Relative workdir ${JSON.stringify(p)} can have unexpected results if the base image changes`, ins.location);
        st.workdirSet = true;
        break;
      }
      case 'COPY':
      case 'ADD': {
        const sources = ins.sources.map((s) => expand(ins, s));
        expand(ins, ins.dest);
        if (ins.chown !== undefined) expand(ins, ins.chown);
        if (ins.chmod !== undefined) expand(ins, ins.chmod);
        const fromContext = ins.kind === 'ADD' || ins.from === undefined;
        if (fromContext && ctx.isIgnored !== undefined) {
          for (const src of sources) {
            if (/^(https?|git|ssh):\/\//.test(src) || /^git@/.test(src)) continue;
            if (ctx.isIgnored(src)) hit('CopyIgnoredFile', `Attempting to ${ins.kind === 'ADD' ? 'Add' : 'Copy'} file ${JSON.stringify(src)} that is excluded by .dockerignore`, ins.location);
          }
        }
        break;
      }
      case 'USER':
        expand(ins, ins.user);
        break;
      case 'STOPSIGNAL':
        expand(ins, ins.signal);
        break;
      case 'VOLUME':
        for (const v of ins.volumes) expand(ins, v);
        break;
      case 'EXPOSE':
        for (const raw of ins.ports) {
          let ports: string[];
          try {
            ports = lex.processWords(raw, (n) => st.env.get(n));
          } catch {
            continue;
          }
          for (const port of ports) exposeChecks(port, ins.location, hit);
        }
        break;
      default:
        break;
    }
  }
}

/** BuildKit's port-spec split: `[ip:][hostPort:]containerPort[/proto]`. */
function exposeChecks(rawPort: string, location: SourceLocation, hit: DispatchContext['hit']): void {
  const parts = rawPort.split(':');
  const n = parts.length;
  const containerPort = parts[n - 1] ?? '';
  const ip = n >= 3 ? parts.slice(0, n - 2).join(':') : '';
  const hostPort = n >= 2 ? (parts[n - 2] ?? '') : '';
  const slash = containerPort.split('/');
  const proto = slash.length >= 2 && slash[1] !== '' ? (slash[1] ?? '') : 'tcp';
  if (proto !== proto.toLowerCase()) hit('ExposeProtoCasing', `Defined protocol '${rawPort}' in EXPOSE instruction should be lowercase`, location);
  if (ip !== '' || hostPort !== '') hit('ExposeInvalidFormat', `EXPOSE instruction should not define an IP address or host-port mapping, found '${rawPort}'`, location);
}

/** The error BuildKit gives for `error=true` with hits: the rule names, each once. */
export function checkViolationMessage(hits: readonly CheckHit[]): string {
  return `lint violation found for rules: ${[...new Set(hits.map((h) => h.rule.name))].join(', ')}`;
}
