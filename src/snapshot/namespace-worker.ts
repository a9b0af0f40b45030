/**
 * Work that must happen inside the build's user namespace when tsbuild runs as an ordinary
 * user (DESIGN.md "Rootless"): unpacking a layer into a snapshot (ownership is only real,
 * and copy-up only works, inside the namespace) and writing a layer from a step's upper dir
 * (files of other IDs with mode 0600 are readable only there). Started by the engine through
 * runInUserNamespace as `node namespace-worker.js COMMAND ...`; not a user-facing command.
 */
import { closeSync, createReadStream, openSync, writeSync } from 'node:fs';
import fsp from 'node:fs/promises';
import { applyLayer, layerTarChunks, recycledFileReader, type LayerEntry } from '../layer/index.js';
import { Digester } from '../oci/index.js';

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
    const r = writeTar(layerTarChunks(list, { sourceDateEpoch, readFile: recycledFileReader() }), b);
    process.stdout.write(`${JSON.stringify(await r)}\n`);
    return 0;
  }
  process.stderr.write('usage: namespace-worker unpack BLOB DIR | write-layer ENTRIES.json OUT.tar\n');
  return 2;
}

/**
 * Writes the tar's chunks to a new file `out`, hashed on the way, through one gather buffer
 * with synchronous writes (this process does nothing else); each chunk is copied out before the
 * next is asked for, as recycledFileReader's buffers require.
 */
async function writeTar(chunks: AsyncIterable<Buffer>, out: string): Promise<{ diffId: string; size: number }> {
  const fd = openSync(out, 'wx', 0o600);
  try {
    const d = new Digester();
    const gather = Buffer.allocUnsafe(1024 * 1024);
    let used = 0;
    const flush = (): void => {
      for (let off = 0; off < used; ) off += writeSync(fd, gather, off, used - off);
      used = 0;
    };
    for await (const chunk of chunks) {
      d.update(chunk);
      for (let off = 0; off < chunk.length; ) {
        const n = chunk.copy(gather, used, off);
        used += n;
        off += n;
        if (used === gather.length) flush();
      }
    }
    flush();
    return { diffId: d.digest(), size: d.size };
  } finally {
    closeSync(fd);
  }
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
