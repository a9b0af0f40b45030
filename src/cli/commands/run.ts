import { mkdir, readFile, stat } from 'node:fs/promises';
import { isAbsolute, join, resolve } from 'node:path';
import { leaseLayers, lowerDirsFor } from '../../engine/index.js';
import { TsbuildError } from '../../errors.js';
import { Lease } from '../../store/index.js';
import { layerIndexOf } from '../../image/layer-index-cache.js';
import { probeSandbox, selectRunner, userNamespaceRemoveTree, type StepMount, type StepUser } from '../../sandbox/index.js';
import { defineCommand, repeatable } from '../command.js';
import { resolveImageArg } from '../local-images.js';

const DEFAULT_PATH = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** A file of the image, read from its lower dirs top-down (whiteouts ignored: /etc/passwd and /etc/group only). */
async function readImageFile(lowerDirs: readonly string[], path: string): Promise<string | undefined> {
  for (const dir of [...lowerDirs].reverse()) {
    const text = await readFile(join(dir, path), 'utf8').catch(() => undefined);
    if (text !== undefined) return text;
  }
  return undefined;
}

function lookup(text: string | undefined, name: string, field: number): string[] | undefined {
  return text
    ?.split('\n')
    .map((l) => l.split(':'))
    .find((f) => f[field] === name);
}

/** `user`, `uid`, `user:group`, `uid:gid` as docker run -u (and USER) take them. */
async function resolveUser(spec: string, lowerDirs: readonly string[]): Promise<StepUser & { home: string }> {
  if (spec === '') return { uid: 0, gid: 0, home: '/root' };
  const [u = '', g] = spec.split(':');
  const passwd = await readImageFile(lowerDirs, 'etc/passwd');
  const entry = /^\d+$/.test(u) ? lookup(passwd, u, 2) : lookup(passwd, u, 0);
  if (!entry && !/^\d+$/.test(u)) {
    throw new TsbuildError('USAGE', `unable to find user ${u}: no matching entries in passwd file`, { exitCode: 1 });
  }
  const uid = Number(entry?.[2] ?? u);
  let gid = Number(entry?.[3] ?? 0);
  if (g !== undefined && g !== '') {
    if (/^\d+$/.test(g)) gid = Number(g);
    else {
      const grp = lookup(await readImageFile(lowerDirs, 'etc/group'), g, 0);
      if (!grp) throw new TsbuildError('USAGE', `unable to find group ${g}: no matching entries in group file`, { exitCode: 1 });
      gid = Number(grp[2]);
    }
  }
  return { uid, gid, home: entry?.[5] || '/' };
}

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

/** Later entries win, in first-seen order (image Env < --env-file < -e). */
function mergeEnv(...lists: ReadonlyArray<readonly string[]>): string[] {
  const m = new Map<string, string>();
  for (const list of lists) for (const kv of list) m.set(kv.slice(0, kv.indexOf('=') < 0 ? kv.length : kv.indexOf('=')), kv);
  return [...m.values()];
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
      .option('read-only', { type: 'boolean', default: false, describe: 'Mount the root file system read-only' }),
  run: async (args, ctx) => {
    const signal = ctx.io.signal;
    const io = ctx.io;
    // docker's check: -it shares our terminal with the command, so there must be one.
    if (args.tty && args.interactive && (io.stdin as { isTTY?: boolean }).isTTY !== true) {
      throw new TsbuildError('USAGE', 'the input device is not a TTY', { hint: 'drop -t, or run from a terminal', exitCode: 1 });
    }
    const store = await ctx.store();
    const { image } = await resolveImageArg(store, args.image, { signal });
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

    const capabilities = await probeSandbox({ signal });
    // As an ordinary user, as RUN steps do (engine/run-step.ts): layers unpacked and the
    // overlay's trees removed inside the user namespace of the subordinate ID range.
    const rootless = capabilities.isRoot ? undefined : capabilities;
    const removeTree = rootless ? userNamespaceRemoveTree(rootless) : (p: string) => store.removeTree(p);
    const sel = selectRunner({ capabilities, isolation: 'auto', warn: (m) => io.stderr.write(`warning: ${m}\n`) });
    if (sel.snapshots !== 'overlay') {
      throw new TsbuildError('SANDBOX_UNAVAILABLE', 'tsbuild run needs overlay snapshots on this host, which are unavailable', { hint: 'install attr (getfattr) and use a kernel with overlayfs' });
    }
    if (image.manifest.layers.length === 0) throw new TsbuildError('UNSUPPORTED', `image ${args.image} has no layers: nothing to run`);

    const layers = image.manifest.layers.map((l) => ({ diffId: l.digest, size: l.size }));
    // Held until the run ends: a concurrent rmi or prune keeps the layers and the snapshots
    // mounted as lower dirs (store/lease.ts).
    const lease = new Lease(store);
    try {
      await leaseLayers(lease, store, layers, `image ${args.image}`, signal);
      // The image itself too: rmi refuses an image a run is using (as docker does for a container's).
      await lease.hold({ roots: [image.manifestDescriptor] }, { signal });
      const indexes = await Promise.all(layers.map((l) => layerIndexOf(store, l.diffId, { signal })));
      const lowerDirs = await lowerDirsFor(store, layers, indexes, signal, rootless);
      const user = await resolveUser(args.user ?? cfg.User ?? '', lowerDirs);
      const cwd = args.workdir ?? (cfg.WorkingDir || '/');
      if (!isAbsolute(cwd)) throw new TsbuildError('USAGE', `the working directory ${JSON.stringify(cwd)} is not absolute`);

      const imageEnv = [...(cfg.Env ?? [])];
      const base = mergeEnv(
        [DEFAULT_PATH, `HOSTNAME=tsbuild`, `HOME=${user.home}`],
        imageEnv,
        fileEnv,
        flagEnv,
      );

      const upperDir = await store.makeTempDir('upper');
      const workDir = await store.makeTempDir('work');
      try {
        // docker creates a missing working directory; a RUN step's WORKDIR always exists.
        let exists = false;
        for (const d of lowerDirs) if (await stat(join(d, cwd)).catch(() => undefined)) exists = true;
        if (!exists) await mkdir(join(upperDir, cwd), { recursive: true, mode: 0o755 });

        const result = await sel.runner.run(
          {
            rootfs: { lowerDirs, upperDir, workDir },
            args: argv,
            env: base,
            cwd,
            user: { uid: user.uid, gid: user.gid },
            network: args.network,
            mounts,
            ...(args.interactive ? { stdin: io.stdin } : {}),
            ...(args.tty ? { tty: true } : {}),
            ...(args['read-only'] ? { readonlyRoot: true } : {}),
            stdout: (c) => io.stdout.write(c),
            stderr: (c) => io.stderr.write(c),
          },
          { signal, forwardSignals: io.signals },
        );
        return result.exitCode;
      } finally {
        await removeTree(upperDir).catch(() => undefined);
        await removeTree(workDir).catch(() => undefined);
      }
    } finally {
      await lease.release();
    }
  },
});
