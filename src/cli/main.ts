import { readFileSync } from 'node:fs';
import yargs from 'yargs';
import type { Argv } from 'yargs';
import type { Logger } from 'pino';
import { TsbuildError, EXIT } from '../errors.js';
import type { Io } from './io.js';
import { LOG_LEVELS, createLogger, lazyLogger, resolveRoot, type GlobalArgs } from './global-options.js';
import { renderError } from './render-error.js';
import type { CommandContext, CommandSpec } from './command.js';
import { commandGroups, commands, type CommandEntry } from './commands/index.js';
import type { Store } from '../store/index.js';

/** Global options that take a value (they may come before the command's name). */
const GLOBAL_VALUE_OPTIONS = new Set(['--root', '--log-level']);

/** Lets a command with `splitArgs` (run) rewrite the words after its name; see CommandEntry. */
function splitCommandArgs(argv: readonly string[]): readonly string[] {
  let i = 0;
  while (i < argv.length && argv[i]!.startsWith('-')) i += GLOBAL_VALUE_OPTIONS.has(argv[i]!) ? 2 : 1;
  const name = argv[i];
  const entry = commands.find((c) => c.command.split(' ')[0] === name);
  if (!entry?.splitArgs) return argv;
  return [...argv.slice(0, i + 1), ...entry.splitArgs(argv.slice(i + 1))];
}

/**
 * tsbuild's version, from the nearest package.json above this module: dist/src/cli/main.js
 * as tsc emits it, src/cli/main.ts under vitest, or the bundled dist/cmd/*.js (scripts/bundle).
 */
function packageVersion(): string {
  for (let dir = new URL('./', import.meta.url); ; ) {
    try {
      return (JSON.parse(readFileSync(new URL('package.json', dir), 'utf8')) as { version: string }).version;
    } catch (err) {
      const parent = new URL('../', dir);
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT' || parent.href === dir.href) throw err;
      dir = parent;
    }
  }
}

/**
 * Before it runs a command's handler, yargs formats that command's whole help text and keeps it
 * in case the handler later asks for it (string-width, cliui: ~30 ms of a ~0.3 s cached build).
 * tsbuild never shows help after parsing (its errors are rendered by main()), so the command's
 * builder turns that cache off. This reaches into yargs' internal methods: if they change, the
 * guard leaves yargs as it is, which is only slower.
 */
function skipHelpCache(y: unknown): void {
  const internal = (y as { getInternalMethods?: () => { getUsageInstance?: () => { cacheHelpMessage?: () => void } } }).getInternalMethods?.();
  const usage = internal?.getUsageInstance?.();
  if (usage && typeof usage.cacheHelpMessage === 'function') usage.cacheHelpMessage = () => undefined;
}

/**
 * The CLI: argv in, exit code out. Flags are parsed by yargs; each command's `run` does
 * the work; every error is rendered here and nowhere else.
 */
export async function main(rawArgv: readonly string[], io: Io): Promise<number> {
  const argv = splitCommandArgs(rawArgv);
  let exitCode: number = EXIT.ok;
  let handled = false;
  // The logger (pino) is made on the first line written at an enabled level (lazyLogger).
  let logger: Logger | undefined;
  let lazy: Logger | undefined;

  const fail = (err: unknown): void => {
    const { text, exitCode: code } = renderError(err);
    io.stderr.write(text);
    exitCode = code;
  };

  let parser = yargs([...argv])
    .scriptName('tsbuild')
    .usage('$0 <command> [options]\n\nA daemon-free OCI image builder.')
    .option('root', {
      type: 'string',
      describe: 'Directory of the local image store (default $TSBUILD_ROOT, else $XDG_DATA_HOME/tsbuild, else ~/.local/share/tsbuild)',
      global: true,
    })
    .option('log-level', {
      choices: LOG_LEVELS,
      default: 'warn' as const,
      describe: 'Log level of the structured log on stderr',
      global: true,
    })
    .strict()
    // docker's flags --no-cache and --no-trunc are flags of their own, not negations. Commands
    // read their flags by their own (kebab-case) names, so yargs-parser does not add a camelCase
    // alias of every option (a third of its parsing time for build's ~60 options).
    .parserConfiguration({ 'boolean-negation': false, 'camel-case-expansion': false })
    .showHelpOnFail(false)
    .demandCommand(1, 'Name a command; see tsbuild --help')
    .recommendCommands()
    .exitProcess(false)
    .version(packageVersion())
    .help()
    .alias('h', 'help')
    .wrap(Math.min(110, process.stdout.columns || 100));

  // The command yargs chose, recorded by its builder: yargs runs only the chosen command's
  // builder (or, for --help, the one whose help it prints), and that is when the command's
  // module is loaded. The command runs after parsing, outside yargs.
  let chosen: CommandSpec<unknown> | undefined;
  const choose = (entry: CommandEntry) => async (y: Argv<GlobalArgs>) => {
    const spec = (await entry.load()) as CommandSpec<unknown>;
    chosen = spec;
    skipHelpCache(y);
    return spec.builder(y);
  };

  for (const entry of commands) parser = parser.command(entry.command, entry.describe, choose(entry));
  // docker's management-command spellings: `image ls`, `image inspect`, ...
  for (const group of commandGroups) {
    parser = parser.command(`${group.name} <command>`, group.describe, (y) => {
      let g = y;
      for (const [alias, name] of group.commands) {
        const entry = commands.find((c) => c.command.split(' ')[0] === name)!;
        g = g.command(entry.command.replace(/^\S+/, alias), entry.describe, choose(entry));
      }
      return g.demandCommand(1);
    });
  }

  const runChosen = async (spec: CommandSpec<unknown>, args: unknown): Promise<void> => {
    handled = true;
    const a = args as GlobalArgs;
    const root = resolveRoot(a.root, io);
    let store: Promise<Store> | undefined;
    const ctx: CommandContext = {
      io,
      root,
      logger: () => (lazy ??= lazyLogger(a['log-level'], () => (logger ??= createLogger(a['log-level'])))),
      store: () =>
        (store ??= import('../store/index.js').then((m) =>
          m.openStore(root, {
            signal: io.signal,
            // Trees of other IDs (rootless steps) go inside a user namespace; the sandbox code
            // loads only when a tree is removed.
            removeTree: async (p, signal) => (await import('../engine/index.js')).removeTreeAnyOwner(p, signal),
          }),
        )),
    };
    try {
      exitCode = await spec.run(args as never, ctx);
    } catch (err) {
      fail(err);
    }
  };

  try {
    let usageError = false;
    let printed = false;
    const args = await parser.parseAsync([...argv], {}, (err, _args, output) => {
      if (err) {
        io.stderr.write(`error: ${err.message}\nSee 'tsbuild --help'.\n`);
        exitCode = EXIT.usage;
        usageError = true;
        return;
      }
      if (output) {
        printed = true;
        io.stdout.write(output.endsWith('\n') ? output : `${output}\n`);
      }
    });
    // --help / --version print and stop; a usage error was reported above.
    if (chosen !== undefined && !usageError && !printed) await runChosen(chosen, args);
  } catch (err) {
    // yargs rethrows handler-independent failures (unknown flags, validation).
    if (!handled) {
      fail(err instanceof TsbuildError ? err : new TsbuildError('USAGE', (err as Error)?.message ?? String(err)));
    } else {
      fail(err);
    }
  }
  logger?.flush();
  return exitCode;
}

/**
 * Ends the process with `run`'s exit code once it settles. By then the command's work is done
 * and durable (every write it awaited). Exiting at once rather than letting the event loop
 * drain skips waiting for anything left behind (an idle keep-alive socket, a pending timer) and
 * the teardown of V8's heap, a few ms of a command's fixed cost; 'exit' handlers still run (the
 * launcher's code cache). Only when nothing is left to write to stdout or stderr: a pipe takes
 * 64 KiB at once and Node queues the rest (an archive saved to stdout), which an exit would cut;
 * then the loop drains as before. A command whose promise never settles (a lost callback
 * somewhere below) would otherwise let the event loop drain and the process exit 0 having done
 * nothing, which a CI job takes for success. So if the loop drains first, this says so and
 * exits 70 (internal error): any such bug is loud.
 */
export function exitWhenSettled(run: Promise<number>, proc: Pick<NodeJS.Process, 'once' | 'stdout' | 'stderr' | 'exitCode' | 'exit'> = process): void {
  let settled = false;
  // 'beforeExit' fires only when nothing is left to do: never while a build still works.
  proc.once('beforeExit', () => {
    if (settled) return;
    proc.stderr.write('internal error (this is a bug in tsbuild, please report it):\nthe command stopped before it finished: it produced no result and no error\n');
    proc.exitCode = EXIT.internal;
  });
  const end = (code: number): void => {
    settled = true;
    proc.exitCode = code;
    if (proc.stdout.writableLength === 0 && proc.stderr.writableLength === 0) proc.exit(code);
  };
  run.then(end, (err: unknown) => {
    // main() renders every error itself; a rejection here is a bug of main().
    proc.stderr.write(renderError(err).text);
    end(EXIT.internal);
  });
}
