import { createReadStream } from 'node:fs';
import { PassThrough } from 'node:stream';
import { TsbuildError } from '../errors.js';
import { cacheKeyFor } from '../cache/index.js';
import { rememberLayerIndex } from '../image/layer-index-cache.js';
import { parseIdFile } from '../image/users.js';
import type { LayerIndex } from '../layer/layer-index.js';
import type { LayerEntry } from '../layer/index.js';
import type { Digest } from '../oci/index.js';
import type { RunStep } from '../plan/index.js';
import type { ChangeEntry, Runner, SandboxCapabilities } from '../sandbox/index.js';
import { imageFileReader, type StepEnv } from './copy-step.js';
import { lookupStep, recordStep, withLayer, withoutLayer } from './step-cache.js';
import type { NamespaceEntry } from './rootless.js';
import { prepareMounts, type MountEnv, type PreparedMounts } from './run-mounts.js';
import type { StageState } from './stage-state.js';

export interface RunEnv extends StepEnv {
  readonly mountEnv: MountEnv;
  /** Sandbox runner and capabilities, probed once per build. */
  sandbox(): Promise<{ runner: Runner; capabilities: SandboxCapabilities }>;
  /** Output of the running step (for progress). */
  readonly onOutput: (stream: 'stdout' | 'stderr', text: string) => void;
}

/** The sandbox of a build: probed lazily, so a COPY-only build never probes. */
export function lazySandbox(opts: {
  signal?: AbortSignal | undefined;
  warn: (m: string) => void;
  tmpDir?: string;
  runtime?: 'bwrap' | 'runc' | undefined;
  isolation?: 'auto' | 'sandbox' | 'chroot' | 'none' | undefined;
}): () => Promise<{ runner: Runner; capabilities: SandboxCapabilities }> {
  let p: Promise<{ runner: Runner; capabilities: SandboxCapabilities }> | undefined;
  return () =>
    (p ??= (async () => {
      const { probeSandbox, selectRunner } = await import('../sandbox/index.js');
      const capabilities = await probeSandbox({ signal: opts.signal });
      const sel = selectRunner({
        capabilities,
        isolation: opts.isolation ?? 'auto',
        warn: opts.warn,
        ...(opts.runtime ? { runtime: opts.runtime } : {}),
        ...(opts.tmpDir ? { tmpDir: opts.tmpDir } : {}),
      });
      if (sel.snapshots !== 'overlay') {
        // DEBT: the copy-and-walk snapshots of src/sandbox (chroot, none, no overlay) are not wired yet.
        throw new TsbuildError('SANDBOX_UNAVAILABLE', `RUN steps with isolation ${sel.isolation} need copy snapshots, which builds do not use yet`, {
          hint: 'use --isolation=sandbox on a host with overlayfs and getfattr (package attr)',
        });
      }
      return { runner: sel.runner, capabilities };
    })());
}

const TAIL_LINES = 12;

/** Resolves the config's USER ("name", "uid", "name:group", "uid:gid") through the image's files. */
async function resolveUser(user: string | undefined, readFile: (p: string) => Promise<string | undefined>): Promise<{ uid: number; gid: number }> {
  if (!user) return { uid: 0, gid: 0 };
  const [u = '', g] = user.split(':');
  const passwdText = await readFile('/etc/passwd');
  let uid: number;
  let gid = 0;
  if (/^\d+$/.test(u)) {
    uid = Number(u);
    const line = passwdText?.split('\n').find((l) => l.split(':')[2] === u);
    if (line) gid = Number(line.split(':')[3] ?? 0);
  } else {
    const line = passwdText?.split('\n').find((l) => l.split(':')[0] === u);
    if (!line) throw new TsbuildError('DOCKERFILE_INSTRUCTION', `unable to find user ${u}: no matching entries in passwd file`);
    uid = Number(line.split(':')[2]);
    gid = Number(line.split(':')[3]);
  }
  if (g !== undefined && g !== '') {
    if (/^\d+$/.test(g)) gid = Number(g);
    else {
      const id = parseIdFile((await readFile('/etc/group')) ?? '').get(g);
      if (id === undefined) throw new TsbuildError('DOCKERFILE_INSTRUCTION', `unable to find group ${g}: no matching entries in group file`);
      gid = id;
    }
  }
  return { uid, gid };
}

/**
 * A RUN step: cache lookup on the plan's key text and the values the step can see; on a
 * miss, the command runs in the sandbox on an overlay of the state's snapshots, the upper
 * directory becomes the layer (and the next snapshot).
 */
export async function runRun(step: RunStep, state: StageState, env: RunEnv): Promise<{ state: StageState; cached: boolean }> {
  if (step.security !== undefined && step.security !== 'sandbox') {
    throw new TsbuildError('UNSUPPORTED', `RUN --security=${step.security} is not supported`, { location: step.location });
  }
  const prepared = await prepareMounts(step.mounts, env.mountEnv, step.location);
  try {
    return await runWithMounts(step, state, env, prepared);
  } finally {
    prepared.release();
  }
}

async function runWithMounts(step: RunStep, state: StageState, env: RunEnv, prepared: PreparedMounts): Promise<{ state: StageState; cached: boolean }> {
  const key = cacheKeyFor({
    parent: state.key,
    kind: 'RUN',
    instruction: step.keyText,
    visible: step.visible,
    inputs: [...(env.sourceDateEpoch === undefined ? [] : [`epoch:${env.sourceDateEpoch}`]), ...prepared.keyInputs],
    platform: env.platform,
  });
  const history = step.history ?? `RUN ${step.args.join(' ')}`;
  const hist = { createdBy: history, created: env.created };
  // A step that changed nothing adds no layer, as BuildKit's exporter drops empty layers.
  const hit = await lookupStep(env.store, key, { noCache: env.noCache, signal: env.signal });
  if (hit?.kind === 'empty') return { state: withoutLayer(state, key, hist), cached: true };
  if (hit?.kind === 'layer') return { state: withLayer(state, key, hit.layer, hit.index, hist), cached: true };

  const { runner, capabilities } = await env.sandbox();
  // Loaded here, not at start-up: a fully cached build never executes a step.
  const [{ DEFAULT_MOUNT_POINTS, captureUpperDir, userNamespaceRemoveTree, pruneMountPoints }, { writeLayer }, { lowerDirsFor }, { writeLayerInNamespace }] = await Promise.all([
    import('../sandbox/index.js'),
    import('../layer/index.js'),
    import('./snapshots.js'),
    import('./rootless.js'),
  ]);
  const user = await resolveUser(state.config.config?.User, imageFileReader(env, state)).catch((e: unknown) => {
    throw e instanceof TsbuildError ? new TsbuildError(e.code, e.message, { location: step.location }) : e;
  });
  const rootless = capabilities.isRoot ? undefined : capabilities;
  const removeTree = rootless ? userNamespaceRemoveTree(rootless) : (p: string) => env.store.removeTree(p);
  const lowerDirs = await lowerDirsFor(env.store, state.layers, state.indexes, env.signal, rootless);
  const upperDir = await env.store.makeTempDir('upper');
  const workDir = await env.store.makeTempDir('work');
  const tail: string[] = [];
  const collect = (stream: 'stdout' | 'stderr') => (chunk: Buffer) => {
    const text = chunk.toString('utf8');
    env.onOutput(stream, text);
    tail.push(...text.split('\n').filter((l) => l !== ''));
    if (tail.length > TAIL_LINES) tail.splice(0, tail.length - TAIL_LINES);
  };
  let committed = false;
  try {
    const result = await runner.run(
      {
        rootfs: { lowerDirs, upperDir, workDir },
        args: step.args,
        env: [...step.env, ...prepared.env],
        mounts: prepared.mounts,
        cwd: state.config.config?.WorkingDir || '/',
        user,
        network: step.network === 'none' ? 'none' : 'host',
        stdout: collect('stdout'),
        stderr: collect('stderr'),
      },
      { signal: env.signal },
    );
    if (result.exitCode !== 0) {
      throw new TsbuildError(
        'BUILD_STEP_FAILED',
        `RUN ${step.args.at(-1) ?? ''} exited with code ${result.exitCode}${result.signal ? ` (${result.signal})` : ''}${tail.length > 0 ? `; its last output:\n  ${tail.join('\n  ')}` : ''}`,
        { location: step.location },
      );
    }
    const captureOpts = { capabilities, lowerDirs, mountPoints: [...DEFAULT_MOUNT_POINTS, ...prepared.targets], ...(env.signal ? { signal: env.signal } : {}) };
    const changes: ChangeEntry[] = [];
    for await (const c of captureUpperDir(upperDir, captureOpts)) changes.push(c);
    const { entries, index, sources } = toLayer(changes);
    if (entries.length === 0) {
      await recordStep(env.store, key, 'empty');
      return { state: withoutLayer(state, key, hist), cached: false };
    }
    let stored: { digest: Digest; size: number };
    if (rootless) {
      stored = await writeLayerInNamespace(rootless, env.store, entries.map(({ source: _s, ...e }, i) => ({ ...e, type: e.type as NamespaceEntry['type'], ...(sources[i] ? { sourcePath: sources[i] } : {}) })), env.sourceDateEpoch, env.signal);
    } else {
      const pass = new PassThrough();
      const put = env.store.blobs.putBlob(pass, { signal: env.signal });
      const written = await writeLayer(entries, pass, { ...(env.sourceDateEpoch !== undefined ? { sourceDateEpoch: env.sourceDateEpoch } : {}), ...(env.signal ? { signal: env.signal } : {}) }).catch(async (e: unknown) => {
        pass.destroy(e as Error);
        await put.catch(() => undefined);
        throw e;
      });
      stored = await put;
      if (stored.digest !== written.diffId) throw new TsbuildError('DIGEST_MISMATCH', `RUN layer ${stored.digest} differs from its diff ID ${written.diffId}`);
    }
    await rememberLayerIndex(env.store, stored.digest, index);
    // The upper dir is the next steps' lower dir: keep it as this layer's snapshot.
    await pruneMountPoints(upperDir, captureOpts);
    await env.store.commitSnapshot(upperDir, stored.digest, { signal: env.signal });
    committed = true;
    await recordStep(env.store, key, { diffId: stored.digest, size: stored.size });
    return { state: withLayer(state, key, { diffId: stored.digest, size: stored.size }, index, hist), cached: false };
  } finally {
    if (!committed) await removeTree(upperDir).catch(() => undefined);
    await removeTree(workDir).catch(() => undefined);
  }
}

/** Change entries of the upper dir -> layer entries (hard links within the layer kept) and its index. */
function toLayer(changes: readonly ChangeEntry[]): { entries: LayerEntry[]; index: LayerIndex; sources: Array<string | undefined> } {
  const entries: LayerEntry[] = [];
  const sources: Array<string | undefined> = [];
  const index: { entries: LayerIndex['entries'][number][]; whiteouts: string[]; opaqueDirs: string[] } = { entries: [], whiteouts: [], opaqueDirs: [] };
  const inodes = new Map<number, string>();
  for (const c of changes) {
    if (c.kind === 'whiteout') {
      entries.push({ path: c.path, type: 'whiteout', mode: 0, uid: 0, gid: 0, mtime: 0 });
      index.whiteouts.push(c.path);
      continue;
    }
    if (c.kind === 'opaque') {
      entries.push({ path: c.path, type: 'opaque', mode: 0, uid: 0, gid: 0, mtime: 0 });
      index.opaqueDirs.push(c.path);
      continue;
    }
    const mtime = Math.floor(c.mtimeMs / 1000);
    const meta = { path: c.path, mode: c.mode & 0o7777, uid: c.uid, gid: c.gid, mtime };
    if (c.kind === 'dir') {
      entries.push({ ...meta, type: 'dir' });
      index.entries.push({ ...meta, type: 'dir', size: 0 });
    } else if (c.kind === 'symlink') {
      entries.push({ ...meta, type: 'symlink', linkTarget: c.linkTarget ?? '' });
      index.entries.push({ ...meta, type: 'symlink', size: 0, linkTarget: c.linkTarget ?? '' });
    } else if (c.kind === 'file') {
      const first = c.nlink > 1 ? inodes.get(c.ino) : undefined;
      if (first !== undefined) {
        entries.push({ ...meta, type: 'hardlink', linkTarget: first });
        index.entries.push({ ...meta, type: 'hardlink', size: 0, linkTarget: first });
      } else {
        if (c.nlink > 1) inodes.set(c.ino, c.path);
        const src = c.sourcePath;
        entries.push({ ...meta, type: 'file', size: c.size, source: () => createReadStream(src) });
        sources[entries.length - 1] = src;
        index.entries.push({ ...meta, type: 'file', size: c.size });
      }
    }
    // 'other' (devices, fifos, sockets made by the step): DEBT, not written yet.
  }
  return { entries, index, sources };
}

