import type { Readable } from 'node:stream';
import { TsbuildError } from '../errors.js';
import { MANIFEST_ACCEPT, MAX_MANIFEST_BYTES, digestAlgorithm, digestBytes, isDigest, type Digest, type Reference } from '../oci/index.js';
import { header } from './auth.js';
import { downloadBlob, type BlobDownload } from './download.js';
import { RegistryError, protocolError, transportError, type ExchangeContext } from './errors.js';
import { RegistryTransport, type Repository, type Response, type TransportOptions } from './transport.js';
import { cancelSession, mountOrOpen, uploadBlob, uploadStreamed, type BlobUpload, type StreamedUpload, type UploadResult } from './upload.js';

export type RegistryClientOptions = TransportOptions;

/** A manifest or index as fetched: its exact bytes, media type and digest. */
export interface FetchedManifest {
  readonly bytes: Buffer;
  /** Content-Type as served (normalised by the parser later). */
  readonly contentType: string | undefined;
  readonly digest: Digest;
}

/** A manifest to PUT under a tag or digest. */
export interface ManifestUpload {
  /** Tag or digest. */
  readonly reference: string;
  readonly bytes: Buffer;
  readonly mediaType: string;
  readonly signal?: AbortSignal | undefined;
}

type SignalOption = { readonly signal?: AbortSignal | undefined };

/**
 * A client of the OCI distribution API (distribution-spec v1.1) over undici: the operations,
 * each a few lines on top of its layer: the HTTP exchange and auth (transport.ts), resumable
 * downloads (download.ts), the upload session (upload.ts).
 *
 * One instance per command: it keeps connections alive, caches each registry's endpoint
 * (scheme and auth challenge) and tokens per scope set (see RegistryTransport).
 */
export class RegistryClient {
  readonly #http: RegistryTransport;

  constructor(opts: RegistryClientOptions = {}) {
    this.#http = new RegistryTransport(opts);
  }

  /**
   * Starts the first exchange with `registry` (its endpoint: scheme and auth) without waiting
   * for it: the requests that follow find it under way or done. Failures are theirs to report.
   */
  prepare(registry: string, opts: SignalOption = {}): void {
    this.#http.prepare(registry, opts.signal);
  }

  /** Close all connections. */
  async close(): Promise<void> {
    await this.#http.close();
  }

  /**
   * Check credentials against a registry (`tsbuild login`): a token with no scope from the
   * token server, or `GET /v2/` with Basic. Throws REGISTRY_UNAUTHORIZED when refused.
   */
  async checkCredentials(registry: string, opts: SignalOption = {}): Promise<void> {
    await this.#http.checkCredentials(registry, opts);
  }

  // ---- manifests ----------------------------------------------------------------------------

  /**
   * GET a manifest or index by tag or digest, with the Accept header for OCI and Docker
   * schema 2 types (schema 1 is never asked for). Size capped (MAX_MANIFEST_BYTES); the digest
   * is checked against the reference's digest, or the Docker-Content-Digest header when
   * fetched by tag; bytes that do not match are fetched again, within the retry budget.
   */
  async getManifest(ref: Reference, opts: SignalOption & { readonly what?: string } = {}): Promise<FetchedManifest> {
    const reference = ref.digest ?? ref.tag ?? 'latest';
    const what = opts.what ?? `manifest ${ref.registry}/${ref.repository}${ref.digest !== undefined ? `@${ref.digest}` : `:${reference}`}`;
    const ctx: ExchangeContext = { what, registry: ref.registry };
    return this.#http.fetch(
      {
        repo: ref,
        method: 'GET',
        target: `/v2/${ref.repository}/manifests/${reference}`,
        headers: { accept: MANIFEST_ACCEPT.join(', ') },
        actions: ['pull'],
        expect: [200],
        what,
        followRedirects: true,
        signal: opts.signal,
      },
      async (res) => {
        const bytes = await readCapped(res, MAX_MANIFEST_BYTES, ctx);
        const headerDigest = header(res.headers, 'docker-content-digest');
        const expected = ref.digest ?? (headerDigest !== undefined && isDigest(headerDigest) ? headerDigest : undefined);
        const digest = digestBytes(bytes, expected !== undefined ? digestAlgorithm(expected) : 'sha256');
        if (expected !== undefined && digest !== expected) {
          throw new RegistryError('DIGEST_MISMATCH', `${what}: the registry sent bytes with digest ${digest}, expected ${expected} (registry ${ref.registry})`, {
            temporary: true,
            hint: 'the manifest was corrupted in transit or the registry is serving wrong content',
          });
        }
        return { bytes, contentType: header(res.headers, 'content-type'), digest: digestBytes(bytes, 'sha256') };
      },
    );
  }

  /** PUT a manifest under a tag or digest; returns its digest (checked against the registry's). */
  async putManifest(repo: Repository, m: ManifestUpload): Promise<Digest> {
    const digest = digestBytes(m.bytes, 'sha256');
    const what = `manifest ${repo.registry}/${repo.repository}:${m.reference}`;
    const res = await this.#http.request({
      repo,
      method: 'PUT',
      target: `/v2/${repo.repository}/manifests/${m.reference}`,
      headers: { 'content-type': m.mediaType },
      body: () => m.bytes,
      actions: ['pull', 'push'],
      expect: [200, 201, 202],
      what,
      signal: m.signal,
    });
    await res.body.dump();
    const served = header(res.headers, 'docker-content-digest');
    if (served !== undefined && served !== digest) {
      throw protocolError(`the registry stored the manifest as ${served}, but its bytes have digest ${digest}`, { what, registry: repo.registry });
    }
    return digest;
  }

  // ---- blobs --------------------------------------------------------------------------------

  /** HEAD a blob: its size if the repository has it, else undefined. */
  async blobSize(repo: Repository, digest: Digest, opts: SignalOption & { /** Part of a push: ask for the push token, so one token serves the session. */ readonly forPush?: boolean } = {}): Promise<number | undefined> {
    const res = await this.#http.request({
      repo,
      method: 'HEAD',
      target: `/v2/${repo.repository}/blobs/${digest}`,
      actions: opts.forPush === true ? ['pull', 'push'] : ['pull'],
      expect: [200, 404],
      what: `blob ${digest} of ${repo.registry}/${repo.repository}`,
      followRedirects: true,
      signal: opts.signal,
    });
    await res.body.dump();
    if (res.status === 404) return undefined;
    const len = header(res.headers, 'content-length');
    return len !== undefined && /^\d+$/.test(len) ? Number(len) : -1;
  }

  /** Download a blob, verified while it streams, into what `into` stores (see download.ts). */
  async downloadBlob<T>(d: BlobDownload, into: (bytes: Readable) => Promise<T>): Promise<T> {
    return downloadBlob(this.#http, d, into);
  }

  /**
   * Cross-repository mount: true when the registry mounted the blob; false when it would not
   * (the upload session it opened instead is cancelled).
   */
  async mountBlob(repo: Repository, m: SignalOption & { readonly digest: Digest; readonly from: string }): Promise<boolean> {
    const what = `blob ${m.digest} to ${repo.registry}/${repo.repository} (mount from ${m.from})`;
    const got = await mountOrOpen(this.#http, { repo, digest: m.digest, from: m.from, what, signal: m.signal });
    if (!got.mounted) await cancelSession(this.#http, { repo, session: got.session, what, signal: m.signal });
    return got.mounted;
  }

  /** Upload a blob unless a mount gives it (see upload.ts). */
  async uploadBlob(u: BlobUpload): Promise<UploadResult> {
    return uploadBlob(this.#http, u);
  }

  /** Upload a stream whose digest is known only at its end, falling back to its stored copy (see upload.ts). */
  async uploadStreamed(repo: Repository, s: Omit<StreamedUpload, 'repo'>): Promise<{ digest: Digest; size: number }> {
    return uploadStreamed(this.#http, { repo, ...s });
  }
}

async function readCapped(res: Response, max: number, ctx: ExchangeContext): Promise<Buffer> {
  const len = header(res.headers, 'content-length');
  if (len !== undefined && Number(len) > max) {
    res.body.destroy();
    throw new TsbuildError('MANIFEST_INVALID', `${ctx.what} is ${len} bytes, over the ${max}-byte limit (registry ${ctx.registry})`, {
      hint: 'no image manifest should be this large; check the reference',
    });
  }
  const chunks: Buffer[] = [];
  let n = 0;
  try {
    for await (const c of res.body as AsyncIterable<Buffer>) {
      n += c.byteLength;
      if (n > max) {
        res.body.destroy();
        throw new TsbuildError('MANIFEST_INVALID', `${ctx.what} is over the ${max}-byte limit (registry ${ctx.registry})`);
      }
      chunks.push(c);
    }
  } catch (e) {
    throw transportError(e, ctx);
  }
  return Buffer.concat(chunks);
}
