import fsp from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { imageStateKey } from '../cache/index.js';
import { TsbuildError } from '../errors.js';
import { lazyLayerIndex } from '../image/index.js';
import type { LocalImage } from '../image/index.js';
import { normalize } from '../image/index.js';
import { resolveUser } from '../image/index.js';
import { defaultTargetPlatform, formatPlatform, hostPlatform } from '../oci/index.js';
import { imagePlatform } from './base-image.js';
import type { SignalSource, StepMount } from '../sandbox/index.js';
import type { Store } from '../store/index.js';
import { imageFileReader } from './copy-step.js';
import { BuildSession } from './session.js';
import { viewOf, type StageState } from './stage-state.js';

const DEFAULT_PATH = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** `tsbuild run`: what to run in which image, and how. */
export interface RunImageRequest {
  readonly image: LocalImage;
  /** The image as the user named it, for messages. */
  readonly name: string;
  /** The command, ENTRYPOINT and CMD already applied. */
  readonly args: readonly string[];
  /** KEY=VALUE entries over the image's Env (--env-file, then -e: later ones win). */
  readonly env: readonly string[];
  /** -w: the working directory (default: the image's WorkingDir, else /). */
  readonly workdir?: string | undefined;
  /** -u: USER[:GROUP] or UID[:GID] (default: the image's User). */
  readonly user?: string | undefined;
  readonly mounts: readonly StepMount[];
  readonly network: 'host' | 'none';
  readonly stdin?: Readable | undefined;
  readonly tty?: boolean;
  readonly readonlyRoot?: boolean;
  readonly stdout: (chunk: Buffer) => void;
  readonly stderr: (chunk: Buffer) => void;
  /** Signals tsbuild receives that go to the process (docker's sig-proxy). */
  readonly forwardSignals?: SignalSource | undefined;
}

export interface RunImageEnv {
  readonly store: Store;
  readonly signal: AbortSignal;
  readonly warn: (message: string) => void;
  /** The caller's PATH, where host tools are looked up. */
  readonly toolPath?: string | undefined;
  /** Where binfmt_misc is read (default /proc/sys/fs/binfmt_misc): a foreign image runs emulated. */
  readonly binfmtDir?: string | undefined;
}

/**
 * Runs a command in an image as a RUN step runs (the same sandbox, snapshotter, host
 * filesystem capability and user resolution), on a throwaway upper dir. The image and its
 * layers are held for the run: rmi refuses the image, as docker does for a container's.
 * Resolves with the process's exit code.
 */
export async function runImage(req: RunImageRequest, env: RunImageEnv): Promise<number> {
  // An image of another CPU runs through qemu-user (binfmt_misc); without it, say what to install.
  const platform = imagePlatform(req.image);
  const { platformSupport } = await import('../sandbox/index.js');
  const support = await platformSupport(platform, { binfmtDir: env.binfmtDir });
  if (!support.ok) {
    throw new TsbuildError('EMULATOR_MISSING', `image ${req.name} is for ${formatPlatform(platform)}, which cannot run on this ${formatPlatform(defaultTargetPlatform())} host: ${support.reason ?? 'no emulator'}`, {
      ...(support.hint !== undefined ? { hint: support.hint } : {}),
    });
  }
  const session = new BuildSession({
    store: env.store,
    signal: env.signal,
    platform: hostPlatform(),
    toolPath: env.toolPath,
    report: (e) => {
      if (e.type === 'warning') env.warn(e.message);
    },
  });
  try {
    const { runner, snapshotter } = await session.sandbox();
    if (snapshotter.kind !== 'overlay') {
      throw new TsbuildError('SANDBOX_UNAVAILABLE', 'tsbuild run needs overlay snapshots on this host, which are unavailable', { hint: 'install attr (getfattr) and use a kernel with overlayfs' });
    }
    const image = req.image;
    if (image.manifest.layers.length === 0) throw new TsbuildError('UNSUPPORTED', `image ${req.name} has no layers: nothing to run`);
    const layers = image.manifest.layers.map((l) => ({ diffId: l.digest, size: l.size }));
    await session.holdLayers(layers, `image ${req.name}`, false);
    await session.holdImage(image.manifestDescriptor);
    const indexes = layers.map((l) => lazyLayerIndex(env.store, l.diffId, { signal: env.signal }));
    const state: StageState = { config: image.config, layers, indexes, key: imageStateKey(image.manifestDescriptor.digest), cmdSet: false };
    const cfg = image.config.config ?? {};
    const user = await resolveUser(req.user ?? cfg.User, imageFileReader(session, state)).catch((e: unknown) => {
      throw e instanceof TsbuildError ? new TsbuildError('USAGE', e.message, { exitCode: 1 }) : e;
    });
    const cwd = req.workdir ?? (cfg.WorkingDir || '/');
    if (!path.isAbsolute(cwd)) throw new TsbuildError('USAGE', `the working directory ${JSON.stringify(cwd)} is not absolute`);
    const processEnv = mergeEnv([DEFAULT_PATH, 'HOSTNAME=tsbuild', `HOME=${user.home}`], cfg.Env ?? [], req.env);

    const snapshot = await snapshotter.prepare(state, { runner: runner.kind, mountPoints: [], mounts: req.mounts, signal: env.signal });
    try {
      // docker creates a missing working directory; a RUN step's WORKDIR always exists.
      if (!(await viewOf(state)).resolve(normalize(cwd)).entry && 'upperDir' in snapshot.rootfs) {
        await fsp.mkdir(path.join(snapshot.rootfs.upperDir, cwd), { recursive: true, mode: 0o755 });
      }
      const result = await runner.run(
        {
          rootfs: snapshot.rootfs,
          args: req.args,
          env: processEnv,
          cwd,
          user: { uid: user.uid, gid: user.gid },
          network: req.network,
          mounts: req.mounts,
          ...(req.stdin ? { stdin: req.stdin } : {}),
          ...(req.tty ? { tty: true } : {}),
          ...(req.readonlyRoot ? { readonlyRoot: true } : {}),
          stdout: req.stdout,
          stderr: req.stderr,
        },
        { signal: env.signal, forwardSignals: req.forwardSignals },
      );
      return result.exitCode;
    } finally {
      await snapshot.discard();
    }
  } finally {
    await session.close();
  }
}

/** Later entries win, in first-seen order (image Env < --env-file < -e). */
function mergeEnv(...lists: ReadonlyArray<readonly string[]>): string[] {
  const m = new Map<string, string>();
  for (const list of lists) for (const kv of list) m.set(kv.slice(0, kv.indexOf('=') < 0 ? kv.length : kv.indexOf('=')), kv);
  return [...m.values()];
}
