import { cacheKeyFor } from '../cache/index.js';
import { rememberLayerIndex } from '../image/layer-index-cache.js';
import { normalize } from '../image/rootfs-view.js';
import type { LayerIndex } from '../layer/layer-index.js';
import type { LayerEntry } from '../layer/index.js';
import type { StepEnv } from './copy-step.js';
import { viewOf, type StageState } from './stage-state.js';
import { lookupStep, recordStep, withLayer, withoutLayer } from './step-cache.js';
import { writeLayerToStore } from './store-layer.js';

/**
 * WORKDIR creates its directory (and missing parents) as a layer, as BuildKit's mkdir file
 * op does; when the directory already exists the step adds no layer.
 */
export async function runMkdir(dir: string, text: string, state: StageState, env: StepEnv): Promise<{ state: StageState; cached: boolean }> {
  const view = viewOf(state);
  const rel = normalize(dir);
  const resolved = view.resolve(rel);
  const key = cacheKeyFor({ parent: state.key, kind: 'WORKDIR', instruction: text, inputs: env.sourceDateEpoch === undefined ? [] : [`epoch:${env.sourceDateEpoch}`], platform: env.platform });
  if (rel === '' || resolved.entry?.type === 'dir') {
    return { state: withoutLayer(state, key, { createdBy: text, created: env.created }), cached: false };
  }
  // The directory's layer is cached like any step (its mtime would otherwise make every
  // rebuild a new layer, and a new image).
  const history = { createdBy: text, created: env.created };
  const hit = await lookupStep(env.store, key, { noCache: env.noCache, signal: env.signal, claim: env.claim });
  if (hit?.kind === 'layer') return { state: withLayer(state, key, hit.layer, hit.index, history), cached: true };
  const mtime = env.sourceDateEpoch ?? Math.floor(Date.parse(env.created) / 1000);
  const entries: LayerEntry[] = [];
  const parts = resolved.path.split('/');
  for (let i = 1; i <= parts.length; i++) {
    const p = parts.slice(0, i).join('/');
    const existing = view.lstat(p);
    if (existing?.type === 'dir') entries.push({ path: p, type: 'dir', mode: existing.mode, uid: existing.uid, gid: existing.gid, mtime: existing.mtime });
    else entries.push({ path: p, type: 'dir', mode: 0o755, uid: 0, gid: 0, mtime });
  }
  const stored = await writeLayerToStore(env.store, entries, { sourceDateEpoch: env.sourceDateEpoch, signal: env.signal, what: 'WORKDIR layer' });
  const index: LayerIndex = {
    entries: entries.map((e) => ({ path: e.path, type: 'dir' as const, mode: e.mode, uid: e.uid, gid: e.gid, mtime: e.mtime, size: 0 })),
    whiteouts: [],
    opaqueDirs: [],
  };
  await rememberLayerIndex(env.store, stored.diffId, index);
  await recordStep(env.store, key, stored);
  return { state: withLayer(state, key, stored, index, history), cached: false };
}
