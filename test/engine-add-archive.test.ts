import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { tool } from './support/cli.js';

// The real unpack, counted: a cached ADD of an archive must not unpack it.
const unpacked = vi.hoisted(() => ({ count: 0 }));
vi.mock('../src/engine/add-sources.js', async (importOriginal) => {
  const real = await importOriginal<typeof import('../src/engine/add-sources.js')>();
  return {
    ...real,
    unpackArchive: async (...args: Parameters<typeof real.unpackArchive>) => {
      unpacked.count++;
      return real.unpackArchive(...args);
    },
  };
});

// From source, not dist/ (as engine.test.ts).
const { build } = await import('../src/engine/index.js');
const { hostPlatform } = await import('../src/oci/index.js');
const { openStore } = await import('../src/store/index.js');
const { readLayerFile } = await import('../src/layer/layer-index.js');

let tmp: string;
beforeAll(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'tsbuild-add-archive-'));
});
afterAll(async () => {
  await fs.rm(tmp, { recursive: true, force: true });
});

describe('ADD of a local archive', () => {
  it('is looked up by the archive digest on a cached build, without unpacking it', async () => {
    const ctx = path.join(tmp, 'ctx');
    await fs.mkdir(path.join(ctx, 'tree', 'etc'), { recursive: true });
    await fs.writeFile(path.join(ctx, 'tree', 'etc', 'motd'), 'one\n');
    await tool('tar', ['-C', path.join(ctx, 'tree'), '-czf', path.join(ctx, 'root.tar.gz'), '.']);
    await fs.rm(path.join(ctx, 'tree'), { recursive: true });
    const store = await openStore(path.join(tmp, 'store'));
    const run = () =>
      build(
        { contextDir: ctx, dockerfile: { name: 'Dockerfile', text: Buffer.from('FROM scratch\nADD root.tar.gz /\n') }, tags: ['localhost/add-archive:1'], buildArgs: new Map(), labels: {}, noCache: false, outputs: [{ type: 'image' }] },
        { store, signal: new AbortController().signal, report: () => undefined, platform: hostPlatform(), created: '2024-01-02T03:04:05Z', logger: () => pino({ level: 'silent' }) },
      );
    const first = await run();
    expect(unpacked.count).toBe(1);
    const second = await run();
    expect(second.image.configDescriptor.digest).toBe(first.image.configDescriptor.digest);
    expect(unpacked.count).toBe(1);
    // Another archive under the same name: unpacked, keyed and built anew.
    await fs.mkdir(path.join(ctx, 'tree', 'etc'), { recursive: true });
    await fs.writeFile(path.join(ctx, 'tree', 'etc', 'motd'), 'two\n');
    await tool('tar', ['-C', path.join(ctx, 'tree'), '-czf', path.join(ctx, 'root.tar.gz'), '.']);
    await fs.rm(path.join(ctx, 'tree'), { recursive: true });
    const third = await run();
    expect(unpacked.count).toBe(2);
    expect(third.image.configDescriptor.digest).not.toBe(first.image.configDescriptor.digest);
    const layer = third.image.manifest.layers[0]!.digest;
    expect((await readLayerFile(() => store.blobs.openBlob(layer), 'etc/motd', 1024))?.toString()).toBe('two\n');
  });
});
