import type { Readable } from 'node:stream';
import type { Digest } from '../oci/index.js';
import { header } from './auth.js';
import { RegistryError, isTemporary, protocolError, type ExchangeContext } from './errors.js';
import { RetryBudget } from './retry.js';
import type { BudgetStep, RegistryTransport, Repository, Response } from './transport.js';

/**
 * The upload session of the distribution spec ("pushing blobs"): a cross-repository mount, a
 * session opened by POST and finished by PUT `?digest=`, its body sent whole (monolithic PUT) or
 * in PATCH chunks resumed from the Range the registry reports, and a streamed upload whose digest
 * is known only at its end. Location headers may be relative. One retry budget per upload
 * (retry.ts), whose steps are: opening a session, a chunk (with the status query after a failed
 * one), and the session itself (a failed PUT, a lost session: a new session).
 */

/** Reads bytes [start, end) of a blob (uploads read windows of it, and resume). */
export type BlobSource = (start: number, end: number, signal?: AbortSignal) => Promise<Readable>;

/** A blob to upload: where, what it is, and where its bytes come from. */
export interface BlobUpload {
  readonly repo: Repository;
  readonly digest: Digest;
  readonly size: number;
  readonly source: BlobSource;
  readonly signal?: AbortSignal | undefined;
  /** PATCH in chunks of this many bytes; undefined = one monolithic PUT. */
  readonly chunkSize?: number | undefined;
  /** Repositories of the same registry that have the blob: tried as cross-repository mounts first. */
  readonly mountFrom?: readonly string[] | undefined;
  /**
   * Ask first whether the repository has the blob (HEAD): 'exists' then, and nothing sent. The
   * question goes out with the POST that opens the session, not before it, so a blob the
   * registry lacks costs no round trip for it; a session opened for a blob that was there is
   * cancelled (without waiting for it: see RegistryTransport.afterwards).
   */
  readonly unlessPresent?: boolean | undefined;
  readonly onBytes?: ((n: number) => void) | undefined;
}

export type UploadResult = 'uploaded' | 'mounted' | 'exists';

const PUSH: readonly ('pull' | 'push')[] = ['pull', 'push'];

/**
 * Cross-repository mount (`POST ?mount=&from=`), the one place a mount is asked for: mounted on
 * 201; on 202 the registry would not, and the upload session it opened is handed back.
 */
export async function mountOrOpen(
  http: RegistryTransport,
  m: { readonly repo: Repository; readonly digest: Digest; readonly from: string; readonly what: string; readonly signal?: AbortSignal | undefined },
): Promise<{ readonly mounted: true } | { readonly mounted: false; readonly session: URL }> {
  const res = await http.request({
    repo: m.repo,
    method: 'POST',
    target: `/v2/${m.repo.repository}/blobs/uploads/?mount=${encodeURIComponent(m.digest)}&from=${encodeURIComponent(m.from)}`,
    headers: { 'content-length': '0' },
    actions: PUSH,
    extraScopes: [`repository:${m.from}:pull`],
    expect: [201, 202],
    what: m.what,
    signal: m.signal,
  });
  await res.body.dump();
  if (res.status === 201) return { mounted: true };
  return { mounted: false, session: locationOf(res, { what: m.what, registry: m.repo.registry }) };
}

/** Cancel an upload session (distribution spec, "cancel a blob upload"): SHOULD be sent, failures ignored. */
export async function cancelSession(http: RegistryTransport, s: { readonly repo: Repository; readonly session: URL; readonly what: string; readonly signal?: AbortSignal | undefined }): Promise<void> {
  await http
    .request({ repo: s.repo, method: 'DELETE', target: s.session, actions: PUSH, expect: [204, 200, 202, 404], what: s.what, signal: s.signal }, { budget: RetryBudget.single(), step: 'cancel' })
    .then((r) => r.body.dump())
    .catch(() => undefined);
}

/**
 * Upload a blob: mount it from `mountFrom` if one of them has it, else POST a session and PUT it
 * whole, or PATCH it in `chunkSize` chunks.
 */
export async function uploadBlob(http: RegistryTransport, u: BlobUpload): Promise<UploadResult> {
  const what = `blob ${u.digest} to ${u.repo.registry}/${u.repo.repository}`;
  let session: OpenSession | undefined;
  for (const from of u.mountFrom ?? []) {
    if (from === u.repo.repository) continue;
    const m = await mountOrOpen(http, { repo: u.repo, digest: u.digest, from, what, signal: u.signal });
    if (m.mounted) return 'mounted';
    if (session !== undefined) await cancelSession(http, { repo: u.repo, session: session.url, what, signal: u.signal });
    session = { url: m.session, minChunk: undefined };
  }
  const budget = http.budget({ method: 'PUT', what, signal: u.signal });
  if (u.unlessPresent === true) {
    const found = await presentOrOpen(http, u, what, budget, session);
    if (found === 'exists') return 'exists';
    session = found;
  }
  return uploadSessions(http, u, { what, registry: u.repo.registry }, budget, session);
}

/**
 * HEAD the blob and open its upload session (unless one is open) at once: 'exists' when the
 * repository has it (a session opened meanwhile is cancelled in the background), else the
 * session. A failed HEAD fails the upload as it did alone; a session that could not be opened
 * (within its retry budget) fails it only when the blob is absent.
 */
async function presentOrOpen(http: RegistryTransport, u: BlobUpload, what: string, budget: RetryBudget, opened: OpenSession | undefined): Promise<'exists' | OpenSession> {
  const open = opened !== undefined ? Promise.resolve(opened) : openSession(http, { repo: u.repo, what, signal: u.signal }, { budget, step: 'open' });
  const drop = (): void =>
    http.afterwards(open.then((s) => cancelSession(http, { repo: u.repo, session: s.url, what, signal: u.signal })));
  open.catch(() => undefined); // awaited below, or dropped
  let present: boolean;
  try {
    present = await hasBlob(http, u);
  } catch (e) {
    drop();
    throw e;
  }
  if (present) {
    drop();
    return 'exists';
  }
  return open;
}

/**
 * Sessions until one succeeds: a session lost or failed is replaced (at most three times the
 * policy's attempts in all), and before each new one the registry is asked whether the failed
 * attempt landed after all, so nothing is uploaded twice. A session that got chunks accepted
 * before it failed starts the count of failed sessions afresh (as downloads do).
 */
async function uploadSessions(http: RegistryTransport, u: BlobUpload, ctx: ExchangeContext, budget: RetryBudget, opened?: OpenSession): Promise<UploadResult> {
  let session = opened;
  const maxSessions = http.attempts * 3;
  for (let sessions = 1; ; sessions++) {
    const progress = { accepted: 0 };
    try {
      session ??= await openSession(http, { repo: u.repo, what: ctx.what, signal: u.signal }, { budget, step: 'open' });
      if (u.chunkSize !== undefined && u.chunkSize > 0) {
        // OCI-Chunk-Min-Length (distribution spec v1.1): chunks smaller than this are refused.
        await chunked(http, u, { session: session.url, chunkSize: Math.max(u.chunkSize, session.minChunk ?? 0), ctx, budget, progress });
      } else {
        await monolithic(http, u, { session: session.url, ctx });
      }
      return 'uploaded';
    } catch (e) {
      session = undefined;
      if (sessions >= maxSessions) throw e;
      if (progress.accepted > 0) budget.progressed('session');
      // A lost session (the registry forgot or cancelled it) is worth a new one.
      await budget.failed(sessionLost(e) ? asTemporary(e) : e, 'session');
      // The failed attempt may have landed (a lost response): do not upload twice.
      if (await landed(http, u)) return 'exists';
    }
  }
}

/** A blob stored while it streamed to the registry: its digest, size and bytes. */
export interface StoredCopy {
  readonly digest: Digest;
  readonly size: number;
  readonly source: BlobSource;
}

/** A blob uploaded while it is produced. */
export interface StreamedUpload {
  readonly repo: Repository;
  readonly body: Readable;
  /** The digest and size of what `body` carried, once it has ended. */
  readonly finish: () => Promise<{ readonly digest: Digest; readonly size: number }>;
  /** The stored copy, to upload from after the stream failed. */
  readonly fallback: () => Promise<StoredCopy>;
  readonly signal?: AbortSignal | undefined;
}

/**
 * Upload a blob whose digest is known only once it has been produced (a layer compressed on
 * the fly): POST a session, PATCH the stream (chunked transfer, no Content-Range), then PUT
 * `?digest=` with what `finish` reports once the stream has ended. A stream cannot be replayed:
 * after a temporary failure the blob is uploaded from the copy `fallback` gives (the caller
 * stores the stream as it goes), within the same retry budget.
 */
export async function uploadStreamed(
  http: RegistryTransport,
  s: StreamedUpload,
): Promise<{ digest: Digest; size: number }> {
  const { repo, signal } = s;
  const what = `blob to ${repo.registry}/${repo.repository}`;
  const ctx: ExchangeContext = { what, registry: repo.registry };
  const budget = http.budget({ method: 'PATCH', what, signal });
  let step = 'open';
  try {
    const { url: session } = await openSession(http, { repo, what, signal }, { budget, step });
    step = 'session';
    let used = false;
    const patched = await http.request(
      {
        repo,
        method: 'PATCH',
        target: session,
        headers: { 'content-type': 'application/octet-stream' },
        body: () => {
          if (used) throw new RegistryError('REGISTRY_PROTOCOL', `${what}: a streamed upload cannot be replayed`, { temporary: true });
          used = true;
          return s.body;
        },
        actions: PUSH,
        expect: [202, 204],
        what,
        signal,
      },
      { budget: RetryBudget.single(), step },
    );
    await patched.body.dump();
    const { digest, size } = await s.finish();
    const reported = rangeEnd(header(patched.headers, 'range'));
    if (reported !== undefined && reported + 1 !== size && size > 0) {
      throw protocolError(`the registry received ${reported + 1} of ${size} bytes`, ctx, true);
    }
    const blobCtx: ExchangeContext = { what: `blob ${digest} to ${repo.registry}/${repo.repository}`, registry: repo.registry };
    await finishSession(http, { repo, session: locationOf(patched, ctx), digest, ctx: blobCtx, signal });
    return { digest, size };
  } catch (e) {
    await budget.failed(e, step);
    const copy = await s.fallback();
    const u: BlobUpload = { repo, digest: copy.digest, size: copy.size, source: copy.source, signal };
    if (!(await landed(http, u))) await uploadSessions(http, u, { what: `blob ${copy.digest} to ${repo.registry}/${repo.repository}`, registry: repo.registry }, budget);
    return { digest: copy.digest, size: copy.size };
  }
}

/** An upload session: its URL and the registry's minimum chunk size, if it names one. */
interface OpenSession {
  readonly url: URL;
  readonly minChunk: number | undefined;
}

/** POST a new upload session. */
async function openSession(
  http: RegistryTransport,
  o: { readonly repo: Repository; readonly what: string; readonly signal: AbortSignal | undefined },
  within: BudgetStep,
): Promise<OpenSession> {
  const res = await http.request(
    { repo: o.repo, method: 'POST', target: `/v2/${o.repo.repository}/blobs/uploads/`, headers: { 'content-length': '0' }, actions: PUSH, expect: [202], what: o.what, signal: o.signal },
    within,
  );
  await res.body.dump();
  const min = header(res.headers, 'oci-chunk-min-length');
  return { url: locationOf(res, { what: o.what, registry: o.repo.registry }), minChunk: min !== undefined && /^\d+$/.test(min) ? Number(min) : undefined };
}

/** The whole blob in one PUT: one attempt per session. */
async function monolithic(http: RegistryTransport, u: BlobUpload, s: { readonly session: URL; readonly ctx: ExchangeContext }): Promise<void> {
  const url = new URL(s.session);
  url.searchParams.set('digest', u.digest);
  const res = await http.request(
    {
      repo: u.repo,
      method: 'PUT',
      target: url,
      headers: { 'content-type': 'application/octet-stream', 'content-length': String(u.size) },
      body: async () => counting(await u.source(0, u.size, u.signal), u.onBytes),
      actions: PUSH,
      expect: [201, 204],
      what: s.ctx.what,
      signal: u.signal,
    },
    { budget: RetryBudget.single(), step: 'session' },
  );
  await res.body.dump();
  checkUploadedDigest(res, u.digest, s.ctx);
}

/**
 * PATCH chunks with Content-Range; after a failed chunk, ask the registry how much it has
 * (distribution spec, "resuming an upload") and go on from there. When the failed PATCH did land,
 * distribution refuses the now stale session state (and cancels the upload): then the error
 * says the session is lost and the caller starts a new one.
 */
async function chunked(
  http: RegistryTransport,
  u: BlobUpload,
  s: { readonly session: URL; readonly chunkSize: number; readonly ctx: ExchangeContext; readonly budget: RetryBudget; readonly progress: { accepted: number } },
): Promise<void> {
  const { ctx, budget } = s;
  let location = s.session;
  let offset = 0;
  while (offset < u.size) {
    const start = offset;
    const end = Math.min(u.size, offset + s.chunkSize);
    try {
      const res = await http.request(
        {
          repo: u.repo,
          method: 'PATCH',
          target: location,
          headers: { 'content-type': 'application/octet-stream', 'content-range': `${start}-${end - 1}`, 'content-length': String(end - start) },
          body: async () => counting(await u.source(start, end, u.signal), u.onBytes),
          actions: PUSH,
          expect: [202, 204],
          what: ctx.what,
          signal: u.signal,
        },
        { budget: RetryBudget.single(), step: 'chunk' },
      );
      await res.body.dump();
      location = locationOf(res, ctx);
      const reported = rangeEnd(header(res.headers, 'range'));
      offset = reported !== undefined && reported + 1 > start ? reported + 1 : end;
      s.progress.accepted++;
      budget.progressed('chunk'); // the budget bounds failures in a row, not over a long upload
    } catch (e) {
      if (!isTemporary(e)) throw e;
      await budget.failed(e, 'chunk');
      const status = await http
        .request({ repo: u.repo, method: 'GET', target: location, actions: PUSH, expect: [204], what: ctx.what, signal: u.signal }, { budget, step: 'status' })
        .catch((err: unknown) => {
          throw isTemporary(err) || sessionLost(err) ? asTemporary(err) : err;
        });
      await status.body.dump();
      budget.progressed('status');
      const reported = rangeEnd(header(status.headers, 'range'));
      // "0-0" is ambiguous (nothing, or one byte: distribution reports both so): start over.
      if (reported === undefined || reported === 0) throw new RegistryError('REGISTRY_PROTOCOL', `${ctx.what}: cannot tell where to resume the upload`, { temporary: true, cause: e });
      location = locationOf(status, ctx);
      offset = reported + 1;
    }
  }
  await finishSession(http, { repo: u.repo, session: location, digest: u.digest, ctx, signal: u.signal });
}

/** PUT `?digest=` with no body: the registry checks and links what the session received. One attempt per session. */
async function finishSession(
  http: RegistryTransport,
  f: { readonly repo: Repository; readonly session: URL; readonly digest: Digest; readonly ctx: ExchangeContext; readonly signal: AbortSignal | undefined },
): Promise<void> {
  const url = new URL(f.session);
  url.searchParams.set('digest', f.digest);
  const res = await http.request(
    { repo: f.repo, method: 'PUT', target: url, headers: { 'content-length': '0' }, actions: PUSH, expect: [201, 204], what: f.ctx.what, signal: f.signal },
    { budget: RetryBudget.single(), step: 'session' },
  );
  await res.body.dump();
  checkUploadedDigest(res, f.digest, f.ctx);
}

/** Whether the repository has the blob now; one attempt, and no answer counts as no. */
async function landed(http: RegistryTransport, u: BlobUpload): Promise<boolean> {
  return hasBlob(http, u, { budget: RetryBudget.single(), step: 'landed' }).catch(() => false);
}

/** HEAD the blob in the upload's repository, with the push's token: whether it is there. */
async function hasBlob(http: RegistryTransport, u: BlobUpload, within?: BudgetStep): Promise<boolean> {
  const res = await http.request(
    {
      repo: u.repo,
      method: 'HEAD',
      target: `/v2/${u.repo.repository}/blobs/${u.digest}`,
      actions: PUSH,
      expect: [200, 404],
      what: `blob ${u.digest} of ${u.repo.registry}/${u.repo.repository}`,
      followRedirects: true,
      signal: u.signal,
    },
    within,
  );
  await res.body.dump();
  return res.status === 200;
}

/** The registry no longer knows the upload session: unknown, invalid, or out of range (416). */
function sessionLost(e: unknown): boolean {
  return (
    e instanceof RegistryError &&
    (e.status === 416 || e.registryCodes.includes('BLOB_UPLOAD_UNKNOWN') || e.registryCodes.includes('BLOB_UPLOAD_INVALID') || (e.status === 404 && e.code === 'REGISTRY_BLOB_UNKNOWN'))
  );
}

function asTemporary(e: unknown): RegistryError {
  if (e instanceof RegistryError && e.temporary) return e;
  const message = e instanceof Error ? e.message : String(e);
  return new RegistryError('REGISTRY_PROTOCOL', `${message} (starting the upload over)`, { temporary: true, cause: e });
}

function locationOf(res: Response, ctx: ExchangeContext): URL {
  const loc = header(res.headers, 'location');
  if (loc === undefined || loc === '') throw protocolError(`HTTP ${res.status} without a Location header`, ctx, true);
  // May be relative (distribution spec: "MAY be absolute ... or relative"): resolve against the request URL.
  return new URL(loc, res.url);
}

function rangeEnd(range: string | undefined): number | undefined {
  const m = /^(?:bytes=)?0-(\d+)$/.exec(range?.trim() ?? '');
  return m === null ? undefined : Number(m[1]);
}

function checkUploadedDigest(res: Response, digest: Digest, ctx: ExchangeContext): void {
  const served = header(res.headers, 'docker-content-digest');
  if (served !== undefined && served !== digest) throw protocolError(`the registry stored the blob as ${served}, expected ${digest}`, ctx);
}

/** Report bytes as they are read (progress), without buffering. */
function counting(stream: Readable, onBytes: ((n: number) => void) | undefined): Readable {
  if (onBytes !== undefined) stream.on('data', (c: Buffer) => onBytes(c.byteLength));
  return stream;
}
