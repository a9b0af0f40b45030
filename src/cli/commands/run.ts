import { readFile, stat } from 'node:fs/promises';
import { isAbsolute, resolve } from 'node:path';
import { runImage, type StepMount } from '../../engine/index.js';
import { TsbuildError } from '../../errors.js';
import { defineCommand, repeatable } from '../command.js';
import { getLocalImage, resolveImageArg } from '../../image/index.js';
import { formatPlatform, parsePlatform, platformMatches } from '../../oci/index.js';

/** KEY=VALUE, or KEY alone to take the value from the host environment (dropped when unset). */
function envEntry(spec: string, hostEnv: NodeJS.ProcessEnv): string | undefined {
  if (spec.includes('=')) return spec;
  const v = hostEnv[spec];
  return v === undefined ? undefined : `${spec}=${v}`;
}

/** docker's env file: KEY=VALUE or KEY lines, `#` comments and blank lines skipped. */
async function readEnvFile(path: string, hostEnv: NodeJS.ProcessEnv): Promise<string[]> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    throw new TsbuildError('USAGE', `cannot read env file ${path}: ${(e as Error).message}`, { exitCode: 1 });
  }
  return text
    .split('\n')
    .map((l) => l.replace(/\r$/, '').trimStart())
    .filter((l) => l !== '' && !l.startsWith('#'))
    .flatMap((l) => envEntry(l, hostEnv) ?? []);
}

async function parseVolume(spec: string, cwd: string): Promise<StepMount> {
  const parts = spec.split(':');
  const [host, target, mode = 'rw'] = parts;
  if (parts.length < 2 || parts.length > 3 || !host || !target || (mode !== 'ro' && mode !== 'rw')) {
    throw new TsbuildError('USAGE', `invalid volume ${JSON.stringify(spec)}: want HOST:CONTAINER[:ro|rw]`);
  }
  if (!isAbsolute(target)) throw new TsbuildError('USAGE', `invalid volume ${JSON.stringify(spec)}: the container path must be absolute`);
  const source = resolve(cwd, host);
  if (!(await stat(source).catch(() => undefined))) {
    throw new TsbuildError('USAGE', `invalid volume ${JSON.stringify(spec)}: ${source} does not exist`, { exitCode: 1 });
  }
  return { type: 'bind', source, target, readonly: mode === 'ro' };
}

export { splitRunArgs } from './run-args.js';

export const runCommand = defineCommand({
  builder: (y) =>
    y
      // The words of the command arrive after `--` (splitRunArgs): kept as written ("007" stays).
      .parserConfiguration({ 'boolean-negation': false, 'parse-positional-numbers': false })
      .positional('image', { type: 'string', demandOption: true, describe: 'Image name or ID' })
      .positional('command', { type: 'string', array: true, describe: 'Command and arguments (replace the image CMD)' })
      .option('rm', { type: 'boolean', default: false, describe: 'Accepted for docker compatibility: the overlay is always removed' })
      .option('env', { alias: 'e', type: 'string', describe: 'KEY=VALUE (or KEY, from the host), repeatable' })
      .option('env-file', { type: 'string', describe: 'File of KEY=VALUE lines, repeatable' })
      .option('workdir', { alias: 'w', type: 'string', describe: 'Working directory inside the container' })
      .option('user', { alias: 'u', type: 'string', describe: 'USER[:GROUP] or UID[:GID]' })
      .option('entrypoint', { type: 'string', describe: "Replace the image's ENTRYPOINT (also drops its CMD); '' clears it" })
      .option('volume', { alias: 'v', type: 'string', describe: 'HOST:CONTAINER[:ro] bind mount, repeatable' })
      .option('network', { choices: ['host', 'none'] as const, default: 'host' as const, describe: 'Network namespace' })
      .option('interactive', { alias: 'i', type: 'boolean', default: false, describe: 'Pass stdin to the command' })
      .option('tty', { alias: 't', type: 'boolean', default: false, describe: 'Give the command a pseudo-terminal (with -i, stdin must be a terminal)' })
      .option('read-only', { type: 'boolean', default: false, describe: 'Mount the root file system read-only' })
      .option('platform', { type: 'string', describe: "The image of this platform from a multi-platform image (os/arch[/variant]); a foreign one runs under qemu-user" }),
  run: async (args, ctx) => {
    const signal = ctx.io.signal;
    const io = ctx.io;
    // docker's check: -it shares our terminal with the command, so there must be one.
    if (args.tty && args.interactive && (io.stdin as { isTTY?: boolean }).isTTY !== true) {
      throw new TsbuildError('USAGE', 'the input device is not a TTY', { hint: 'drop -t, or run from a terminal', exitCode: 1 });
    }
    const store = await ctx.store();
    const imageForPlatform = async (ref: string, text: string) => {
      let want;
      try {
        want = parsePlatform(text);
      } catch (e) {
        throw e instanceof TsbuildError ? new TsbuildError('USAGE', `--platform: ${e.message}`, { ...(e.hint !== undefined ? { hint: e.hint } : {}) }) : e;
      }
      const found = await getLocalImage(store, ref, { platform: want, signal });
      const c = found.config;
      const have = { os: c.os, architecture: c.architecture, ...(c.variant ? { variant: c.variant } : {}) };
      if (!platformMatches(want, have)) {
        throw new TsbuildError('PLATFORM_UNAVAILABLE', `image ${ref} is for ${formatPlatform(have)}, not ${formatPlatform(want)}`, { hint: 'name a multi-platform image that has that platform, or leave --platform out' });
      }
      return found;
    };
    const image = args.platform !== undefined ? await imageForPlatform(args.image, args.platform) : (await resolveImageArg(store, args.image, { signal })).image;
    const cfg = image.config.config ?? {};

    const entrypoint = args.entrypoint !== undefined ? (args.entrypoint === '' ? [] : [args.entrypoint]) : [...(cfg.Entrypoint ?? [])];
    // splitRunArgs put the command after `--`, where yargs leaves the words in `_` after `run`.
    const command = [...(args.command ?? []), ...args._.slice(1)].map(String);
    const cmd = command.length > 0 ? command : args.entrypoint !== undefined ? [] : [...(cfg.Cmd ?? [])];
    const argv = [...entrypoint, ...cmd];
    if (argv.length === 0) throw new TsbuildError('USAGE', `no command specified: image ${args.image} has no ENTRYPOINT or CMD`, { hint: 'give one after the image name', exitCode: 1 });

    const mounts: StepMount[] = [];
    for (const v of repeatable(args.volume)) mounts.push(await parseVolume(v, io.cwd));
    const fileEnv: string[] = [];
    for (const f of repeatable(args['env-file'])) fileEnv.push(...(await readEnvFile(resolve(io.cwd, f), io.env)));
    const flagEnv = repeatable(args.env).flatMap((e) => envEntry(e, io.env) ?? []);

    return runImage(
      {
        image,
        name: args.image,
        args: argv,
        env: [...fileEnv, ...flagEnv],
        workdir: args.workdir,
        user: args.user,
        mounts,
        network: args.network,
        ...(args.interactive ? { stdin: io.stdin } : {}),
        tty: args.tty,
        readonlyRoot: args['read-only'],
        stdout: (c) => io.stdout.write(c),
        stderr: (c) => io.stderr.write(c),
        forwardSignals: io.signals,
      },
      { store, signal, warn: (m) => io.stderr.write(`warning: ${m}\n`), toolPath: io.env.PATH, binfmtDir: io.env.TSBUILD_BINFMT_MISC },
    );
  },
});
