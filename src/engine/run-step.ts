import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { TsbuildError } from '../errors.js';
import { cacheKeyFor } from '../cache/index.js';
import { rememberLayerIndex } from '../image/layer-index-cache.js';
import { parseIdFile } from '../image/users.js';
import type { StoredLayer } from '../image/index.js';
import type { LayerIndex } from '../layer/layer-index.js';
import type { LayerEntry } from '../layer/index.js';
import type { Digest } from '../oci/index.js';
import type { RunStep } from '../plan/index.js';
import type { ChangeEntry, Runner, RunSpec, SandboxCapabilities, Snapshotter, StatIndex } from '../sandbox/index.js';
import type { CopyRootfs } from './copy-snapshots.js';
import { imageFileReader, type StepEnv } from './copy-step.js';
import { lookupStep, recordStep, withLayer, withoutLayer } from './step-cache.js';
import type { NamespaceEntry } from './rootless.js';
import { prepareMounts, type MountEnv, type PreparedMounts } from './run-mounts.js';
import { checkRunSecurity, runResourcesKey, runSpecResources } from './run-resources.js';
import type { StageState } from './stage-state.js';
import { writeLayerToStore } from './store-layer.js';

/** What RUN steps run with: probed and selected once per build. */
export interface BuildSandbox {
  readonly runner: Runner;
  readonly capabilities: SandboxCapabilities;
  /** overlay: upper dir = change; copy: the tree is written in place and walked (copy-snapshots.ts). */
  readonly snapshots: 'overlay' | 'copy';
}

export interface RunEnv extends StepEnv {
  readonly mountEnv: MountEnv;
  /** Sandbox runner and capabilities, probed once per build. */
  sandbox(): Promise<BuildSandbox>;
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
  snapshotter?: Snapshotter | undefined;
  /** The caller's PATH, where host tools (bwrap, runc, ...) are looked up. */
  path?: string | undefined;
}): () => Promise<BuildSandbox> {
  let p: Promise<BuildSandbox> | undefined;
  return () =>
    (p ??= (async () => {
      const { probeSandbox, selectRunner } = await import('../sandbox/index.js');
      const capabilities = await probeSandbox({ signal: opts.signal, path: opts.path });
      const sel = selectRunner({
        capabilities,
        isolation: opts.isolation ?? 'auto',
        warn: opts.warn,
        ...(opts.runtime ? { runtime: opts.runtime } : {}),
        ...(opts.tmpDir ? { tmpDir: opts.tmpDir } : {}),
        ...(opts.snapshotter ? { snapshotter: opts.snapshotter } : {}),
      });
      return { runner: sel.runner, capabilities, snapshots: sel.snapshots };
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
  checkRunSecurity(step.security, env.mountEnv.runResources?.allow, step.location);
  const prepared = await prepareMounts(step.mounts, { ...env.mountEnv, chownInContainer: (dir, uid, gid) => chownInContainer(env, dir, uid, gid) }, step.location);
  try {
    return await runWithMounts(step, state, env, prepared);
  } finally {
    prepared.release();
  }
}

/** chown inside the build's user namespace, where the container's IDs exist (rootless cache mounts). */
async function chownInContainer(env: RunEnv, dir: string, uid: number, gid: number): Promise<void> {
  const { capabilities } = await env.sandbox();
  const { runInUserNamespace } = await import('../sandbox/index.js');
  const err: Buffer[] = [];
  const r = await runInUserNamespace('chown', [`${uid}:${gid}`, '--', dir], { capabilities, signal: env.signal, stderr: (c) => err.push(c) });
  if (r.exitCode !== 0) {
    throw new TsbuildError('SANDBOX_FAILED', `cannot give the cache mount ${dir} to ${uid}:${gid}: ${Buffer.concat(err).toString('utf8').trim()}`, {
      hint: 'the IDs must be inside the subordinate range of /etc/subuid and /etc/subgid',
    });
  }
}

async function runWithMounts(step: RunStep, state: StageState, env: RunEnv, prepared: PreparedMounts): Promise<{ state: StageState; cached: boolean }> {
  const key = cacheKeyFor({
    parent: state.key,
    kind: 'RUN',
    instruction: step.keyText,
    visible: step.visible,
    inputs: [...(env.sourceDateEpoch === undefined ? [] : [`epoch:${env.sourceDateEpoch}`]), ...prepared.keyInputs, ...runResourcesKey(env.mountEnv.runResources)],
    platform: env.platform,
  });
  const history = step.history ?? `RUN ${step.args.join(' ')}`;
  const hist = { createdBy: history, created: env.created };
  // A step that changed nothing adds no layer, as BuildKit's exporter drops empty layers.
  const hit = await lookupStep(env.store, key, { noCache: env.noCache, signal: env.signal, claim: env.claim });
  if (hit?.kind === 'empty') return { state: withoutLayer(state, key, hist), cached: true };
  if (hit?.kind === 'layer') return { state: withLayer(state, key, hit.layer, hit.index, hist), cached: true };

  const sandbox = await env.sandbox();
  const { runner, capabilities } = sandbox;
  // Loaded here, not at start-up: a fully cached build never executes a step.
  const [
    { DEFAULT_MOUNT_POINTS, captureUpperDir, diffCopyRootfs, makeMountPoints, removeMountPoints, userNamespaceRemoveTree, pruneMountPoints, provisionChroot, unprovisionChroot },
    { lowerDirsFor },
    { writeLayerInNamespace },
    { claimRootfs, keepRootfs },
  ] = await Promise.all([import('../sandbox/index.js'), import('./snapshots.js'), import('./rootless.js'), import('./copy-snapshots.js')]);
  const user = await resolveUser(state.config.config?.User, imageFileReader(env, state)).catch((e: unknown) => {
    throw e instanceof TsbuildError ? new TsbuildError(e.code, e.message, { location: step.location }) : e;
  });
  const rootless = capabilities.isRoot ? undefined : capabilities;
  const removeTree = rootless ? userNamespaceRemoveTree(rootless) : (p: string) => env.store.removeTree(p);
  const tail: string[] = [];
  const collect = (stream: 'stdout' | 'stderr') => (chunk: Buffer) => {
    const text = chunk.toString('utf8');
    env.onOutput(stream, text);
    tail.push(...text.split('\n').filter((l) => l !== ''));
    if (tail.length > TAIL_LINES) tail.splice(0, tail.length - TAIL_LINES);
  };
  const mountPoints = [...DEFAULT_MOUNT_POINTS, ...prepared.targets];
  const execute = async (rootfs: RunSpec['rootfs']): Promise<void> => {
    const result = await runner.run(
      {
        rootfs,
        args: step.args,
        // SSH_AUTH_SOCK from an ssh mount only when the stage did not set its own (BuildKit).
        env: [...step.env, ...prepared.env.filter((e) => !(e.startsWith('SSH_AUTH_SOCK=') && step.env.some((v) => v.startsWith('SSH_AUTH_SOCK='))))],
        mounts: prepared.mounts,
        cwd: state.config.config?.WorkingDir || '/',
        user,
        network: step.network === 'none' ? 'none' : 'host',
        ...runSpecResources(env.mountEnv.runResources, step.security),
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
  };
  /** The change as a layer in the store; undefined when the step changed nothing. */
  const storeChanges = async (changes: readonly ChangeEntry[]): Promise<{ layer: { diffId: Digest; size: number }; index: LayerIndex } | undefined> => {
    const { entries, index, sources } = toLayer(changes);
    if (entries.length === 0) return undefined;
    let stored: StoredLayer;
    if (rootless) {
      stored = await writeLayerInNamespace(rootless, env.store, entries.map(({ source: _s, ...e }, i) => ({ ...e, type: e.type as NamespaceEntry['type'], ...(sources[i] ? { sourcePath: sources[i] } : {}) })), env.sourceDateEpoch, env.signal);
    } else {
      stored = await writeLayerToStore(env.store, entries, { sourceDateEpoch: env.sourceDateEpoch, signal: env.signal, what: 'RUN layer' });
    }
    await rememberLayerIndex(env.store, stored.diffId, index);
    return { layer: stored, index };
  };
  const finish = async (made: { layer: { diffId: Digest; size: number }; index: LayerIndex } | undefined): Promise<{ state: StageState; cached: boolean }> => {
    if (!made) {
      await recordStep(env.store, key, 'empty');
      return { state: withoutLayer(state, key, hist), cached: false };
    }
    await recordStep(env.store, key, made.layer);
    return { state: withLayer(state, key, made.layer, made.index, hist), cached: false };
  };

  if (sandbox.snapshots === 'copy') {
    // Copy-and-walk: the step writes the stage's tree in place; the walk finds the change.
    const chain = state.layers.map((l) => l.diffId);
    const tree: CopyRootfs = await claimRootfs(env.store, chain, { capabilities, signal: env.signal });
    let kept = false;
    let chrootTouched = new Set<string>();
    try {
      const copyOpts = { capabilities, signal: env.signal };
      // Mount points made here, not by the runtime, so their parents' mtimes can be put back.
      const namespaced = runner.kind === 'bwrap' || runner.kind === 'runc'; // chroot and none mount nothing
      const made = await makeMountPoints(tree.root, namespaced ? await mountPointKinds(mountPoints, prepared) : [], copyOpts);
      // chroot (and none as root) cannot mount: /dev's devices and the resolver files are
      // made in the tree for the step instead, and taken out again before the diff.
      const chrooted = !namespaced && capabilities.isRoot ? await provisionChroot(tree.root, { signal: env.signal }) : undefined;
      try {
        await execute({ dir: tree.root });
      } finally {
        if (chrooted) chrootTouched = await unprovisionChroot(tree.root, chrooted, tree.index);
      }
      const touched = new Set([...(await removeMountPoints(tree.root, made, tree.index, copyOpts)), ...chrootTouched]);
      const { changes, after } = await diffCopyRootfs(tree.root, tree.index, { ...copyOpts, mountPoints, ignoreCtime: touched });
      const layer = await storeChanges(changes);
      await keepRootfs(env.store, tree, after as StatIndex, layer ? [...chain, layer.layer.diffId] : chain, env.signal);
      kept = true;
      return await finish(layer);
    } finally {
      // A failed or cancelled step leaves a half-written tree: it goes.
      if (!kept) await removeTree(tree.container).catch(() => undefined);
    }
  }

  const lowerDirs = await lowerDirsFor(env.store, state.layers, state.indexes, env.signal, rootless);
  const upperDir = await env.store.makeTempDir('upper');
  const workDir = await env.store.makeTempDir('work');
  let committed = false;
  try {
    await execute({ lowerDirs, upperDir, workDir });
    const captureOpts = { capabilities, lowerDirs, mountPoints, ...(env.signal ? { signal: env.signal } : {}) };
    const changes: ChangeEntry[] = [];
    for await (const c of captureUpperDir(upperDir, captureOpts)) changes.push(c);
    const made = await storeChanges(changes);
    if (made) {
      // The upper dir is the next steps' lower dir: keep it as this layer's snapshot.
      await pruneMountPoints(upperDir, captureOpts);
      await env.store.commitSnapshot(upperDir, made.layer.diffId, { signal: env.signal });
      committed = true;
    }
    return await finish(made);
  } finally {
    if (!committed) await removeTree(upperDir).catch(() => undefined);
    await removeTree(workDir).catch(() => undefined);
  }
}

/** Which mount points are files (the resolver files, a bind of a file) and which directories. */
async function mountPointKinds(targets: readonly string[], prepared: PreparedMounts): Promise<Array<{ path: string; dir: boolean }>> {
  const files = new Set(['/etc/resolv.conf', '/etc/hosts']);
  const out: Array<{ path: string; dir: boolean }> = [];
  for (const t of targets) {
    if (t === '/etc/hostname') continue; // never mounted by our runners
    const m = prepared.mounts.find((x) => x.target === t);
    const dir = m?.source ? await stat(m.source).then((s) => s.isDirectory(), () => true) : !files.has(t);
    // The resolver files are bound only where the host has them (bwrap's --ro-bind-try).
    if (files.has(t) && !m && !(await stat(t).then(() => true, () => false))) continue;
    out.push({ path: t, dir });
  }
  return out;
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
        entries.push({ ...meta, type: 'file', size: c.size, source: () => createReadStream(src), ...(c.xattrs ? { xattrs: c.xattrs } : {}) });
        sources[entries.length - 1] = src;
        index.entries.push({ ...meta, type: 'file', size: c.size });
      }
    } else if (c.special) {
      // A fifo or device node the step made (mkfifo, mknod as root); sockets have no tar form.
      entries.push({ ...meta, type: c.special.type, devmajor: c.special.devmajor, devminor: c.special.devminor });
      index.entries.push({ ...meta, type: 'other', size: 0 });
    }
  }
  return { entries, index, sources };
}

