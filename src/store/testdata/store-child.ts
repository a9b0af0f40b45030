// A child process for the store's multi-process tests (src/store/multiprocess.test.ts).
// Run as: node --import ./register-ts.mjs store-child.ts <command> <root> [args...]
// Prints one line per milestone on stdout so the parent can synchronise with it.
import { Readable } from 'node:stream';
import { openStore } from '../index.js';

async function main(argv: readonly string[]): Promise<void> {
  const [command, root, ...args] = argv;
  if (command === undefined || root === undefined) throw new Error('usage: store-child <command> <root> [args]');
  const store = await openStore(root, { lockTimeoutMs: 60_000 });
  switch (command) {
    case 'tags': {
      // tags <root> <prefix> <count>: tag one manifest blob under count distinct names.
      const prefix = args[0] ?? 'x';
      const count = Number(args[1] ?? '10');
      // An empty image index: valid, and small.
      const blob = await store.blobs.putBytes('{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}');
      for (let i = 0; i < count; i++) {
        await store.setTag(`example.com/${prefix}:t${i}`, {
          mediaType: 'application/vnd.oci.image.index.v1+json',
          digest: blob.digest,
          size: blob.size,
        });
      }
      await store.updateMeta('counter', (cur) => (typeof cur === 'number' ? cur : 0) + count);
      process.stdout.write('done\n');
      return;
    }
    case 'hold-lock': {
      // hold-lock <root> <ms>: take the lock, say so, keep it for ms.
      await store.withLock(async () => {
        process.stdout.write(`locked ${Date.now()}\n`);
        await new Promise((r) => setTimeout(r, Number(args[0] ?? '1000')));
        process.stdout.write(`unlocking ${Date.now()}\n`);
      });
      process.stdout.write('released\n');
      return;
    }
    case 'slow-put': {
      // slow-put <root>: stream 2 MiB into putBlob, say so, then stall forever (parent kills us).
      let sent = 0;
      const source = new Readable({
        read() {
          if (sent < 2 * 1024 * 1024) {
            sent += 64 * 1024;
            this.push(Buffer.alloc(64 * 1024, 7));
            if (sent >= 2 * 1024 * 1024) setTimeout(() => process.stdout.write('writing\n'), 50);
          }
        },
      });
      await store.blobs.putBlob(source);
      return;
    }
    default:
      throw new Error(`unknown command ${command}`);
  }
}

main(process.argv.slice(2)).catch((e: unknown) => {
  process.stderr.write(`${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.exit(1);
});
