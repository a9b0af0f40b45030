import { rootCertificates } from 'node:tls';
import type { Readable } from 'node:stream';
import { Agent, type Dispatcher } from 'undici';
import type { Logger } from 'pino';
import { TsbuildError } from '../errors.js';
import {
  MANIFEST_ACCEPT,
  MAX_MANIFEST_BYTES,
  digestAlgorithm,
  digestBytes,
  isDigest,
  isLoopbackRegistry,
  normalizeRegistry,
  registryApiHost,
  type Digest,
  type Reference,
} from '../oci/index.js';
import { Authenticator, header, readText } from './auth.js';
import { parseChallenges, type Challenge } from './challenge.js';
import type { CredentialSource } from './credentials.js';
import { RegistryError, isTemporary, protocolError, responseError, transportError, type ExchangeContext } from './errors.js';
import { DEFAULT_RETRY_POLICY, sleep, retryDelayMs, withRetries, type RetryPolicy } from './retry.js';

/** A repository on a registry (a Reference without tag or digest). */
export interface Repository {
  readonly registry: string;
  readonly repository: string;
}

export interface RegistryClientOptions {
  /** Where credentials come from (the CLI builds this from the environment). */
  readonly credentials?: CredentialSource;
  /** Hosts (host[:port]) spoken to without TLS verification, falling back to plain HTTP. */
  readonly insecureRegistries?: readonly string[];
  /** Extra CA certificates (PEM) trusted besides Node's bundled roots. */
  readonly caCertificates?: readonly string[];
  readonly logger?: Logger;
  readonly retry?: Partial<RetryPolicy>;
  readonly userAgent?: string;
  /** Connections per origin (keep-alive pool). Default 8. */
  readonly connectionsPerOrigin?: number;
  /** Timeout for response headers and between body chunks. Default 60 s. */
  readonly timeoutMs?: number;
  /** The clock for token expiry (tests). Default Date.now. */
  readonly now?: () => number;
}

/** A manifest or index as fetched: its exact bytes, media type and digest. */
export interface FetchedManifest {
  readonly bytes: Buffer;
  /** Content-Type as served (normalised by the parser later). */
  readonly contentType: string | undefined;
  readonly digest: Digest;
}

/** Reads bytes [start, end) of a blob (uploads read windows of it, and resume). */
export type BlobSource = (start: number, end: number, signal?: AbortSignal) => Promise<Readable>;

export interface UploadOptions {
  readonly signal?: AbortSignal | undefined;
  /** PATCH in chunks of this many bytes; undefined = one monolithic PUT. */
  readonly chunkSize?: number | undefined;
  /** Repositories of the same registry that have the blob: tried as cross-repository mounts. */
  readonly mountFrom?: readonly string[];
  readonly onBytes?: (n: number) => void;
}

export type UploadResult = 'uploaded' | 'mounted' | 'exists';

interface Endpoint {
  readonly registry: string;
  readonly origin: string;
  readonly secure: boolean;
  readonly dispatcher: Dispatcher;
  /** The auth challenge, from the ping or the first 401. */
  challenge: Challenge | undefined;
}

interface Exchange {
  readonly repo: Repository;
  readonly method: 'GET' | 'HEAD' | 'PUT' | 'POST' | 'PATCH' | 'DELETE';
  /** Path under the endpoint origin, or an absolute URL (upload Location). */
  readonly target: string | URL;
  readonly headers?: Record<string, string>;
  /** A new body for each attempt. */
  readonly body?: () => Promise<Readable | Buffer | string | null> | Readable | Buffer | string | null;
  readonly actions: readonly ('pull' | 'push')[];
  /** More scopes (the source repository of a mount). */
  readonly extraScopes?: readonly string[];
  readonly expect: readonly number[];
  readonly what: string;
  readonly followRedirects?: boolean;
  readonly signal?: AbortSignal | undefined;
}

export interface Response {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly body: Dispatcher.ResponseData['body'];
  /** The URL that answered (after redirects). */
  readonly url: URL;
}

const MAX_REDIRECTS = 5;
const MAX_ERROR_BODY = 64 * 1024;
const REDIRECTS = new Set([301, 302, 303, 307, 308]);

/**
 * A client of the OCI distribution API (distribution-spec v1.1) over undici.
 *
 * One instance per command: it keeps connections alive, caches each registry's endpoint
 * (scheme and auth challenge) and tokens per scope set. Loopback registries and those named
 * in `insecureRegistries` are tried over HTTPS without verification, then plain HTTP, as
 * Docker does; others need verified TLS (Node's roots plus `caCertificates`).
 */
export class RegistryClient {
  readonly #secure: Agent;
  readonly #insecure: Agent;
  readonly #insecureHosts: ReadonlySet<string>;
  readonly #endpoints = new Map<string, Promise<Endpoint>>();
  readonly #auth: Authenticator;
  readonly #logger: Logger | undefined;
  readonly retry: RetryPolicy;
  readonly #userAgent: string;

  constructor(opts: RegistryClientOptions = {}) {
    const timeout = opts.timeoutMs ?? 60_000;
    const common = { connections: opts.connectionsPerOrigin ?? 8, keepAliveTimeout: 30_000, headersTimeout: timeout, bodyTimeout: timeout };
    const ca = opts.caCertificates && opts.caCertificates.length > 0 ? [...rootCertificates, ...opts.caCertificates] : undefined;
    this.#secure = new Agent({ ...common, connect: { ...(ca ? { ca } : {}), rejectUnauthorized: true, timeout: 30_000 } });
    this.#insecure = new Agent({ ...common, connect: { rejectUnauthorized: false, timeout: 30_000 } });
    // `http://host:5000/` and `host:5000` name the same registry.
    this.#insecureHosts = new Set((opts.insecureRegistries ?? []).map((h) => normalizeRegistry(h.trim().toLowerCase().replace(/^[a-z]+:\/\//, '').replace(/\/.*$/, ''))));
    this.#logger = opts.logger;
    this.retry = { ...DEFAULT_RETRY_POLICY, ...opts.retry };
    this.#userAgent = opts.userAgent ?? 'tsbuild';
    this.#auth = new Authenticator({
      credentials: opts.credentials,
      logger: opts.logger,
      retry: this.retry,
      userAgent: this.#userAgent,
      now: opts.now ?? Date.now,
      dispatcherFor: (url, registrySecure) => {
        const insecureHost = this.#isInsecure(url.host);
        const allowed = url.protocol === 'https:' || !registrySecure || insecureHost;
        return { dispatcher: url.protocol === 'https:' && !insecureHost ? this.#secure : this.#insecure, allowed };
      },
    });
  }

  /** Close all connections. */
  async close(): Promise<void> {
    await Promise.all([this.#secure.close(), this.#insecure.close()]);
  }

  #isInsecure(host: string): boolean {
    return isLoopbackRegistry(host) || this.#insecureHosts.has(normalizeRegistry(host.toLowerCase()));
  }

  // ---- endpoint discovery -------------------------------------------------------------------

  /** `GET /v2/`: which scheme the registry speaks and how it wants to be authenticated. */
  ping(registry: string, opts: { readonly signal?: AbortSignal | undefined; /** Names the operation in errors. */ readonly what?: string } = {}): Promise<Endpoint> {
    const key = normalizeRegistry(registry);
    let p = this.#endpoints.get(key);
    if (p === undefined) {
      p = withRetries(this.retry, () => this.#discover(key, opts.what ?? `registry ${key}`, opts.signal), { signal: opts.signal, onRetry: this.#onRetry('ping', key) });
      this.#endpoints.set(key, p);
      p.catch(() => {
        if (this.#endpoints.get(key) === p) this.#endpoints.delete(key);
      });
    }
    return p;
  }

  async #discover(registry: string, what: string, signal: AbortSignal | undefined): Promise<Endpoint> {
    const host = registryApiHost(registry);
    const ctx: ExchangeContext = { what, registry };
    if (!this.#isInsecure(host)) return this.#pingOrigin(registry, `https://${host}`, true, this.#secure, ctx, signal);
    try {
      return await this.#pingOrigin(registry, `https://${host}`, false, this.#insecure, ctx, signal);
    } catch (e) {
      // As Docker does for insecure registries: HTTPS first, then plain HTTP when the TLS
      // attempt produced no HTTP response at all.
      if (!(e instanceof RegistryError) || e.status !== undefined) throw e;
      this.#logger?.debug({ registry }, 'registry does not speak TLS; using plain HTTP');
      return this.#pingOrigin(registry, `http://${host}`, false, this.#insecure, ctx, signal);
    }
  }

  async #pingOrigin(registry: string, origin: string, secure: boolean, dispatcher: Dispatcher, ctx: ExchangeContext, signal: AbortSignal | undefined): Promise<Endpoint> {
    let res: Dispatcher.ResponseData;
    try {
      res = await dispatcher.request({ origin, path: '/v2/', method: 'GET', headers: { 'user-agent': this.#userAgent }, ...(signal ? { signal } : {}) });
    } catch (e) {
      throw transportError(e, ctx);
    }
    const text = await readText(res, MAX_ERROR_BODY, ctx);
    if (res.statusCode === 200) return { registry, origin, secure, dispatcher, challenge: undefined };
    if (res.statusCode === 401) {
      const challenges = parseChallenges(res.headers['www-authenticate']);
      const challenge = challenges.find((c) => c.scheme === 'bearer') ?? challenges.find((c) => c.scheme === 'basic');
      return { registry, origin, secure, dispatcher, challenge };
    }
    if (res.statusCode === 404) {
      throw protocolError('GET /v2/ answered 404: this is not an OCI distribution (Docker registry v2) server', ctx);
    }
    throw responseError(res.statusCode, text, header(res.headers, 'retry-after'), ctx);
  }

  /**
   * Check credentials against a registry (`tsbuild login`): a token with no scope from the
   * token server, or `GET /v2/` with Basic. Throws REGISTRY_UNAUTHORIZED when refused.
   */
  async checkCredentials(registry: string, opts: { readonly signal?: AbortSignal | undefined } = {}): Promise<void> {
    const ctx: ExchangeContext = { what: `login to ${registry}`, registry };
    const ep = await this.ping(registry, { ...opts, what: ctx.what });
    if (ep.challenge === undefined) return;
    const auth = await this.#auth.authorization(ep.challenge, registry, ep.secure, [], { signal: opts.signal, fresh: true });
    if (ep.challenge.scheme !== 'basic') return;
    let res: Dispatcher.ResponseData;
    try {
      res = await ep.dispatcher.request({
        origin: ep.origin,
        path: '/v2/',
        method: 'GET',
        headers: { 'user-agent': this.#userAgent, ...(auth !== undefined ? { authorization: auth } : {}) },
        ...(opts.signal ? { signal: opts.signal } : {}),
      });
    } catch (e) {
      throw transportError(e, ctx);
    }
    const text = await readText(res, MAX_ERROR_BODY, ctx);
    if (res.statusCode !== 200) throw responseError(res.statusCode, text, header(res.headers, 'retry-after'), ctx);
  }

  // ---- the exchange: auth, redirects, the error gate ----------------------------------------

  /** One request with retries on temporary failures. The caller consumes `body`. */
  async #request(ex: Exchange): Promise<Response> {
    return withRetries(this.retry, () => this.#exchange(ex), { signal: ex.signal, onRetry: this.#onRetry(ex.method, ex.what) });
  }

  #onRetry(method: string, what: string) {
    return (err: unknown, retry: number, waitMs: number): void => {
      const e = err as { code?: unknown; status?: unknown };
      this.#logger?.info({ method, what, code: e.code, status: e.status, retry, waitMs }, 'registry request failed; retrying');
    };
  }

  /** One attempt: authorises (re-authorising once on 401), follows redirects, checks the status. */
  async #exchange(ex: Exchange): Promise<Response> {
    const ep = await this.ping(ex.repo.registry, { signal: ex.signal, what: ex.what });
    const ctx: ExchangeContext = { what: ex.what, registry: ex.repo.registry };
    const scopes = [`repository:${ex.repo.repository}:${ex.actions.join(',')}`, ...(ex.extraScopes ?? [])];
    let url = typeof ex.target === 'string' ? new URL(ex.target, ep.origin) : ex.target;
    let fresh = false;
    let reauthorised = false;
    let crossHost = false;
    let method = ex.method;
    let redirects = 0;
    for (;;) {
      // Credentials go to the registry's own origin only: never to another host, whether we were
      // redirected there or an upload Location names it.
      if (url.origin !== ep.origin) crossHost = true;
      const auth: string | undefined = crossHost ? undefined : await this.#authorize(ep, ex, scopes, fresh);
      const headers: Record<string, string> = { 'user-agent': this.#userAgent, ...ex.headers };
      if (auth !== undefined) headers['authorization'] = auth;
      const body = ex.body === undefined || redirects > 0 ? null : await ex.body();
      const dispatcher = crossHost ? (url.protocol === 'https:' && !this.#isInsecure(url.host) ? this.#secure : this.#insecure) : ep.dispatcher;
      let res: Dispatcher.ResponseData;
      try {
        res = await dispatcher.request({
          origin: url.origin,
          path: url.pathname + url.search,
          method,
          headers,
          body,
          ...(ex.signal ? { signal: ex.signal } : {}),
        });
      } catch (e) {
        if (body !== null && typeof body === 'object' && 'destroy' in body) body.destroy();
        throw transportError(e, ctx);
      }
      this.#logger?.debug({ method, registry: ex.repo.registry, path: url.pathname, status: res.statusCode }, 'registry request');
      this.#surfaceWarnings(ex.repo.registry, res.headers['warning']);
      const status = res.statusCode;
      if (ex.expect.includes(status)) return { status, headers: res.headers, body: res.body, url };

      if (status === 401 && !crossHost) {
        const text = await readText(res, MAX_ERROR_BODY, ctx);
        const challenges = parseChallenges(res.headers['www-authenticate']);
        // GCR answers 401 without WWW-Authenticate on real requests: reuse the ping's challenge.
        const challenge = challenges.find((c) => c.scheme === 'bearer') ?? challenges.find((c) => c.scheme === 'basic') ?? ep.challenge;
        const hadAuth: boolean = auth !== undefined;
        if (!reauthorised && challenge !== undefined) {
          reauthorised = true;
          if (ep.challenge === undefined || ep.challenge.scheme !== challenge.scheme || ep.challenge.params['realm'] !== challenge.params['realm']) {
            ep.challenge = challenge;
          }
          const more = challenge.params['scope'];
          if (more !== undefined && more !== '') for (const s of more.split(' ')) if (!scopes.includes(s)) scopes.push(s);
          fresh = hadAuth;
          const next = await this.#authorize(ep, ex, scopes, fresh);
          if (next !== undefined) continue;
        }
        if (hadAuth && challenge?.params['error'] === 'insufficient_scope') {
          const cred = await this.#auth.credentialFor(ex.repo.registry, ex.signal);
          throw new RegistryError('REGISTRY_DENIED', `${ex.what}: access denied: the registry did not grant ${scopes[0] ?? 'access'} (registry ${ex.repo.registry}, HTTP 401)`, {
            temporary: false,
            status,
            hint: cred === undefined ? `log in with \`tsbuild login ${ex.repo.registry}\`` : 'the logged-in user is not allowed to do this; check the repository name and your permissions',
          });
        }
        throw responseError(status, text, undefined, ctx);
      }

      if (REDIRECTS.has(status) && ex.followRedirects === true) {
        await res.body.dump();
        const location = header(res.headers, 'location');
        if (location === undefined) throw protocolError(`redirect (HTTP ${status}) without a Location header`, ctx, true);
        if (++redirects > MAX_REDIRECTS) throw protocolError('too many redirects', ctx);
        const next = new URL(location, url);
        if (next.protocol !== 'https:' && next.protocol !== 'http:') throw protocolError('redirect to a non-HTTP URL', ctx);
        if (ep.secure && next.protocol === 'http:' && !this.#isInsecure(next.host)) throw protocolError('redirect from HTTPS to plain HTTP refused', ctx);
        // Never forward the registry's Authorization across host boundaries (distribution spec,
        // "API"; S3 presigned URLs reject a second auth mechanism): see the top of the loop.
        url = next;
        if (status === 303) method = 'GET';
        continue;
      }

      const text = method === 'HEAD' ? (await res.body.dump(), '') : await readText(res, MAX_ERROR_BODY, ctx);
      throw responseError(status, text, header(res.headers, 'retry-after'), ctx);
    }
  }

  /** The Authorization for an exchange; a refusal by the token server names what was asked for. */
  async #authorize(ep: Endpoint, ex: Exchange, scopes: readonly string[], fresh: boolean): Promise<string | undefined> {
    try {
      return await this.#auth.authorization(ep.challenge, ex.repo.registry, ep.secure, scopes, { signal: ex.signal, fresh });
    } catch (e) {
      // Token errors are shared by every request waiting for the same token: say which one this is.
      if (!(e instanceof RegistryError) || e.message.startsWith(`${ex.what}:`)) throw e;
      throw new RegistryError(e.code, `${ex.what}: ${e.message}`, {
        temporary: e.temporary,
        status: e.status,
        retryAfterMs: e.retryAfterMs,
        registryCodes: e.registryCodes,
        hint: e.hint,
        cause: e,
      });
    }
  }

  readonly #warned = new Set<string>();

  /** `Warning: 299 - "text"` headers (distribution spec, "warnings"): logged once each. */
  #surfaceWarnings(registry: string, value: string | string[] | undefined): void {
    if (value === undefined || this.#logger === undefined) return;
    for (const v of Array.isArray(value) ? value : [value]) {
      const m = /^\s*299\s+\S+\s+"((?:[^"\\]|\\.)*)"/.exec(v);
      if (m === null) continue;
      const text = (m[1] ?? '').slice(0, 1000);
      if (this.#warned.has(text)) continue;
      this.#warned.add(text);
      this.#logger.warn({ registry, warning: text }, 'registry warning');
    }
  }

  // ---- manifests ----------------------------------------------------------------------------

  /**
   * GET a manifest or index by tag or digest, with the Accept header for OCI and Docker
   * schema 2 types (schema 1 is never asked for). Size capped (MAX_MANIFEST_BYTES); the digest
   * is checked against the reference's digest, or the Docker-Content-Digest header when
   * fetched by tag.
   */
  async getManifest(ref: Reference, opts: { readonly signal?: AbortSignal | undefined; readonly what?: string } = {}): Promise<FetchedManifest> {
    const reference = ref.digest ?? ref.tag ?? 'latest';
    const what = opts.what ?? `manifest ${ref.registry}/${ref.repository}${ref.digest !== undefined ? `@${ref.digest}` : `:${reference}`}`;
    const ctx: ExchangeContext = { what, registry: ref.registry };
    return withRetries(
      this.retry,
      async () => {
        const res = await this.#exchange({
          repo: ref,
          method: 'GET',
          target: `/v2/${ref.repository}/manifests/${reference}`,
          headers: { accept: MANIFEST_ACCEPT.join(', ') },
          actions: ['pull'],
          expect: [200],
          what,
          followRedirects: true,
          signal: opts.signal,
        });
        const bytes = await readCapped(res, MAX_MANIFEST_BYTES, what, ctx);
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
      { signal: opts.signal, onRetry: this.#onRetry('GET', what) },
    );
  }

  /** HEAD a manifest: its digest and size if it exists, else undefined. */
  async headManifest(ref: Reference, opts: { readonly signal?: AbortSignal | undefined } = {}): Promise<{ digest: Digest | undefined; size: number | undefined; contentType: string | undefined } | undefined> {
    const reference = ref.digest ?? ref.tag ?? 'latest';
    const res = await this.#request({
      repo: ref,
      method: 'HEAD',
      target: `/v2/${ref.repository}/manifests/${reference}`,
      headers: { accept: MANIFEST_ACCEPT.join(', ') },
      actions: ['pull'],
      expect: [200, 404],
      what: `manifest ${ref.registry}/${ref.repository}:${reference}`,
      followRedirects: true,
      signal: opts.signal,
    });
    await res.body.dump();
    if (res.status === 404) return undefined;
    const d = header(res.headers, 'docker-content-digest');
    const len = header(res.headers, 'content-length');
    return { digest: d !== undefined && isDigest(d) ? d : undefined, size: len !== undefined ? Number(len) : undefined, contentType: header(res.headers, 'content-type') };
  }

  /** PUT a manifest under a tag or digest; returns its digest (checked against the registry's). */
  async putManifest(repo: Repository, reference: string, bytes: Buffer, mediaType: string, opts: { readonly signal?: AbortSignal | undefined } = {}): Promise<Digest> {
    const digest = digestBytes(bytes, 'sha256');
    const what = `manifest ${repo.registry}/${repo.repository}:${reference}`;
    const res = await this.#request({
      repo,
      method: 'PUT',
      target: `/v2/${repo.repository}/manifests/${reference}`,
      headers: { 'content-type': mediaType },
      body: () => bytes,
      actions: ['pull', 'push'],
      expect: [200, 201, 202],
      what,
      signal: opts.signal,
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
  async blobSize(
    repo: Repository,
    digest: Digest,
    opts: { readonly signal?: AbortSignal | undefined; /** Part of a push: ask for the push token, so one token serves the session. */ readonly forPush?: boolean } = {},
  ): Promise<number | undefined> {
    const res = await this.#request({
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

  /**
   * The bytes of a blob as chunks, resuming with a Range request after a broken or truncated
   * transfer (bounded by the retry policy). Does not verify: hand the chunks to
   * `store.blobs.putBlob` with the expected digest, which does.
   */
  async *blobChunks(
    repo: Repository,
    digest: Digest,
    size: number,
    opts: { readonly signal?: AbortSignal | undefined; readonly onBytes?: (n: number) => void; /** Names the blob in errors (default `blob DIGEST of REGISTRY/REPOSITORY`). */ readonly what?: string } = {},
  ): AsyncGenerator<Buffer> {
    const what = opts.what ?? `blob ${digest} of ${repo.registry}/${repo.repository}`;
    const ctx: ExchangeContext = { what, registry: repo.registry };
    let offset = 0;
    let offsetAtFailure = 0;
    for (let attempt = 1; ; attempt++) {
      let res: Response | undefined;
      try {
        res = await this.#exchange({
          repo,
          method: 'GET',
          target: `/v2/${repo.repository}/blobs/${digest}`,
          headers: offset > 0 ? { range: `bytes=${offset}-` } : {},
          actions: ['pull'],
          expect: [200, 206],
          what,
          followRedirects: true,
          signal: opts.signal,
        });
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
        try {
          for await (const c of res.body as AsyncIterable<Buffer>) {
            let chunk = c;
            if (skip > 0) {
              const n = Math.min(skip, chunk.byteLength);
              skip -= n;
              chunk = chunk.subarray(n);
              if (chunk.byteLength === 0) continue;
            }
            offset += chunk.byteLength;
            opts.onBytes?.(chunk.byteLength);
            yield chunk;
          }
        } catch (e) {
          throw transportError(e, ctx);
        }
        if (offset < size) throw protocolError(`the transfer ended after ${offset} of ${size} bytes`, ctx, true);
        return;
      } catch (e) {
        res?.body.destroy();
        // The budget bounds failures in a row: a transfer that progressed starts afresh.
        if (offset > offsetAtFailure) attempt = 1;
        offsetAtFailure = offset;
        const wait = retryDelayMs(this.retry, attempt, e);
        if (wait === undefined) throw e;
        this.#onRetry('GET', what)(e, attempt, wait);
        await sleep(wait, opts.signal);
      } finally {
        res?.body.destroy();
      }
    }
  }

  /**
   * Cross-repository mount (`POST ?mount=&from=`): true when the registry mounted the blob
   * (201). A 202 means it would not; the upload session it opened is cancelled.
   */
  async mountBlob(repo: Repository, digest: Digest, from: string, opts: { readonly signal?: AbortSignal | undefined } = {}): Promise<boolean> {
    const what = `blob ${digest} to ${repo.registry}/${repo.repository} (mount from ${from})`;
    const res = await this.#request({
      repo,
      method: 'POST',
      target: `/v2/${repo.repository}/blobs/uploads/?mount=${encodeURIComponent(digest)}&from=${encodeURIComponent(from)}`,
      headers: { 'content-length': '0' },
      actions: ['pull', 'push'],
      extraScopes: [`repository:${from}:pull`],
      expect: [201, 202],
      what,
      signal: opts.signal,
    });
    await res.body.dump();
    if (res.status === 201) return true;
    const loc = header(res.headers, 'location');
    if (loc !== undefined) {
      // distribution spec, "cancel a blob upload": SHOULD be sent, failures ignored.
      await this.#exchange({ repo, method: 'DELETE', target: new URL(loc, res.url), actions: ['pull', 'push'], expect: [204, 200, 202, 404], what, signal: opts.signal })
        .then((r) => r.body.dump())
        .catch(() => undefined);
    }
    return false;
  }

  /**
   * Upload a blob unless the repository has it: try mounting it from `mountFrom`, else POST a
   * session and PUT it whole, or PATCH it in `chunkSize` chunks (resuming from the Range the
   * registry reports after a failure). Location headers may be relative.
   */
  async uploadBlob(repo: Repository, digest: Digest, size: number, source: BlobSource, opts: UploadOptions = {}): Promise<UploadResult> {
    const what = `blob ${digest} to ${repo.registry}/${repo.repository}`;
    const ctx: ExchangeContext = { what, registry: repo.registry };
    let session: URL | undefined;
    for (const from of opts.mountFrom ?? []) {
      if (from === repo.repository) continue;
      const res = await this.#request({
        repo,
        method: 'POST',
        target: `/v2/${repo.repository}/blobs/uploads/?mount=${encodeURIComponent(digest)}&from=${encodeURIComponent(from)}`,
        headers: { 'content-length': '0' },
        actions: ['pull', 'push'],
        extraScopes: [`repository:${from}:pull`],
        expect: [201, 202],
        what,
        signal: opts.signal,
      });
      await res.body.dump();
      if (res.status === 201) return 'mounted';
      session = locationOf(res, ctx);
    }
    // The budget bounds failures in a row: a chunked attempt that got chunks accepted before it
    // failed starts the count afresh (as downloads do), within an overall cap on sessions.
    let streak = 0;
    const maxSessions = this.retry.attempts * 3;
    for (let sessions = 1; ; sessions++) {
      const progress = { accepted: 0 };
      try {
        let minChunk: number | undefined;
        if (session === undefined) ({ url: session, minChunk } = await this.#openSession(repo, what, opts.signal));
        if (opts.chunkSize !== undefined && opts.chunkSize > 0) {
          // OCI-Chunk-Min-Length (distribution spec v1.1): chunks smaller than this are refused.
          await this.#chunked(repo, session, digest, size, source, Math.max(opts.chunkSize, minChunk ?? 0), ctx, opts, progress);
        } else {
          await this.#monolithic(repo, session, digest, size, source, ctx, opts);
        }
        return 'uploaded';
      } catch (e) {
        session = undefined;
        streak = progress.accepted > 0 ? 1 : streak + 1;
        // A lost session (the registry forgot or cancelled it) is worth a new one.
        const wait = sessions >= maxSessions ? undefined : retryDelayMs(this.retry, streak, sessionLost(e) ? asTemporary(e) : e);
        if (wait === undefined) throw e;
        this.#onRetry('PUT', what)(e, streak, wait);
        await sleep(wait, opts.signal);
        // The failed attempt may have landed (a lost response): do not upload twice.
        if ((await this.blobSize(repo, digest, { signal: opts.signal, forPush: true }).catch(() => undefined)) !== undefined) return 'exists';
      }
    }
  }

  /**
   * Upload a blob whose digest is known only once it has been produced (a layer compressed on
   * the fly): POST a session, PATCH the stream (chunked transfer, no Content-Range), then PUT
   * `?digest=` with what `finish` reports once the stream has ended. One attempt: a stream
   * cannot be replayed, so the caller falls back to `uploadBlob` from a stored copy.
   */
  async uploadStreamed(
    repo: Repository,
    body: Readable,
    finish: () => Promise<{ readonly digest: Digest; readonly size: number }>,
    opts: { readonly signal?: AbortSignal | undefined } = {},
  ): Promise<{ digest: Digest; size: number }> {
    const what = `blob to ${repo.registry}/${repo.repository}`;
    const ctx: ExchangeContext = { what, registry: repo.registry };
    const session = await this.#startUpload(repo, what, opts.signal);
    let used = false;
    const patched = await this.#exchange({
      repo,
      method: 'PATCH',
      target: session,
      headers: { 'content-type': 'application/octet-stream' },
      body: () => {
        if (used) throw new RegistryError('REGISTRY_PROTOCOL', `${what}: a streamed upload cannot be replayed`, { temporary: true });
        used = true;
        return body;
      },
      actions: ['pull', 'push'],
      expect: [202, 204],
      what,
      signal: opts.signal,
    });
    await patched.body.dump();
    const { digest, size } = await finish();
    const reported = rangeEnd(header(patched.headers, 'range'));
    if (reported !== undefined && reported + 1 !== size && size > 0) {
      throw protocolError(`the registry received ${reported + 1} of ${size} bytes`, ctx, true);
    }
    const url = new URL(locationOf(patched, ctx));
    url.searchParams.set('digest', digest);
    const res = await this.#exchange({
      repo,
      method: 'PUT',
      target: url,
      headers: { 'content-length': '0' },
      actions: ['pull', 'push'],
      expect: [201, 204],
      what: `blob ${digest} to ${repo.registry}/${repo.repository}`,
      signal: opts.signal,
    });
    await res.body.dump();
    checkUploadedDigest(res, digest, ctx);
    return { digest, size };
  }

  async #startUpload(repo: Repository, what: string, signal: AbortSignal | undefined): Promise<URL> {
    return (await this.#openSession(repo, what, signal)).url;
  }

  /** POST a new upload session; its URL and the registry's minimum chunk size, if it names one. */
  async #openSession(repo: Repository, what: string, signal: AbortSignal | undefined): Promise<{ url: URL; minChunk: number | undefined }> {
    const res = await this.#request({
      repo,
      method: 'POST',
      target: `/v2/${repo.repository}/blobs/uploads/`,
      headers: { 'content-length': '0' },
      actions: ['pull', 'push'],
      expect: [202],
      what,
      signal,
    });
    await res.body.dump();
    const min = header(res.headers, 'oci-chunk-min-length');
    return { url: locationOf(res, { what, registry: repo.registry }), minChunk: min !== undefined && /^\d+$/.test(min) ? Number(min) : undefined };
  }

  async #monolithic(repo: Repository, session: URL, digest: Digest, size: number, source: BlobSource, ctx: ExchangeContext, opts: UploadOptions): Promise<void> {
    const url = new URL(session);
    url.searchParams.set('digest', digest);
    const res = await this.#exchange({
      repo,
      method: 'PUT',
      target: url,
      headers: { 'content-type': 'application/octet-stream', 'content-length': String(size) },
      body: async () => counting(await source(0, size, opts.signal), opts.onBytes),
      actions: ['pull', 'push'],
      expect: [201, 204],
      what: ctx.what,
      signal: opts.signal,
    });
    await res.body.dump();
    checkUploadedDigest(res, digest, ctx);
  }

  async #chunked(
    repo: Repository,
    session: URL,
    digest: Digest,
    size: number,
    source: BlobSource,
    chunkSize: number,
    ctx: ExchangeContext,
    opts: UploadOptions,
    progress: { accepted: number },
  ): Promise<void> {
    let location = session;
    let offset = 0;
    let failures = 0;
    while (offset < size) {
      const end = Math.min(size, offset + chunkSize);
      try {
        const start = offset;
        const res = await this.#exchange({
          repo,
          method: 'PATCH',
          target: location,
          headers: { 'content-type': 'application/octet-stream', 'content-range': `${start}-${end - 1}`, 'content-length': String(end - start) },
          body: async () => counting(await source(start, end, opts.signal), opts.onBytes),
          actions: ['pull', 'push'],
          expect: [202, 204],
          what: ctx.what,
          signal: opts.signal,
        });
        await res.body.dump();
        location = locationOf(res, ctx);
        const reported = rangeEnd(header(res.headers, 'range'));
        offset = reported !== undefined && reported + 1 > start ? reported + 1 : end;
        failures = 0; // the budget bounds failures in a row, not over a long upload
        progress.accepted++;
      } catch (e) {
        if (!isTemporary(e) || ++failures >= this.retry.attempts) throw e;
        await sleep(retryDelayMs(this.retry, failures, e) ?? 0, opts.signal);
        // Ask the registry how much it has (distribution spec, "resuming an upload"). When the
        // failed PATCH did land, distribution refuses the now stale session state (and cancels
        // the upload): then the caller starts a new session.
        const status = await this.#request({
          repo,
          method: 'GET',
          target: location,
          actions: ['pull', 'push'],
          expect: [204],
          what: ctx.what,
          signal: opts.signal,
        }).catch((err: unknown) => {
          throw isTemporary(err) || sessionLost(err) ? asTemporary(err) : err;
        });
        await status.body.dump();
        const reported = rangeEnd(header(status.headers, 'range'));
        // "0-0" is ambiguous (nothing, or one byte: distribution reports both so): start over.
        if (reported === undefined || reported === 0) throw new RegistryError('REGISTRY_PROTOCOL', `${ctx.what}: cannot tell where to resume the upload`, { temporary: true, cause: e });
        location = locationOf(status, ctx);
        offset = reported + 1;
        this.#logger?.info({ what: ctx.what, offset }, 'resuming chunked upload');
      }
    }
    const url = new URL(location);
    url.searchParams.set('digest', digest);
    const res = await this.#exchange({
      repo,
      method: 'PUT',
      target: url,
      headers: { 'content-length': '0' },
      actions: ['pull', 'push'],
      expect: [201, 204],
      what: ctx.what,
      signal: opts.signal,
    });
    await res.body.dump();
    checkUploadedDigest(res, digest, ctx);
  }
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

async function readCapped(res: Response, max: number, what: string, ctx: ExchangeContext): Promise<Buffer> {
  const len = header(res.headers, 'content-length');
  if (len !== undefined && Number(len) > max) {
    res.body.destroy();
    throw new TsbuildError('MANIFEST_INVALID', `${what} is ${len} bytes, over the ${max}-byte limit (registry ${ctx.registry})`, {
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
        throw new TsbuildError('MANIFEST_INVALID', `${what} is over the ${max}-byte limit (registry ${ctx.registry})`);
      }
      chunks.push(c);
    }
  } catch (e) {
    throw transportError(e, ctx);
  }
  return Buffer.concat(chunks);
}

/** Report bytes as they are read (progress), without buffering. */
function counting(stream: Readable, onBytes: ((n: number) => void) | undefined): Readable {
  if (onBytes !== undefined) stream.on('data', (c: Buffer) => onBytes(c.byteLength));
  return stream;
}
