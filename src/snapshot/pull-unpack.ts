import { isAbortError } from '../errors.js';
import { defaultTargetPlatform, platformMatches, type Descriptor, type Digest, type ImageConfig } from '../oci/index.js';
import type { SnapshotMode } from '../sandbox/index.js';
import type { Store } from '../store/index.js';
// host-fs.ts and overlay-snapshotter.ts (the layer applier, the sandbox) load when a layer is
// unpacked: a build with RUN steps makes an unpacker before it knows whether it pulls anything.
import type { HostFilesystem } from './host-fs.js';

/** What unpacking at pull time reports, per layer (by the registry's digest of it). */
export interface PullUnpackProgress {
  readonly type: 'unpack';
  readonly digest: Digest;
  /**
   * `extracting`: its tree is being written; `unpacked`: its snapshot is in place (or already
   * was); `skipped`: stored and left packed (a build here would not use it, or another platform).
   */
  readonly status: 'extracting' | 'unpacked' | 'skipped';
}

export interface PullUnpackOptions {
  /** PATH for the sandbox probe (which decides whether builds here use overlay snapshots). */
  readonly toolPath?: string | undefined;
  /** TSBUILD_SNAPSHOTTER: `copy` means builds here never read overlay snapshots, so none is made. */
  readonly snapshotter?: SnapshotMode | undefined;
  readonly signal?: AbortSignal | undefined;
  readonly onProgress?: ((p: PullUnpackProgress) => void) | undefined;
  /**
   * The host filesystem to unpack with, or undefined to unpack nothing: a build passes the one
   * its own sandbox chose (its --isolation and --runtime). Default: what a default build here
   * would use (probed once per process).
   */
  readonly hostFs?: (() => Promise<HostFilesystem | undefined>) | undefined;
}

/** The image a pull is storing (registry/ PullOptions.onImageLayers gives it). */
export interface PullingImage {
  readonly name: string;
  readonly config: ImageConfig;
  readonly layers: readonly Descriptor[];
}

/**
 * Unpacks what a pull stores into the snapshots a build's RUN steps would otherwise make first
 * (overlay-snapshotter.ts ensureLowerDirs: same names, same code), as buildah, podman and
 * docker unpack at pull time. Layer N is unpacked as soon as it is stored, while later layers
 * still download. Only where a build here would use overlay snapshots (the sandbox probe and
 * the runner choice of a default build) and only for an image of this host's own platform;
 * otherwise nothing is unpacked and nothing is said.
 */
export interface PullUnpacker {
  /** For registry/ PullOptions.onImageLayers. */
  readonly onImageLayers: (image: PullingImage) => (index: number) => void;
  /**
   * Once the pull settled: `done` waits for the unpacks and returns what failed, as warnings
   * (the image is stored whole; a build unpacks it later); `failed` stops them and waits until
   * their temp dirs are gone. Never rejects.
   */
  finish(pull: 'done' | 'failed'): Promise<string[]>;
}

interface Gate {
  readonly promise: Promise<void>;
  open(): void;
  fail(e: Error): void;
}

function gate(): Gate {
  let open!: () => void;
  let fail!: (e: Error) => void;
  const promise = new Promise<void>((resolve, reject) => {
    open = resolve;
    fail = reject;
  });
  promise.catch(() => undefined);
  return { promise, open, fail };
}

export function pullUnpacker(store: Store, opts: PullUnpackOptions = {}): PullUnpacker {
  const stop = new AbortController();
  const signal = opts.signal !== undefined ? AbortSignal.any([opts.signal, stop.signal]) : stop.signal;
  // The default is probed now, while the manifest and config download (cached per process); a
  // caller's own is asked on the first image (a build whose bases are all local asks nothing).
  let here = opts.hostFs === undefined ? overlayHostFs(opts, signal) : undefined;
  const host = defaultTargetPlatform();
  const jobs: Promise<void>[] = [];
  const gates: Gate[] = [];
  const warnings: string[] = [];
  const report = (digest: Digest, status: PullUnpackProgress['status']): void => opts.onProgress?.({ type: 'unpack', digest, status });
  return {
    onImageLayers(image) {
      const stored = image.layers.map(() => gate());
      gates.push(...stored);
      const c = image.config;
      const native = platformMatches(host, { os: c.os, architecture: c.architecture, ...(c.variant !== undefined && c.variant !== '' ? { variant: c.variant } : {}) });
      const job = (async () => {
        const hostFs = native ? await (here ??= opts.hostFs!().catch(() => undefined)) : undefined;
        if (hostFs === undefined) {
          await Promise.all(stored.map(async (g, i) => report(await g.promise.then(() => image.layers[i]!.digest), 'skipped')));
          return;
        }
        const { layerIndexOf } = await import('../image/index.js');
        const diffIds = c.rootfs.diff_ids;
        // Each layer's index (what decides its snapshot; every build on the image reads it, from
        // meta/ once written) is read as soon as the layer is stored, so the next layer's is
        // ready when this one's unpack ends.
        for (const [i, g] of stored.entries()) void g.promise.then(() => layerIndexOf(store, diffIds[i]!, { signal })).catch(() => undefined);
        const { ensureLowerDirs } = await import('./overlay-snapshotter.js');
        await ensureLowerDirs(store, hostFs, diffIds, (i) => layerIndexOf(store, diffIds[i]!, { signal }), {
          signal,
          stored: (i) => stored[i]!.promise,
          onLayer: (i, status) => report(image.layers[i]!.digest, status),
        });
      })().catch((e: unknown) => {
        if (signal.aborted || isAbortError(e)) return;
        const why = e instanceof Error ? e.message : String(e);
        warnings.push(`${image.name} is stored, but unpacking it failed (the first build that runs a step on it will unpack it): ${why}`);
      });
      jobs.push(job);
      return (i) => stored[i]?.open();
    },
    async finish(pull) {
      if (pull === 'failed') {
        stop.abort();
        for (const g of gates) g.fail(signal.reason instanceof Error ? signal.reason : new Error('pull failed'));
      } else {
        // Every layer of a pull that succeeded is stored.
        for (const g of gates) g.open();
      }
      await Promise.all(jobs);
      return warnings;
    },
  };
}

/** The host filesystem to unpack with, when a default build here would use overlay snapshots. */
async function overlayHostFs(opts: PullUnpackOptions, signal: AbortSignal): Promise<HostFilesystem | undefined> {
  if (opts.snapshotter === 'copy') return undefined;
  try {
    const { probeSandbox, selectRunner } = await import('../sandbox/index.js');
    const capabilities = await probeSandbox({ signal, path: opts.toolPath });
    const chosen = selectRunner({ capabilities, isolation: 'auto', ...(opts.snapshotter !== undefined ? { snapshotter: opts.snapshotter } : {}) });
    if (chosen.snapshots !== 'overlay') return undefined;
    const { hostFilesystem } = await import('./host-fs.js');
    return await hostFilesystem({ toolPath: opts.toolPath, signal });
  } catch {
    // No sandbox here, or overlay forced and unavailable: a build here would say so; a pull
    // just stores the image.
    return undefined;
  }
}
