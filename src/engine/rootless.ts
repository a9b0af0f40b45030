import { createReadStream } from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { TsbuildError } from '../errors.js';
import type { StoredLayer } from '../image/index.js';
import type { Digest } from '../oci/index.js';
import { runInUserNamespace, type SandboxCapabilities } from '../sandbox/index.js';
import type { Store } from '../store/index.js';

const WORKER = fileURLToPath(new URL('./namespace-worker.js', import.meta.url));

async function worker(caps: SandboxCapabilities, args: readonly string[], signal?: AbortSignal): Promise<string> {
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  const r = await runInUserNamespace(process.execPath, [WORKER, ...args], { capabilities: caps, ...(signal ? { signal } : {}), stdout: (c) => out.push(c), stderr: (c) => err.push(c) });
  if (r.exitCode !== 0) {
    throw new TsbuildError('SANDBOX_FAILED', `${args[0]} in the user namespace failed: ${Buffer.concat(err).toString('utf8').trim() || `exit ${r.exitCode}`}`);
  }
  return Buffer.concat(out).toString('utf8');
}

/** Unpacks a stored layer into `dir` inside the user namespace (owners real there). */
export async function unpackInNamespace(caps: SandboxCapabilities, store: Store, diffId: Digest, dir: string, signal?: AbortSignal): Promise<void> {
  await worker(caps, ['unpack', store.blobs.blobPath(diffId), dir], signal);
}

export interface NamespaceEntry {
  readonly path: string;
  readonly type: 'file' | 'dir' | 'symlink' | 'hardlink' | 'whiteout' | 'opaque' | 'fifo' | 'char' | 'block';
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
  readonly mtime: number;
  readonly size?: number;
  readonly linkTarget?: string;
  readonly devmajor?: number;
  readonly devminor?: number;
  readonly sourcePath?: string;
  /** Sent to the worker as base64 (see namespace-worker.ts). */
  readonly xattrs?: Readonly<Record<string, Buffer>> | undefined;
}

/**
 * Writes a layer inside the user namespace (it reads files only the namespace can read) to
 * a temp tar, then stores it; the tar is verified by its digest on the way into the store.
 */
export async function writeLayerInNamespace(caps: SandboxCapabilities, store: Store, entries: readonly NamespaceEntry[], epoch: number | undefined, signal?: AbortSignal): Promise<StoredLayer> {
  const dir = await store.makeTempDir('nslayer');
  try {
    const list = path.join(dir, 'entries.json');
    const tar = path.join(dir, 'layer.tar');
    const serial = entries.map(({ xattrs, ...e }) => (xattrs ? { ...e, xattrs: Object.fromEntries(Object.entries(xattrs).map(([k, v]) => [k, v.toString('base64')])) } : e));
    await fsp.writeFile(list, JSON.stringify({ entries: serial, ...(epoch !== undefined ? { sourceDateEpoch: epoch } : {}) }));
    const reported = JSON.parse(await worker(caps, ['write-layer', list, tar], signal)) as { diffId: Digest; size: number };
    const stored = await store.blobs.putBlob(createReadStream(tar), { expected: { digest: reported.diffId, size: reported.size }, signal });
    return { diffId: stored.digest, size: stored.size };
  } finally {
    await fsp.rm(dir, { recursive: true, force: true });
  }
}
