import type { ChildProcessByStdio } from 'node:child_process';
import { createRequire } from 'node:module';
import { accessSync, constants } from 'node:fs';
import path from 'node:path';
import { Duplex, type Readable, type Writable } from 'node:stream';
import { TsbuildError } from '../errors.js';

/**
 * zstd through the system `zstd` program (zstd 1.4+; Debian's package "zstd"): node:zlib has
 * zstd only from Node 22.15, and the program is multi-threaded (`-T0`: one worker per core),
 * which zlib's is not. Looked up on PATH at run time, when a zstd layer is first met; a missing
 * program is a clear UNSUPPORTED error naming the package, never a stack trace.
 *
 * Determinism: with `-T0` zstd runs its multi-threaded mode, whose output does not depend on the
 * number of workers (zstd's documentation), so the same input, level and zstd version give the
 * same bytes on any machine. As for gzip, the compressed digest is remembered per diff ID
 * (store/compressed-layers.ts) rather than recomputed.
 */

let located: string | null | undefined;

/** The zstd program on PATH, or undefined. Looked up once per process. */
export function zstdProgram(): string | undefined {
  if (located === undefined) {
    located = null;
    for (const dir of (process.env['PATH'] ?? '').split(path.delimiter)) {
      if (dir === '') continue;
      const candidate = path.join(dir, 'zstd');
      try {
        accessSync(candidate, constants.X_OK);
        located = candidate;
        break;
      } catch {
        // not here
      }
    }
  }
  return located ?? undefined;
}

export function zstdMissing(): TsbuildError {
  return new TsbuildError('UNSUPPORTED', 'zstd layers need the zstd program, which is not on PATH (node:zlib has no zstd before Node.js 22.15)', {
    hint: 'install it (Debian/Ubuntu: apt-get install zstd), or use compression=gzip',
  });
}

/** Compresses what is written to it into a zstd frame (`zstd -T0 -LEVEL`), level 1..22. */
export function zstdCompressor(level: number): Duplex {
  return new ZstdProcess(['-q', '-c', '-T0', ...(level > 19 ? ['--ultra'] : []), `-${level}`], 'compress');
}

/** Decompresses zstd frames written to it (`zstd -d`). */
export function zstdDecompressor(): Duplex {
  return new ZstdProcess(['-q', '-d', '-c'], 'decompress');
}

/**
 * A zstd child process as a Duplex stream: bytes written go to its stdin, its stdout is what
 * is read. The readable side ends only once the child has exited with status 0; a child that
 * fails or is killed (a signal, OOM) errors the stream instead, so a consumer that stores what
 * it reads (BlobStore.putBlob) never takes a truncated output for a whole one. Destroying the
 * stream (an error elsewhere in the pipeline, an abort) kills the child.
 */
class ZstdProcess extends Duplex {
  readonly #child: ChildProcessByStdio<Writable, Readable, Readable>;
  readonly #what: string;
  #stderr = '';
  #exited = false;

  constructor(args: readonly string[], what: 'compress' | 'decompress') {
    super({ readableHighWaterMark: 1024 * 1024, writableHighWaterMark: 1024 * 1024 });
    this.#what = what;
    const program = zstdProgram();
    if (program === undefined) throw zstdMissing();
    // node:child_process loads with the first zstd layer, not with every gzip export.
    const { spawn } = createRequire(import.meta.url)('node:child_process') as typeof import('node:child_process');
    this.#child = spawn(program, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    const child = this.#child;
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (s: string) => {
      if (this.#stderr.length < 4096) this.#stderr += s;
    });
    child.stdout.on('data', (chunk: Buffer) => {
      if (!this.push(chunk)) child.stdout.pause();
    });
    // EPIPE when the child died first: the exit status below says why.
    child.stdin.on('error', () => undefined);
    child.stdout.on('error', () => undefined);
    child.on('error', (e) => {
      this.#exited = true;
      this.destroy((e as NodeJS.ErrnoException).code === 'ENOENT' ? zstdMissing() : new TsbuildError('LAYER_IO', `cannot run zstd: ${e.message}`, { cause: e }));
    });
    child.on('close', (code, signal) => {
      this.#exited = true;
      if (code === 0) {
        this.push(null);
        return;
      }
      const why = signal !== null ? `was killed by ${signal}` : `exited with status ${String(code)}`;
      const detail = this.#stderr.trim().split('\n').slice(-3).join('; ');
      this.destroy(new TsbuildError('LAYER_IO', `zstd (${this.#what}) ${why}${detail ? `: ${detail}` : ''}`));
    });
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (error?: Error | null) => void): void {
    if (this.#child.stdin.write(chunk)) cb();
    else this.#child.stdin.once('drain', () => cb());
  }

  override _final(cb: (error?: Error | null) => void): void {
    this.#child.stdin.end(() => cb());
  }

  override _read(): void {
    this.#child.stdout.resume();
  }

  override _destroy(err: Error | null, cb: (error?: Error | null) => void): void {
    if (!this.#exited) this.#child.kill('SIGKILL');
    this.#child.stdin.destroy();
    this.#child.stdout.destroy();
    cb(err);
  }
}
