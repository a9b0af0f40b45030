import { readFileSync } from 'node:fs';
import yargs from 'yargs';
import type { CommandModule } from 'yargs';
import type { Logger } from 'pino';
import { TsbuildError, EXIT } from '../errors.js';
import type { Io } from './io.js';
import { LOG_LEVELS, createLogger, resolveRoot, type GlobalArgs } from './global-options.js';
import { renderError } from './render-error.js';
import type { CommandContext, CommandSpec } from './command.js';
import { commandGroups, commands } from './commands/index.js';
import { openStore, type Store } from '../store/index.js';

/** Global options that take a value (they may come before the command's name). */
const GLOBAL_VALUE_OPTIONS = new Set(['--root', '--log-level']);

/** Lets a command with `splitArgs` (run) rewrite the words after its name; see CommandSpec. */
function splitCommandArgs(argv: readonly string[]): readonly string[] {
  let i = 0;
  while (i < argv.length && argv[i]!.startsWith('-')) i += GLOBAL_VALUE_OPTIONS.has(argv[i]!) ? 2 : 1;
  const name = argv[i];
  const spec = (commands as readonly CommandSpec<unknown>[]).find((c) => String(c.command).split(' ')[0] === name);
  if (!spec?.splitArgs) return argv;
  return [...argv.slice(0, i + 1), ...spec.splitArgs(argv.slice(i + 1))];
}

function packageVersion(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

/**
 * The CLI: argv in, exit code out. Flags are parsed by yargs; each command's `run` does
 * the work; every error is rendered here and nowhere else.
 */
export async function main(rawArgv: readonly string[], io: Io): Promise<number> {
  const argv = splitCommandArgs(rawArgv);
  let exitCode: number = EXIT.ok;
  let handled = false;
  let logger: Logger | undefined;

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
    // docker's flags --no-cache and --no-trunc are flags of their own, not negations.
    .parserConfiguration({ 'boolean-negation': false })
    .showHelpOnFail(false)
    .demandCommand(1, 'Name a command; see tsbuild --help')
    .recommendCommands()
    .exitProcess(false)
    .version(packageVersion())
    .help()
    .alias('h', 'help')
    .wrap(Math.min(110, process.stdout.columns || 100));

  const toModule = (spec: CommandSpec<unknown>): CommandModule => ({
    command: spec.command as string | string[],
    describe: spec.describe,
    builder: (y) => spec.builder(y as never) as never,
    handler: async (args) => {
      handled = true;
      const a = args as unknown as GlobalArgs;
      const root = resolveRoot(a.root, io);
      let store: Promise<Store> | undefined;
      const ctx: CommandContext = {
        io,
        root,
        logger: () => (logger ??= createLogger(a['log-level'])),
        store: () => (store ??= openStore(root, { signal: io.signal })),
      };
      try {
        exitCode = await spec.run(args as never, ctx);
      } catch (err) {
        fail(err);
      }
    },
  });

  for (const spec of commands as readonly CommandSpec<unknown>[]) parser = parser.command(toModule(spec));
  // docker's management-command spellings: `image ls`, `image inspect`, ...
  for (const group of commandGroups) {
    parser = parser.command({
      command: `${group.name} <command>`,
      describe: group.describe,
      builder: (y) => {
        let g = y;
        for (const [alias, spec] of group.commands) g = g.command({ ...toModule(spec as CommandSpec<unknown>), command: String(spec.command).replace(/^\S+/, alias) });
        return g.demandCommand(1);
      },
      handler: () => undefined,
    });
  }

  try {
    await parser.parseAsync([...argv], {}, (err, _args, output) => {
      if (err && !handled) {
        io.stderr.write(`error: ${err.message}\nSee 'tsbuild --help'.\n`);
        exitCode = EXIT.usage;
        return;
      }
      if (output) io.stdout.write(output.endsWith('\n') ? output : `${output}\n`);
    });
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
