import { cacheKeyFor } from '../cache/index.js';
import { rememberLayerIndex } from '../image/layer-index-cache.js';
import { normalize } from '../image/rootfs-view.js';
import type { LayerIndex } from '../layer/layer-index.js';
import type { LayerEntry } from '../layer/index.js';
import { imageFileReader, type StepEnv } from './copy-step.js';
import { resolveFileOpUser } from '../image/index.js';
import { viewOf, type StageState } from './stage-state.js';
import { lookupStep, recordStep, withLayer, withoutLayer } from './step-cache.js';
import { writeLayerToStore } from './store-layer.js';

/**
 * WORKDIR creates its directory (and missing parents) as a layer, as BuildKit's mkdir file
 * op does; when the directory already exists the step adds no layer. The directories it
 * creates belong to the stage's USER (`opts.user`, BuildKit's llb.WithUser on the mkdir),
 * resolved through the image's /etc/passwd and /etc/group; existing ones keep their owner.
 */
export async function runMkdir(dir: string, text: string, state: StageState, env: StepEnv, opts: { readonly user?: string | undefined } = {}): Promise<{ state: StageState; cached: boolean }> {
  const view = viewOf(state);
  const rel = normalize(dir);
  const resolved = view.resolve(rel);
  const user = opts.user === undefined || opts.user === '' ? undefined : opts.user;
  // The USER decides the owner of what is created: a named field of the key (absent for
  // root-by-default, so those keys are what they were).
  const key = cacheKeyFor({
    parent: state.key,
    kind: 'WORKDIR',
    instruction: text,
    ...(user === undefined ? {} : { visible: { USER: user } }),
    inputs: env.sourceDateEpoch === undefined ? [] : [`epoch:${env.sourceDateEpoch}`],
    platform: env.platform,
  });
  if (rel === '' || resolved.entry?.type === 'dir') {
    return { state: withoutLayer(state, key, { createdBy: text, created: env.created }), cached: false };
  }
  // The directory's layer is cached like any step (its mtime would otherwise make every
  // rebuild a new layer, and a new image).
  const history = { createdBy: text, created: env.created };
  const hit = await lookupStep(env.store, key, { noCache: env.noCache, signal: env.signal, claim: env.claim });
  if (hit?.kind === 'layer') return { state: withLayer(state, key, hit.layer, hit.index, history), cached: true };
  const mtime = env.sourceDateEpoch ?? Math.floor(Date.parse(env.created) / 1000);
  const owner = user === undefined ? { uid: 0, gid: 0 } : await resolveFileOpUser(user, imageFileReader(env, state));
  const entries: LayerEntry[] = [];
  const parts = resolved.path.split('/');
  for (let i = 1; i <= parts.length; i++) {
    const p = parts.slice(0, i).join('/');
    const existing = view.lstat(p);
    if (existing?.type === 'dir') entries.push({ path: p, type: 'dir', mode: existing.mode, uid: existing.uid, gid: existing.gid, mtime: existing.mtime });
    else entries.push({ path: p, type: 'dir', mode: 0o755, uid: owner.uid, gid: owner.gid, mtime });
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
