import { addHistory, setWorkdir } from '../image/index.js';
import { rememberLayerIndex } from '../image/index.js';
import { normalize } from '../image/index.js';
import type { LayerIndex } from '../layer/layer-index.js';
import type { LayerEntry } from '../layer/index.js';
import type { WorkdirStep } from '../plan/index.js';
import { writeLayerToStore } from '../snapshot/index.js';
import { viewOf } from './stage-state.js';
import type { PreparedStep, StepModule } from './step.js';

/**
 * WORKDIR creates its directory (and missing parents) as a layer, as BuildKit's mkdir file
 * op does; when the directory already exists the step adds no layer (and is not looked up).
 * The layer is cached like any step: its mtime would otherwise make every rebuild a new
 * layer, and a new image.
 */
export const workdirStep: StepModule<WorkdirStep> = {
  async prepare(step, ctx): Promise<PreparedStep> {
    const { state, inputs, session } = ctx;
    const text = step.history ?? `WORKDIR ${step.path}`;
    const view = viewOf(state);
    const rel = normalize(step.path);
    const resolved = view.resolve(rel);
    const keyInputs = { parent: state.key, kind: 'WORKDIR', instruction: text, epoch: inputs.sourceDateEpoch, platform: session.platformText } as const;
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
        const entries: LayerEntry[] = [];
        const parts = resolved.path.split('/');
        for (let i = 1; i <= parts.length; i++) {
          const p = parts.slice(0, i).join('/');
          const existing = view.lstat(p);
          if (existing?.type === 'dir') entries.push({ path: p, type: 'dir', mode: existing.mode, uid: existing.uid, gid: existing.gid, mtime: existing.mtime });
          else entries.push({ path: p, type: 'dir', mode: 0o755, uid: 0, gid: 0, mtime });
        }
        const layer = await writeLayerToStore(session.store, entries, { sourceDateEpoch: epoch, signal: session.signal, what: 'WORKDIR layer' });
        const index: LayerIndex = {
          entries: entries.map((e) => ({ path: e.path, type: 'dir' as const, mode: e.mode, uid: e.uid, gid: e.gid, mtime: e.mtime, size: 0 })),
          whiteouts: [],
          opaqueDirs: [],
        };
        await rememberLayerIndex(session.store, layer.diffId, index);
        return { made: { layer, index } };
      },
    };
  },
};
