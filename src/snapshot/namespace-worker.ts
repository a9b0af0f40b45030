/**
 * Work that must happen inside the build's user namespace when tsbuild runs as an ordinary
 * user (DESIGN.md "Rootless"): unpacking a layer into a snapshot (ownership is only real,
 * and copy-up only works, inside the namespace) and writing a layer from a step's upper dir
 * (files of other IDs with mode 0600 are readable only there). Started by the engine through
 * runInUserNamespace as `node namespace-worker.js COMMAND ...`; not a user-facing command.
 */
import { createReadStream, createWriteStream } from 'node:fs';
import fsp from 'node:fs/promises';
import { applyLayer, writeLayer, type LayerEntry } from '../layer/index.js';

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
    const r = await writeLayer(list, createWriteStream(b, { mode: 0o600 }), sourceDateEpoch !== undefined ? { sourceDateEpoch } : {});
    process.stdout.write(`${JSON.stringify(r)}\n`);
    return 0;
  }
  process.stderr.write('usage: namespace-worker unpack BLOB DIR | write-layer ENTRIES.json OUT.tar\n');
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
