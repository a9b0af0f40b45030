import { addHistory, knownLayerIndex, normalize, rememberLayerIndex, resolveFileOpUser, setWorkdir } from '../image/index.js';
import type { LayerIndex } from '../layer/layer-index.js';
import type { LayerEntry } from '../layer/index.js';
import type { WorkdirStep } from '../plan/index.js';
import { writeLayerToStore } from '../snapshot/index.js';
import { imageFileReader } from './copy-step.js';
import { lookInto, viewOf } from './stage-state.js';
import type { PreparedStep, StepModule } from './step.js';

/**
 * WORKDIR creates its directory (and missing parents) as a layer, as BuildKit's mkdir file
 * op does; when the directory already exists the step adds no layer (and is not looked up).
 * The directories it creates belong to the stage's USER (BuildKit's llb.WithUser on the
 * mkdir), resolved through the image's /etc/passwd and /etc/group; existing ones keep their
 * owner.
 * The layer is cached like any step: its mtime would otherwise make every rebuild a new
 * layer, and a new image.
 */
export const workdirStep: StepModule<WorkdirStep> = {
  async prepare(step, ctx): Promise<PreparedStep> {
    const { state, inputs, session } = ctx;
    const text = step.history ?? `WORKDIR ${step.path}`;
    const rel = normalize(step.path);
    const resolved = await lookInto(state, session.store, (view) => view.resolve(rel), session.signal);
    const user = state.config.config?.User || undefined;
    // The USER decides the owner of what is created: a visible value of the key (absent for
    // root-by-default, so those keys are what they were).
    const keyInputs = { parent: state.key, kind: 'WORKDIR', instruction: text, ...(user === undefined ? {} : { visible: { USER: user } }), epoch: inputs.sourceDateEpoch, platform: ctx.platformText } as const;
    const after = (s: typeof state) => ({ ...s, config: setWorkdir(s.config, step.path) });
    if (rel === '' || resolved.entry?.type === 'dir') {
      return { kind: 'config', keyInputs, apply: (s) => after({ ...s, config: addHistory(s.config, { createdBy: text, emptyLayer: true, created: inputs.created }) }) };
    }
    return {
      kind: 'layer',
      keyInputs,
      history: text,
      after,
      async execute() {
        const epoch = inputs.sourceDateEpoch;
        const mtime = epoch ?? Math.floor(Date.parse(inputs.created) / 1000);
        const owner = user === undefined ? { uid: 0, gid: 0 } : await resolveFileOpUser(user, imageFileReader(session, state));
        const view = await viewOf(state);
        const entries: LayerEntry[] = [];
        const parts = resolved.path.split('/');
        for (let i = 1; i <= parts.length; i++) {
          const p = parts.slice(0, i).join('/');
          const existing = view.lstat(p);
          if (existing?.type === 'dir') entries.push({ path: p, type: 'dir', mode: existing.mode, uid: existing.uid, gid: existing.gid, mtime: existing.mtime });
          else entries.push({ path: p, type: 'dir', mode: 0o755, uid: owner.uid, gid: owner.gid, mtime });
        }
        const layer = await writeLayerToStore(session.store, entries, { sourceDateEpoch: epoch, signal: session.signal });
        const index: LayerIndex = {
          entries: entries.map((e) => ({ path: e.path, type: 'dir' as const, mode: e.mode, uid: e.uid, gid: e.gid, mtime: e.mtime, size: 0 })),
          whiteouts: [],
          opaqueDirs: [],
        };
        await rememberLayerIndex(session.store, layer.diffId, index);
        return { made: { layer, index: knownLayerIndex(index) } };
      },
    };
  },
};
