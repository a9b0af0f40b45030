import { TsbuildError, withLocation } from '../errors.js';
import { knownLayerIndex, rememberLayerIndex } from '../image/index.js';
import { resolveUser } from '../image/index.js';
import type { IndexedEntry, LayerIndex } from '../layer/layer-index.js';
import type { RunStep } from '../plan/index.js';
import type { ChangeEntry, HostLayerEntry } from '../snapshot/index.js';
import { imageFileReader } from './copy-step.js';
import { prepareMounts } from './run-mounts.js';
import { checkRunSecurity, runSpecResources } from './run-resources.js';
import type { LayerChange, MadeLayer, StepModule } from './step.js';

/** Lines of a failed step's output that its error quotes. */
const TAIL_LINES = 12;

/**
 * RUN: keyed on the plan's key text, the values the step can see and what its mounts expose;
 * on a miss the command runs in the sandbox on a snapshot of the state's layers, and the
 * change becomes the layer (and, kept, the next step's snapshot).
 */
export const runStep: StepModule<RunStep> = {
  async prepare(given, ctx): Promise<LayerChange> {
    const { session, inputs, state } = ctx;
    checkRunSecurity(given.security, inputs.runResources?.allow, given.location);
    // RUN --network=default means the build's default (BuildKit's NetworkDefault), like no flag.
    const usesDefault = given.network === undefined || given.network === 'default';
    const step = usesDefault && inputs.defaultNetwork === 'none' ? { ...given, network: 'none' as const } : given;
    const prepared = await prepareMounts(step.mounts, session, inputs, step.location);
    return {
      kind: 'layer',
      keyInputs: {
        parent: state.key,
        kind: 'RUN',
        instruction: step.keyText,
        visible: step.visible,
        epoch: inputs.sourceDateEpoch,
        mounts: prepared.keyInputs,
        resources: inputs.runResources,
        platform: ctx.platformText,
      },
      history: step.history ?? `RUN ${step.args.join(' ')}`,
      release: () => prepared.release(),
      async execute() {
        // Loaded here, not at start-up: a fully cached build never executes a step.
        const { runner, snapshotter, hostFs } = await session.sandbox();
        // Bind mounts of a stage's or an image's files: unpacked now, not for a cached step.
        await prepared.resolve();
        const user = await withLocation(step.location, () => resolveUser(state.config.config?.User, imageFileReader(session, state)));
        const tail: string[] = [];
        const collect = (stream: 'stdout' | 'stderr') => (chunk: Buffer) => {
          const text = chunk.toString('utf8');
          ctx.onOutput(stream, text);
          tail.push(...text.split('\n').filter((l) => l !== ''));
          if (tail.length > TAIL_LINES) tail.splice(0, tail.length - TAIL_LINES);
        };
        const snapshot = await snapshotter.prepare(state, { runner: runner.kind, mountPoints: prepared.targets, mounts: prepared.mounts, signal: session.signal });
        try {
          const result = await runner.run(
            {
              rootfs: snapshot.rootfs,
              args: step.args,
              // SSH_AUTH_SOCK from an ssh mount only when the stage did not set its own (BuildKit).
              env: [...step.env, ...prepared.env.filter((e) => !(e.startsWith('SSH_AUTH_SOCK=') && step.env.some((v) => v.startsWith('SSH_AUTH_SOCK='))))],
              mounts: prepared.mounts,
              cwd: state.config.config?.WorkingDir || '/',
              user: { uid: user.uid, gid: user.gid },
              network: step.network === 'none' ? 'none' : 'host',
              ...runSpecResources(inputs.runResources, step.security),
              // What the step writes counts once it is in its layer, which the store syncs.
              suppressSync: session.suppressSync,
              stdout: collect('stdout'),
              stderr: collect('stderr'),
            },
            { signal: session.signal },
          );
          if (result.exitCode !== 0) {
            throw new TsbuildError(
              'BUILD_STEP_FAILED',
              `RUN ${step.args.at(-1) ?? ''} exited with code ${result.exitCode}${result.signal ? ` (${result.signal})` : ''}${tail.length > 0 ? `; its last output:\n  ${tail.join('\n  ')}` : ''}`,
              { location: step.location },
            );
          }
          // In a function of its own: the entries are garbage once written, before commit.
          const writeRunLayer = async (): Promise<MadeLayer | undefined> => {
            const { entries, index } = await toLayer(await snapshot.capture());
            if (entries.length === 0) return undefined;
            const layer = await hostFs.writeLayer(session.store, entries, { sourceDateEpoch: inputs.sourceDateEpoch, signal: session.signal });
            await rememberLayerIndex(session.store, layer.diffId, index);
            return { layer, index: knownLayerIndex(index) };
          };
          const made = await writeRunLayer();
          await snapshot.commit(made?.layer.diffId);
          return { made };
        } finally {
          await snapshot.discard();
        }
      },
    };
  },
};

/**
 * Change entries of the upper dir -> layer entries (hard links within the layer kept) and its
 * index. Each object is one literal with its fields always in the same order, never a spread of
 * another: objects made by spreading got a hidden class of their own in V8, about 330 bytes of
 * shape per object, 50 MB for the 150,000 objects of a RUN that writes 50,000 files.
 */
async function toLayer(changes: Iterable<ChangeEntry> | AsyncIterable<ChangeEntry>): Promise<{ entries: HostLayerEntry[]; index: LayerIndex }> {
  const entries: HostLayerEntry[] = [];
  const index: { entries: LayerIndex['entries'][number][]; whiteouts: string[]; opaqueDirs: string[] } = { entries: [], whiteouts: [], opaqueDirs: [] };
  const inodes = new Map<number, string>();
  const entry = (c: { readonly path: string; readonly mode: number; readonly uid: number; readonly gid: number }, mtime: number, type: HostLayerEntry['type'], more: { size?: number; linkTarget?: string; sourcePath?: string; devmajor?: number; devminor?: number } = {}): HostLayerEntry => ({
    path: c.path,
    type,
    mode: c.mode & 0o7777,
    uid: c.uid,
    gid: c.gid,
    mtime,
    size: more.size,
    linkTarget: more.linkTarget,
    sourcePath: more.sourcePath,
    devmajor: more.devmajor,
    devminor: more.devminor,
  });
  const indexed = (c: { readonly path: string; readonly mode: number; readonly uid: number; readonly gid: number }, mtime: number, type: IndexedEntry['type'], size: number, linkTarget?: string): IndexedEntry =>
    linkTarget === undefined
      ? { path: c.path, type, mode: c.mode & 0o7777, uid: c.uid, gid: c.gid, mtime, size }
      : { path: c.path, type, mode: c.mode & 0o7777, uid: c.uid, gid: c.gid, mtime, size, linkTarget };
  for await (const c of changes) {
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
    if (c.kind === 'dir') {
      entries.push(entry(c, mtime, 'dir'));
      index.entries.push(indexed(c, mtime, 'dir', 0));
    } else if (c.kind === 'symlink') {
      entries.push(entry(c, mtime, 'symlink', { linkTarget: c.linkTarget ?? '' }));
      index.entries.push(indexed(c, mtime, 'symlink', 0, c.linkTarget ?? ''));
    } else if (c.kind === 'file') {
      const first = c.nlink > 1 ? inodes.get(c.ino) : undefined;
      if (first !== undefined) {
        entries.push(entry(c, mtime, 'hardlink', { linkTarget: first }));
        index.entries.push(indexed(c, mtime, 'hardlink', 0, first));
      } else {
        if (c.nlink > 1) inodes.set(c.ino, c.path);
        const e = entry(c, mtime, 'file', { size: c.size, sourcePath: c.sourcePath });
        entries.push(c.xattrs ? { ...e, xattrs: c.xattrs } : e);
        index.entries.push(indexed(c, mtime, 'file', c.size));
      }
    } else if (c.special) {
      // A fifo or device node the step made (mkfifo, mknod as root); sockets have no tar form.
      entries.push(entry(c, mtime, c.special.type, { devmajor: c.special.devmajor, devminor: c.special.devminor }));
      index.entries.push(indexed(c, mtime, 'other', 0));
    }
  }
  return { entries, index };
}

