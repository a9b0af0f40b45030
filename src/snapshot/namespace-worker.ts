/**
 * Work that must happen inside the build's user namespace when tsbuild runs as an ordinary
 * user (DESIGN.md "Rootless"): unpacking a layer into a snapshot (ownership is only real,
 * and copy-up only works, inside the namespace) and writing a layer from a step's upper dir
 * (files of other IDs with mode 0600 are readable only there). Started by the engine through
 * runInUserNamespace as `node namespace-worker.js COMMAND ...`; not a user-facing command.
 */
import { createReadStream } from 'node:fs';
import fsp from 'node:fs/promises';
import { applyLayer, layerTarChunks, recycledFileReader, type LayerEntry } from '../layer/index.js';
import { openStore } from '../store/index.js';

interface SerializedEntry extends Omit<LayerEntry, 'source' | 'xattrs'> {
  /** Values in base64 (JSON has no bytes). */
  readonly xattrs?: Record<string, string>;
}

async function main(argv: readonly string[]): Promise<number> {
  const [cmd, a, b] = argv;
  if (cmd === 'unpack' && a && b) {
    await applyLayer(createReadStream(a), b, { sameOwner: true, privateRoot: true });
    return 0;
  }
  if (cmd === 'write-layer' && a && b) {
    const { entries, sourceDateEpoch } = JSON.parse(await fsp.readFile(a, 'utf8')) as { entries: SerializedEntry[]; sourceDateEpoch?: number };
    // Content from each entry's sourcePath; only the few entries with xattrs are rebuilt.
    const list: LayerEntry[] = entries.map((e) => (e.xattrs ? { ...e, xattrs: Object.fromEntries(Object.entries(e.xattrs).map(([k, v]) => [k, Buffer.from(v, 'base64')])) } : (e as LayerEntry)));
    // Straight into the store's blobs, hashed once as it is written (BlobStore.putChunks): the
    // files it reads are readable only in here, the blob is the user's like any other.
    const store = await openStore(b);
    const stored = await store.blobs.putChunks(layerTarChunks(list, { sourceDateEpoch, readFile: recycledFileReader() }));
    process.stdout.write(`${JSON.stringify({ diffId: stored.digest, size: stored.size })}\n`);
    return 0;
  }
  process.stderr.write('usage: namespace-worker unpack BLOB DIR | write-layer ENTRIES.json STORE\n');
  return 2;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    process.stderr.write(`${e instanceof Error ? e.message : String(e)}\n`);
    process.exitCode = 1;
  },
);
