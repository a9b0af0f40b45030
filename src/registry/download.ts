import { Readable } from 'node:stream';
import { noteDeadBuffers } from '../host/index.js';
import { Digester, type Digest } from '../oci/index.js';
import { header } from './auth.js';
import { RegistryError, protocolError, transportError, type ExchangeContext } from './errors.js';
import type { RetryBudget } from './retry.js';
import type { RegistryTransport, Repository, Response } from './transport.js';

/** A blob to download: where, what it must be, and who is told of its progress. */
export interface BlobDownload {
  readonly repo: Repository;
  /** The digest and size the bytes must have (from a descriptor). */
  readonly digest: Digest;
  readonly size: number;
  /** Names the blob in errors (default `blob DIGEST of REGISTRY/REPOSITORY`). */
  readonly what?: string | undefined;
  readonly signal?: AbortSignal | undefined;
  readonly onBytes?: ((n: number) => void) | undefined;
}

/**
 * Download a blob, handing its bytes to `into` as they stream (into stores them: `putBlob`,
 * or a gunzip in front of it). Returns what `into` returns.
 *
 * Verify while streaming: the bytes are hashed on the way, and the stream `into` reads fails,
 * instead of ending, when they exceed the size or do not match the digest; so `into` never sees a
 * complete stream of wrong bytes and stores nothing from one (STYLE.md 5).
 *
 * A broken or truncated transfer resumes with a Range request from where it stopped; bytes that
 * do not match start the download over. All of it under one retry budget (retry.ts): failures in
 * a row are bounded by the policy's attempts, and a transfer that progressed starts the count
 * afresh. Whatever `into` throws is judged by its `temporary` flag too: `into` marks as temporary
 * a failure that damaged bytes could explain (a gunzip error).
 */
export async function downloadBlob<T>(http: RegistryTransport, d: BlobDownload, into: (bytes: Readable) => Promise<T>): Promise<T> {
  const what = d.what ?? `blob ${d.digest} of ${d.repo.registry}/${d.repo.repository}`;
  const budget = http.budget({ method: 'GET', what, signal: d.signal });
  for (;;) {
    const bytes = Readable.from(verifiedChunks(http, d, { what, registry: d.repo.registry }, budget), { objectMode: false });
    try {
      return await into(bytes);
    } catch (e) {
      bytes.destroy();
      // A new download from the start; a step of its own, so bytes received do not reset it.
      await budget.failed(e, 'verify');
    }
  }
}

/** The blob's bytes, resumed after failures, failing instead of ending when they do not verify. */
async function* verifiedChunks(http: RegistryTransport, d: BlobDownload, ctx: ExchangeContext, budget: RetryBudget): AsyncGenerator<Buffer> {
  const digester = new Digester();
  let offset = 0;
  let offsetAtFailure = 0;
  for (;;) {
    let res: Response | undefined;
    try {
      res = await http.request(
        {
          repo: d.repo,
          method: 'GET',
          target: `/v2/${d.repo.repository}/blobs/${d.digest}`,
          headers: offset > 0 ? { range: `bytes=${offset}-` } : {},
          actions: ['pull'],
          expect: [200, 206],
          what: ctx.what,
          followRedirects: true,
          signal: d.signal,
        },
        { budget, step: 'transfer' },
      );
      let skip = 0;
      if (offset > 0) {
        if (res.status === 206) {
          const m = /^bytes (\d+)-/.exec(header(res.headers, 'content-range') ?? '');
          if (m === null || Number(m[1]) !== offset) {
            throw protocolError(`asked for bytes from ${offset} but got the range ${header(res.headers, 'content-range') ?? '(none)'}`, ctx, true);
          }
        } else {
          skip = offset; // the server ignored Range: drop what we already have
        }
      }
      for await (const c of res.body as AsyncIterable<Buffer>) {
        let chunk = c;
        if (skip > 0) {
          const n = Math.min(skip, chunk.byteLength);
          skip -= n;
          chunk = chunk.subarray(n);
          if (chunk.byteLength === 0) continue;
        }
        digester.update(chunk);
        if (digester.size > d.size) throw mismatch(d, ctx, `more than the ${d.size} bytes the descriptor names`);
        offset += chunk.byteLength;
        d.onBytes?.(chunk.byteLength);
        yield chunk;
        // Asked for the next chunk: this one is written on (or copied by a decompressor).
        noteDeadBuffers(chunk.byteLength);
      }
      if (offset < d.size) throw protocolError(`the transfer ended after ${offset} of ${d.size} bytes`, ctx, true);
      break;
    } catch (e) {
      // Wrong bytes: resuming cannot help; the whole download starts over (downloadBlob).
      if (e instanceof RegistryError && e.code === 'DIGEST_MISMATCH') throw e;
      if (offset > offsetAtFailure) budget.progressed('transfer');
      offsetAtFailure = offset;
      await budget.failed(transportError(e, ctx), 'transfer');
    } finally {
      res?.body.destroy();
    }
  }
  const got = digester.digest();
  if (got !== d.digest) throw mismatch(d, ctx, `${got} (${offset} bytes)`);
}

function mismatch(d: BlobDownload, ctx: ExchangeContext, got: string): RegistryError {
  return new RegistryError('DIGEST_MISMATCH', `${ctx.what}: the registry sent ${got}, expected ${d.digest} (${d.size} bytes) (registry ${ctx.registry})`, {
    temporary: true,
    hint: 'the registry (or something between it and us) sent bytes that do not match the digest; nothing was stored',
  });
}
