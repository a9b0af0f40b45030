/**
 * The GitHub Action (action.yml, runs.main: dist/cmd/action.cjs): docker/build-push-action's
 * inputs in, `build()` of the API, the outputs `imageid`, `digest` and `metadata` written to
 * $GITHUB_OUTPUT. Runs as the runner runs it: inputs are INPUT_<NAME> environment variables
 * (name upper-cased, spaces to underscores, hyphens kept, as @actions/core reads them), no
 * stdin, workflow commands on stdout.
 *
 * Registry credentials come from the auth files docker/login-action writes
 * ($DOCKER_CONFIG/config.json, else ~/.docker/config.json): the API's default.
 */
import { randomUUID } from 'node:crypto';
import fs from 'node:fs/promises';
import type { Writable } from 'node:stream';
import type { Logger } from 'pino';
import { build, splitList, TsbuildError, type BuildEvent, type BuildOptions, type BuildOutcome } from '../api/index.js';

export interface ActionIo {
  readonly env: NodeJS.ProcessEnv;
  readonly cwd: string;
  /** Where workflow commands and the log go (the runner reads stdout). */
  readonly stdout: Writable;
  readonly signal: AbortSignal;
  readonly logger: Logger;
}

/** An input as @actions/core's getInput reads it: INPUT_<NAME>, trimmed, '' when unset. */
export function getInput(env: NodeJS.ProcessEnv, name: string): string {
  return (env[`INPUT_${name.replace(/ /g, '_').toUpperCase()}`] ?? '').trim();
}

/** @actions/core's getBooleanInput: YAML 1.2 core schema booleans only; '' is `fallback`. */
export function getBooleanInput(env: NodeJS.ProcessEnv, name: string, fallback: boolean): boolean {
  const v = getInput(env, name);
  if (v === '') return fallback;
  if (['true', 'True', 'TRUE'].includes(v)) return true;
  if (['false', 'False', 'FALSE'].includes(v)) return false;
  throw new TsbuildError('USAGE', `input "${name}" must be true or false, not ${JSON.stringify(v)}`);
}

/**
 * A list input as docker/build-push-action reads it: one item per line, and for `commas`
 * inputs (tags, platforms) also comma-separated (double quotes keep a comma). Lines starting
 * with # are comments.
 */
export function getListInput(env: NodeJS.ProcessEnv, name: string, opts: { readonly commas: boolean }): string[] {
  const text = getInput(env, name)
    .split(/\r?\n/)
    .filter((l) => !l.trim().startsWith('#'))
    .join('\n');
  try {
    return splitList(text, opts.commas);
  } catch (err) {
    throw new TsbuildError('USAGE', `input "${name}": ${(err as Error).message}`);
  }
}

/** `KEY=VALUE` per line. The error names the item by number only: it may hold a secret. */
function pairs(env: NodeJS.ProcessEnv, name: string): Array<[string, string]> {
  return getListInput(env, name, { commas: false }).map((line, i) => {
    const eq = line.indexOf('=');
    if (eq <= 0) throw new TsbuildError('USAGE', `input "${name}": item ${i + 1} is not KEY=VALUE`, { hint: 'one KEY=VALUE per line' });
    return [line.slice(0, eq), line.slice(eq + 1)];
  });
}

/** Escapes the data of a workflow command (as @actions/core's escapeData / escapeProperty). */
function escapeData(s: string): string {
  return s.replace(/%/g, '%25').replace(/\r/g, '%0D').replace(/\n/g, '%0A');
}
function escapeProperty(s: string): string {
  return escapeData(s).replace(/:/g, '%3A').replace(/,/g, '%2C');
}

/**
 * Progress folded into log groups: each step's output is held until the step ends, then
 * written as one `::group::` titled with the step (GitHub groups cannot nest or interleave,
 * and stages run in parallel). Step output is fenced with `::stop-commands::`, so a RUN step
 * that prints `::set-output` or `::add-mask` cannot issue workflow commands.
 */
export function groupReporter(out: Writable): (e: BuildEvent) => void {
  const steps = new Map<number, { name: string; lines: string[]; miss?: string }>();
  const flush = (id: number, done: string): void => {
    const s = steps.get(id);
    if (!s) return;
    steps.delete(id);
    // Why a step missed the cache goes on its title line, before its status, so a quiet step stays one line.
    const title = s.miss === undefined ? s.name : `${s.name} (cache miss: ${s.miss})`;
    if (s.lines.length === 0) {
      out.write(`#${id} ${title} ${done}\n`);
      return;
    }
    const fence = randomUUID();
    out.write(`::group::#${id} ${escapeData(title)} ${done}\n::stop-commands::${fence}\n${s.lines.join('')}::${fence}::\n::endgroup::\n`);
  };
  return (e) => {
    switch (e.type) {
      case 'step-start':
        steps.set(e.id, { name: e.name, lines: [] });
        return;
      case 'step-log':
        steps.get(e.id)?.lines.push(e.text.endsWith('\n') ? e.text : `${e.text}\n`);
        return;
      case 'step-miss': {
        const s = steps.get(e.id);
        if (s) s.miss = e.reason;
        return;
      }
      case 'step-cached':
        flush(e.id, 'CACHED');
        return;
      case 'step-done':
        flush(e.id, `DONE ${(e.durationMs / 1000).toFixed(1)}s`);
        return;
      case 'step-error':
        flush(e.id, 'ERROR');
        out.write(`::error title=tsbuild::${escapeData(e.message)}\n`);
        return;
      case 'warning': {
        const where = e.location ? ` file=${escapeProperty(e.location.file)},line=${e.location.startLine},endLine=${e.location.endLine}` : '';
        out.write(`::warning${where}::${escapeData(e.message)}\n`);
        return;
      }
      case 'info':
        out.write(`${e.message}\n`);
        return;
      default:
        e satisfies never;
    }
  };
}

/** One output in the GITHUB_OUTPUT file's heredoc form (as @actions/core's prepareKeyValueMessage). */
export function outputEntry(name: string, value: string): string {
  const delimiter = `ghadelimiter_${randomUUID()}`;
  if (name.includes(delimiter) || value.includes(delimiter)) throw new Error(`the output ${name} contains its delimiter`);
  return `${name}<<${delimiter}\n${value}\n${delimiter}\n`;
}

/** The API's options from the action's inputs (the names of docker/build-push-action). */
export function optionsFromInputs(env: NodeJS.ProcessEnv, cwd: string): { options: BuildOptions; masks: string[] } {
  const masks: string[] = [];
  // `secrets`: KEY=VALUE per line (values given inline, as build-push-action takes them). They
  // reach the build through a private environment, never a file or a command line.
  const secretEnv: Record<string, string> = {};
  const secretSpecs: string[] = [];
  pairs(env, 'secrets').forEach(([id, value], i) => {
    const name = `TSBUILD_ACTION_SECRET_${i}`;
    secretEnv[name] = value;
    masks.push(...value.split(/\r?\n/).filter((l) => l.trim() !== ''));
    secretSpecs.push(`id=${id},env=${name}`);
  });
  for (const [id, file] of pairs(env, 'secret-files')) secretSpecs.push(`id=${id},src=${file}`);
  const outputs = getListInput(env, 'outputs', { commas: false });
  // `type=image,push=true` is buildx's push-only output: `load` still adds the local store.
  if (getBooleanInput(env, 'load', false) && !outputs.some((o) => /(^|,)type=(image|store)(,|$)/.test(o) && !/(^|,)push=true(,|$)/.test(o))) outputs.push('type=image');
  const options: BuildOptions = {
    context: getInput(env, 'context') || '.',
    ...(getInput(env, 'file') ? { file: getInput(env, 'file') } : {}),
    tags: getListInput(env, 'tags', { commas: true }),
    // NAME alone takes its value from the environment, as buildx's --build-arg does.
    buildArgs: getListInput(env, 'build-args', { commas: false }),
    ...(getInput(env, 'target') ? { target: getInput(env, 'target') } : {}),
    push: getBooleanInput(env, 'push', false),
    outputs,
    cacheFrom: getListInput(env, 'cache-from', { commas: false }),
    cacheTo: getListInput(env, 'cache-to', { commas: false }),
    platforms: getListInput(env, 'platforms', { commas: true }),
    labels: pairs(env, 'labels').map(([k, v]) => `${k}=${v}`),
    secrets: secretSpecs,
    noCache: getBooleanInput(env, 'no-cache', false),
    pull: getBooleanInput(env, 'pull', false),
    cwd,
    env: { ...env, ...secretEnv },
  };
  return { options, masks };
}

/** Runs the action; resolves to the process's exit code (0 ok, 1 failed, as core.setFailed). */
export async function runAction(io: ActionIo): Promise<number> {
  const out = io.stdout;
  try {
    const outputFile = io.env.GITHUB_OUTPUT;
    if (!outputFile) {
      throw new TsbuildError('USAGE', 'GITHUB_OUTPUT is not set: the outputs imageid, digest and metadata have nowhere to go', {
        hint: 'run this as a GitHub Actions step (the runner sets GITHUB_OUTPUT), or set GITHUB_OUTPUT to a file',
      });
    }
    // Fail before building when the outputs cannot be written.
    await fs.appendFile(outputFile, '').catch((err: NodeJS.ErrnoException) => {
      throw new TsbuildError('USAGE', `cannot write GITHUB_OUTPUT (${outputFile}): ${err.code ?? err.message}`);
    });
    const { options, masks } = optionsFromInputs(io.env, io.cwd);
    for (const m of masks) out.write(`::add-mask::${escapeData(m)}\n`);
    const result: BuildOutcome = await build({ ...options, signal: io.signal, logger: io.logger, onEvent: groupReporter(out) });
    await fs.appendFile(outputFile, outputEntry('imageid', result.imageId) + outputEntry('digest', result.digest) + outputEntry('metadata', JSON.stringify(result.metadata, null, 2)));
    out.write(`imageid: ${result.imageId}\ndigest: ${result.digest}\n`);
    return 0;
  } catch (err) {
    if (err instanceof TsbuildError) {
      const where = err.location ? ` file=${escapeProperty(err.location.file)},line=${err.location.startLine},endLine=${err.location.endLine}` : '';
      out.write(`::error title=tsbuild ${err.code}${where}::${escapeData(err.message + (err.hint ? `\nhint: ${err.hint}` : ''))}\n`);
      return 1;
    }
    const detail = err instanceof Error ? (err.stack ?? err.message) : String(err);
    out.write(`::error title=tsbuild internal error::${escapeData(`internal error (this is a bug in tsbuild, please report it):\n${detail}`)}\n`);
    return 1;
  }
}
