import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import zlib from 'node:zlib';
import { describe, expect, it, vi } from 'vitest';
import { ParallelGzip, compressibleRuns, gzipOneBlock, joinPieces, type ParallelGzipOptions } from './parallel-gzip.js';

async function gzip(pieces: readonly Buffer[], opts: ParallelGzipOptions): Promise<Buffer> {
  const out: Buffer[] = [];
  await pipeline(Readable.from(pieces), new ParallelGzip(opts), async (src: AsyncIterable<Buffer>) => {
    for await (const c of src) out.push(c);
  });
  return Buffer.concat(out);
}

/** Half text (compressible, with matches across block ends), half random. */
function sample(n: number): Buffer {
  const text = Buffer.from('a line of a config file, repeated with small changes 0123456789\n'.repeat(Math.ceil(n / 128) + 1));
  return Buffer.concat([text.subarray(0, n >> 1), randomBytes(n - (n >> 1))]);
}

const BLOCK = 64 * 1024;

describe('ParallelGzip', () => {
  it.each([0, 1, BLOCK - 1, BLOCK, BLOCK + 1, 5 * BLOCK + 777])('is one gzip member GNU gzip and zlib read back (%i bytes)', async (n) => {
    const data = sample(n);
    const gz = await gzip([data.subarray(0, n / 3), data.subarray(n / 3)], { level: 6, blockSize: BLOCK, jobs: 3 });
    expect([...gz.subarray(0, 10)]).toEqual([0x1f, 0x8b, 0x08, 0x00, 0, 0, 0, 0, 0, 0x03]);
    expect(execFileSync('gzip', ['-dc'], { input: gz, maxBuffer: 64 << 20 }).equals(data)).toBe(true);
    expect(zlib.gunzipSync(gz).equals(data)).toBe(true);
    // The CRC and size in the trailer check out.
    expect(execFileSync('gzip', ['-t'], { input: gz }).length).toBe(0);
  });

  it('gives the same bytes however the input is cut and however many jobs run', async () => {
    const data = sample(7 * BLOCK + 5);
    const a = await gzip([data], { blockSize: BLOCK, jobs: 1 });
    const b = await gzip([...Array.from({ length: 70 }, (_, i) => data.subarray(Math.floor((i * data.length) / 70), Math.floor(((i + 1) * data.length) / 70)))], { blockSize: BLOCK, jobs: 4 });
    expect(b.equals(a)).toBe(true);
  });

  it('compresses as well as one zlib stream (the previous block is the dictionary)', async () => {
    const text = Buffer.from(Array.from({ length: 40_000 }, (_, i) => `line ${i % 500} of a log with the same few words\n`).join(''));
    const ours = await gzip([text], { level: 6, blockSize: BLOCK });
    const one = zlib.gzipSync(text, { level: 6 });
    // Within 5% here (64 KiB blocks of a 80:1 text; without the dictionary it is 2.4x).
    expect(ours.length).toBeLessThan(one.length * 1.05);
    expect(zlib.gunzipSync(ours).equals(text)).toBe(true);
  });

  it('stores blocks that do not compress, and still compresses blocks that partly do', async () => {
    const random = randomBytes(8 * BLOCK);
    const stored = await gzip([random], { blockSize: BLOCK });
    expect(zlib.gunzipSync(stored).equals(random)).toBe(true);
    // Stored blocks: a few bytes of framing each, nothing else.
    expect(stored.length).toBeLessThan(random.length * 1.001 + 64);
    // Text in the first half of each block: its start sample compresses, so deflate runs.
    const text = Buffer.from('some text some text some text\n'.repeat(BLOCK / 60));
    const mixed = Buffer.concat(Array.from({ length: 4 }, () => Buffer.concat([text.subarray(0, BLOCK / 2), randomBytes(BLOCK / 2)])));
    const gz = await gzip([mixed], { blockSize: BLOCK });
    expect(zlib.gunzipSync(gz).equals(mixed)).toBe(true);
    expect(gz.length).toBeLessThan(mixed.length * 0.6);
  });

  it('stores the random 64 KiB pieces of a block and deflates the rest (a layer of libraries and text)', async () => {
    const MiB = 1024 * 1024;
    const text = Buffer.from(Array.from({ length: 3000 }, (_, i) => `def handler_${i}(request): return render(request, "page_${i % 40}.html")\n`).join(''));
    // 1 MiB blocks (the default), each of 16 pieces alternating text and random bytes.
    const piece = (i: number): Buffer => (i % 2 === 0 ? text.subarray(0, BLOCK) : randomBytes(BLOCK));
    const mixed = Buffer.concat(Array.from({ length: 48 }, (_, i) => piece(i)));
    const gz = await gzip([mixed], {});
    expect(zlib.gunzipSync(gz).equals(mixed)).toBe(true);
    expect(execFileSync('gzip', ['-t'], { input: gz }).length).toBe(0);
    // The random half stored (its size plus framing), the text half deflated to a few percent.
    expect(gz.length).toBeGreaterThan(mixed.length / 2);
    expect(gz.length).toBeLessThan(mixed.length * 0.56);
    // The same bytes however the input is cut and however many jobs run.
    const cut = await gzip(Array.from({ length: 37 }, (_, i) => mixed.subarray(Math.floor((i * mixed.length) / 37), Math.floor(((i + 1) * mixed.length) / 37))), { jobs: 1 });
    expect(cut.equals(gz)).toBe(true);
    expect(mixed.length).toBe(3 * MiB);
  });

  it('run-length codes base64 of random bytes (no repeated strings for deflate to find), deflates code and stores random bytes', async () => {
    const MiB = 1024 * 1024;
    const base64 = Buffer.from(randomBytes(MiB).toString('base64').replace(/.{76}/g, '$&\n')).subarray(0, MiB);
    const code = Buffer.from(Array.from({ length: 20000 }, (_, i) => `def handler_${i}(request): return render(request, "page_${i % 40}.html")\n`).join('')).subarray(0, MiB);
    const random = randomBytes(MiB);
    expect(compressibleRuns(base64, 4)).toEqual([{ start: 0, end: MiB, kind: 'rle' }]);
    expect(compressibleRuns(code, 4)).toEqual([{ start: 0, end: MiB, kind: 'deflate' }]);
    expect(compressibleRuns(random, 4)).toEqual([{ start: 0, end: MiB, kind: 'store' }]);
    // A block of all three, 64 KiB pieces each: three runs of the kinds, in order.
    const mixed = Buffer.concat([base64.subarray(0, 2 * BLOCK), code.subarray(0, 3 * BLOCK), random.subarray(0, BLOCK)]);
    expect(compressibleRuns(mixed, 4)).toEqual([
      { start: 0, end: 2 * BLOCK, kind: 'rle' },
      { start: 2 * BLOCK, end: 5 * BLOCK, kind: 'deflate' },
      { start: 5 * BLOCK, end: 6 * BLOCK, kind: 'store' },
    ]);
    // 4 KiB base64 files in a tar: the headers between them are zeros and near-copies of each other, still run-length coded.
    const files = Buffer.concat(
      Array.from({ length: 16 }, (_, i) => {
        const header = Buffer.alloc(512);
        header.write(`data/small/s4096/f${String(i).padStart(4, '0')}\0`, 0);
        header.write(['0000644', '0000000', '0000000', '00000010000', '00000000000', ''].join('\x00'), 100);
        header.write('ustar\x0000root', 257);
        return Buffer.concat([header, base64.subarray(i * 4096, (i + 1) * 4096)]);
      }),
    ).subarray(0, BLOCK);
    expect(compressibleRuns(Buffer.concat([files, files]), 4)).toEqual([{ start: 0, end: 2 * BLOCK, kind: 'rle' }]);
    // A sample of zeros (the gap between two files) says nothing of its piece's text: deflated.
    const gap = Buffer.concat([code.subarray(0, 28 * 1024), Buffer.alloc(8 * 1024), code.subarray(0, 28 * 1024)]);
    expect(compressibleRuns(Buffer.concat([gap, gap]), 4)).toEqual([{ start: 0, end: 2 * BLOCK, kind: 'deflate' }]);
    // Run-length coded base64 is as small as deflate makes it (6 bits a character), and reads back.
    const gz = await gzip([Buffer.concat([base64, code, base64])], {});
    expect(zlib.gunzipSync(gz).equals(Buffer.concat([base64, code, base64]))).toBe(true);
    expect(execFileSync('gzip', ['-t'], { input: gz }).length).toBe(0);
    const deflated = zlib.gzipSync(base64, { level: 4 }).length;
    const ours = (await gzip([base64], {})).length;
    expect(ours).toBeLessThan(deflated * 1.01);
  });

  it.each([0, 1, 1000, BLOCK, 3 * BLOCK + 11])('gzipOneBlock gives the bytes ParallelGzip gives one block (%i bytes, text, random and base64 runs)', async (n) => {
    const text = sample(n);
    const b64 = Buffer.from(randomBytes(n).toString('base64')).subarray(0, n);
    const mixed = Buffer.concat([b64.subarray(0, n >> 1), text.subarray(n >> 1)]);
    for (const data of [text, randomBytes(n), b64, mixed]) {
      for (const level of [1, 4, 9]) {
        const streamed = await gzip([data], { level, blockSize: Math.max(data.length, 1) });
        expect(gzipOneBlock(data, level).equals(streamed)).toBe(true);
      }
    }
    expect(zlib.gunzipSync(gzipOneBlock(text, 4)).equals(text)).toBe(true);
  });

  it("hands each job's output on as zlib wrote it, not joined into a copy (1 MiB blocks of code, base64 and random bytes)", async () => {
    const MiB = 1024 * 1024;
    const code = Buffer.from(Array.from({ length: 60000 }, (_, i) => `def handler_${i}(request): return render(request, "page_${i % 40}.html")\n`).join('')).subarray(0, 3 * MiB);
    const base64 = Buffer.from(randomBytes(MiB).toString('base64')).subarray(0, MiB);
    const data = Buffer.concat([code, base64, randomBytes(MiB), code.subarray(0, MiB)]);
    const out: Buffer[] = [];
    const concat = vi.spyOn(Buffer, 'concat');
    try {
      await pipeline(Readable.from([data]), new ParallelGzip({ level: 4, jobs: 3 }), async (src: AsyncIterable<Buffer>) => {
        for await (const c of src) out.push(c);
      });
      // The trailer only: node:zlib's own gathering joined every job's run and its sync flush.
      expect(concat.mock.calls.length).toBeLessThanOrEqual(1);
    } finally {
      concat.mockRestore();
    }
    const gz = Buffer.concat(out);
    expect(zlib.gunzipSync(gz).equals(data)).toBe(true);
    // The same bytes as one job at a time with blocks fed in small pieces.
    expect((await gzip([data.subarray(0, 12345), data.subarray(12345)], { level: 4, jobs: 1 })).equals(gz)).toBe(true);
  });

  it('joinPieces: a view of pieces that lie end to end in one buffer, else a copy', () => {
    const whole = Buffer.allocUnsafeSlow(10); // a buffer of its own, not Node's shared pool
    whole.write('abcdefghij');
    const view = joinPieces([whole.subarray(0, 3), whole.subarray(3, 4), whole.subarray(4, 9)], 9);
    expect(view.toString()).toBe('abcdefghi');
    expect(view.buffer).toBe(whole.buffer);
    expect(view.byteOffset).toBe(whole.byteOffset);
    // A gap, or pieces of two buffers: copied.
    const gap = joinPieces([whole.subarray(0, 3), whole.subarray(4, 6)], 5);
    expect(gap.toString()).toBe('abcef');
    expect(gap.buffer).not.toBe(whole.buffer);
    expect(joinPieces([Buffer.from('ab'), Buffer.from('cd')], 4).toString()).toBe('abcd');
    expect(joinPieces([], 0).length).toBe(0);
  });

  it('marks the level in the header as zlib does', async () => {
    expect((await gzip([Buffer.from('x')], { level: 9 }))[8]).toBe(2);
    expect((await gzip([Buffer.from('x')], { level: 1 }))[8]).toBe(4);
  });
});

describe('compressFile (a stored layer read into the compressor\'s own blocks)', () => {
  it('gives the bytes ParallelGzip gives a plain stream of the file, for files of whole and partial blocks, several at once', async () => {
    const { mkdtemp, rm, writeFile } = await import('node:fs/promises');
    const { createReadStream } = await import('node:fs');
    const os = await import('node:os');
    const path = await import('node:path');
    const { compressFile } = await import('./compress.js');
    const dir = await mkdtemp(path.join(os.tmpdir(), 'compress-file-'));
    try {
      const MiB = 1024 * 1024;
      // Text and random runs, so blocks are cut into deflated and stored runs; sizes around the
      // 1 MiB block: the pool's blocks are reused while earlier ones are still being deflated.
      const sizes = [0, 100, MiB, 3 * MiB, 5 * MiB + 12345];
      const files = await Promise.all(
        sizes.map(async (n, i) => {
          const data = sample(n);
          const file = path.join(dir, `layer-${i}`);
          await writeFile(file, data);
          return { file, data };
        }),
      );
      const collect = async (src: Readable): Promise<Buffer> => {
        const out: Buffer[] = [];
        for await (const c of src) out.push(c as Buffer);
        return Buffer.concat(out);
      };
      const got = await Promise.all(files.map(({ file }) => collect(compressFile(file, 'gzip', 4))));
      // Told the size, a file under a MiB is read into a block of its size: the same bytes.
      const sized = await Promise.all(files.map(({ file, data }) => collect(compressFile(file, 'gzip', 4, { size: data.length }))));
      for (const [i, g] of got.entries()) expect(sized[i]!.equals(g)).toBe(true);
      for (const [i, { file, data }] of files.entries()) {
        const plain = await collect(createReadStream(file, { highWaterMark: 64 * 1024 }).pipe(new ParallelGzip({ level: 4 })));
        expect(got[i]!.equals(plain)).toBe(true);
        expect(zlib.gunzipSync(got[i]!).equals(data)).toBe(true);
        expect(execFileSync('gzip', ['-t'], { input: got[i]! }).length).toBe(0);
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('fails with the read error for a missing file, and stops reading when destroyed', async () => {
    const { compressFile } = await import('./compress.js');
    const missing = compressFile('/nonexistent/layer', 'gzip', 4);
    await expect(
      (async () => {
        for await (const _ of missing) void _;
      })(),
    ).rejects.toMatchObject({ code: 'ENOENT' });
    const big = compressFile('/dev/zero', 'gzip', 1);
    const it = big[Symbol.asyncIterator]();
    await it.next();
    big.destroy();
    await new Promise((r) => setTimeout(r, 50));
    expect(big.destroyed).toBe(true);
  });
});
