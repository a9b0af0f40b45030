import { createRequire } from 'node:module';
import type { Readable } from 'node:stream';
import type { Agent as UndiciAgent, Dispatcher } from 'undici';
import { Agent, DecoratorHandler, connector, undiciErrors } from './undici-agent.js';
import type { Logger } from 'pino';
import { isLoopbackRegistry, normalizeRegistry, registryApiHost } from '../oci/index.js';
import { deferredExtraCaCertificates, hasDeferredExtraCa } from '../host/index.js';
import { Authenticator, header, readText } from './auth.js';
import { parseChallenges, type Challenge } from './challenge.js';
import type { CredentialSource } from './credentials.js';
import { RegistryError, protocolError, responseError, transportError, type ExchangeContext } from './errors.js';
import { DEFAULT_RETRY_POLICY, RetryBudget, type RetryPolicy } from './retry.js';

/**
 * The HTTP exchange with a registry, and its auth: endpoint discovery (`GET /v2/`: scheme and
 * challenge), Basic and Bearer authorization (auth.ts), redirects (never carrying Authorization to
 * another host), the status gate (errors.ts) and the retries. Every request of the client goes
 * through `fetch`, whose loop is the one place a failed attempt is tried again: it reports each
 * failure to a RetryBudget, which reads the error's `temporary` flag and nothing else. Operations
 * made of several exchanges (a resumed download, an upload session) hand the same budget to each.
 */

/** A repository on a registry (a Reference without tag or digest). */
export interface Repository {
  readonly registry: string;
  readonly repository: string;
}

export interface TransportOptions {
  /** Where credentials come from (the CLI builds this from the environment). */
  readonly credentials?: CredentialSource | undefined;
  /** Hosts (host[:port]) spoken to without TLS verification, falling back to plain HTTP. */
  readonly insecureRegistries?: readonly string[] | undefined;
  /** Extra CA certificates (PEM) trusted besides Node's bundled roots. */
  readonly caCertificates?: readonly string[] | undefined;
  readonly logger?: Logger | undefined;
  readonly retry?: Partial<RetryPolicy> | undefined;
  readonly userAgent?: string | undefined;
  /** Connections per origin (keep-alive pool). Default 8. */
  readonly connectionsPerOrigin?: number | undefined;
  /**
   * The registry timeout (default 60 s, docs/design.md "Registry timeouts"): for the response
   * headers, between two body chunks, and the window of the low-speed limit (a body that brings
   * fewer than LOW_SPEED_BYTES_PER_S bytes a second over one window is ended).
   */
  readonly timeoutMs?: number | undefined;
  /** The clock for token expiry (tests). Default Date.now. */
  readonly now?: (() => number) | undefined;
}

interface Endpoint {
  readonly registry: string;
  readonly origin: string;
  readonly secure: boolean;
  readonly dispatcher: Dispatcher;
  /** The auth challenge, from the ping or the first 401. */
  challenge: Challenge | undefined;
}

/** One request as the operations describe it; the transport authorises, sends and checks it. */
export interface Exchange {
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
  /** Names the request in errors and logs: `manifest localhost:5000/app:v1`. */
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

/** The budget of the operation an exchange belongs to, and which of its steps the exchange is. */
export interface BudgetStep {
  readonly budget: RetryBudget;
  readonly step: string;
}

const MAX_REDIRECTS = 5;
/** The registry timeout (TransportOptions.timeoutMs). */
const DEFAULT_TIMEOUT_MS = 60_000;
const CONNECT_TIMEOUT_MS = 30_000;
/**
 * The low-speed limit: a response body that brings fewer bytes than this per second, over one
 * whole timeout window in which its reader never held it back, is ended as a temporary failure
 * (retried like a reset). undici's bodyTimeout only sees silence; a body that drips one byte
 * every few seconds is never silent for long, and would hold a pull for days (curl's
 * --speed-limit/--speed-time is the same rule).
 */
const LOW_SPEED_BYTES_PER_S = 1024;

/** An undici interceptor applying the low-speed limit to every response body. */
function lowSpeedLimit(windowMs: number): Dispatcher.DispatcherComposeInterceptor {
  return (dispatch) => (options, handler) => dispatch(options, new LowSpeedHandler(handler, windowMs));
}

type ControllerHandler = Required<Pick<Dispatcher.DispatchHandler, 'onRequestStart' | 'onRequestUpgrade' | 'onResponseStart' | 'onResponseData' | 'onResponseEnd' | 'onResponseError'>>;

class LowSpeedHandler implements Dispatcher.DispatchHandler {
  /** The reader's handler, in undici's controller form whatever form it was written in. */
  readonly #inner: ControllerHandler;
  readonly #windowMs: number;
  readonly #minBytes: number;
  #timer: NodeJS.Timeout | undefined;
  #bytes = 0;
  #heldBack = false;
  #controller: Dispatcher.DispatchController | undefined;
  #view: Dispatcher.DispatchController | undefined;

  constructor(handler: Dispatcher.DispatchHandler, windowMs: number) {
    this.#inner = new DecoratorHandler(handler) as unknown as ControllerHandler;
    this.#windowMs = windowMs;
    this.#minBytes = Math.ceil((LOW_SPEED_BYTES_PER_S * windowMs) / 1000);
  }

  /** The controller as the reader sees it: its pauses are noted (a held-back body is not slow). */
  #viewOf(c: Dispatcher.DispatchController): Dispatcher.DispatchController {
    if (this.#controller !== c || this.#view === undefined) {
      this.#controller = c;
      const note = (): void => {
        this.#heldBack = true;
      };
      this.#view = {
        get aborted() {
          return c.aborted;
        },
        get paused() {
          return c.paused;
        },
        get reason() {
          return c.reason;
        },
        get rawHeaders() {
          return c.rawHeaders;
        },
        get rawTrailers() {
          return c.rawTrailers;
        },
        abort: (reason: Error) => c.abort(reason),
        pause: () => {
          note();
          c.pause();
        },
        resume: () => c.resume(),
      };
    }
    return this.#view;
  }

  #stop(): void {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
  }

  onRequestUpgrade(controller: Dispatcher.DispatchController, statusCode: number, headers: Record<string, string | string[] | undefined>, socket: import('node:stream').Duplex): void {
    this.#inner.onRequestUpgrade(this.#viewOf(controller), statusCode, headers, socket);
  }

  onRequestStart(controller: Dispatcher.DispatchController, context: unknown): void {
    this.#inner.onRequestStart(this.#viewOf(controller), context);
  }

  onResponseStart(controller: Dispatcher.DispatchController, statusCode: number, headers: Record<string, string | string[] | undefined>, statusMessage?: string): void {
    this.#bytes = 0;
    this.#heldBack = false;
    this.#stop();
    this.#timer = setInterval(() => {
      const slow = !this.#heldBack && !controller.paused && this.#bytes < this.#minBytes;
      const got = this.#bytes;
      this.#bytes = 0;
      this.#heldBack = controller.paused;
      if (!slow) return;
      this.#stop();
      const secs = this.#windowMs / 1000;
      controller.abort(new undiciErrors.BodyTimeoutError(`response body too slow: ${got} bytes in ${secs} s, below ${LOW_SPEED_BYTES_PER_S} bytes/s`));
    }, this.#windowMs);
    this.#timer.unref();
    this.#inner.onResponseStart(this.#viewOf(controller), statusCode, headers, statusMessage);
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    this.#bytes += chunk.byteLength;
    this.#inner.onResponseData(this.#viewOf(controller), chunk);
  }

  onResponseEnd(controller: Dispatcher.DispatchController, trailers: Record<string, string | string[] | undefined>): void {
    this.#stop();
    this.#inner.onResponseEnd(this.#viewOf(controller), trailers);
  }

  onResponseError(controller: Dispatcher.DispatchController, error: Error): void {
    this.#stop();
    this.#inner.onResponseError(this.#viewOf(controller), error);
  }
}
const MAX_ERROR_BODY = 64 * 1024;
const REDIRECTS = new Set([301, 302, 303, 307, 308]);

/**
 * The `ca` of a verified TLS connection: undefined (Node's default store) unless the caller
 * names certificates or the launcher deferred NODE_EXTRA_CA_CERTS (host/extra-ca.ts); then
 * Node's roots, the deferred file's and the caller's. Read when the first verified connection
 * is made.
 */
function verifiedCa(extra: readonly string[]): string[] | undefined {
  if (extra.length === 0 && !hasDeferredExtraCa()) return undefined;
  return [...(createRequire(import.meta.url)('node:tls') as typeof import('node:tls')).rootCertificates, ...deferredExtraCaCertificates(), ...extra];
}

let fetchAgent: UndiciAgent | undefined;
/**
 * The dispatcher for fetch() of an https URL (ADD <url>, a remote build context) when the
 * launcher deferred NODE_EXTRA_CA_CERTS: fetch's own would not know those certificates.
 * undefined otherwise (fetch's default, which Node made with them).
 */
export function fetchDispatcher(): Dispatcher | undefined {
  if (!hasDeferredExtraCa()) return undefined;
  return (fetchAgent ??= new Agent({ connect: connector({ ca: verifiedCa([]), rejectUnauthorized: true }) }) as UndiciAgent);
}

/**
 * One per client: it keeps connections alive, caches each registry's endpoint (scheme and auth
 * challenge) and tokens per scope set. Those named in `insecureRegistries` are tried over
 * HTTPS without verification, then plain HTTP, as Docker does; loopback registries the other
 * way round (#discover says why); others need verified TLS (Node's roots plus
 * `caCertificates`).
 */
export class RegistryTransport {
  /** Verified TLS: made on first use (building it reads Node's root certificates). */
  #secureAgent: UndiciAgent | undefined;
  readonly #makeSecure: () => UndiciAgent;
  readonly #insecure: UndiciAgent;
  readonly #insecureHosts: ReadonlySet<string>;
  readonly #endpoints = new Map<string, Promise<Endpoint>>();
  readonly #auth: Authenticator;
  readonly #logger: Logger | undefined;
  readonly #policy: RetryPolicy;
  readonly #userAgent: string;
  readonly #warned = new Set<string>();
  /** Exchanges nobody waits for (an upload session cancelled when its blob turned out present): close() lets them end first. */
  readonly #tidying = new Set<Promise<unknown>>();

  constructor(opts: TransportOptions = {}) {
    const timeout = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    const common = { connections: opts.connectionsPerOrigin ?? 8, keepAliveTimeout: 30_000, headersTimeout: timeout, bodyTimeout: timeout };
    const extraCa = opts.caCertificates ?? [];
    const connectTimeout = Math.min(CONNECT_TIMEOUT_MS, timeout);
    // Every exchange (auth token requests too) goes through one of these two agents. The
    // verified one is made when an exchange first needs it: a push to a plain-HTTP registry
    // then loads no TLS module and no root certificates (node:tls loads on the first TLS
    // connection). Without verification no CA is consulted, so the insecure agent gets an empty
    // list instead of the default store, which OpenSSL would build from Node's roots on the first
    // TLS connection (an insecure registry is tried over HTTPS first).
    this.#makeSecure = () => {
      const ca = verifiedCa(extraCa);
      return new Agent({ ...common, connect: connector({ ...(ca ? { ca } : {}), rejectUnauthorized: true, timeout: connectTimeout }) }).compose(lowSpeedLimit(timeout)) as UndiciAgent;
    };
    this.#insecure = new Agent({ ...common, connect: connector({ ca: [], rejectUnauthorized: false, timeout: connectTimeout }) }).compose(lowSpeedLimit(timeout)) as UndiciAgent;
    // `http://host:5000/` and `host:5000` name the same registry.
    this.#insecureHosts = new Set((opts.insecureRegistries ?? []).map((h) => normalizeRegistry(h.trim().toLowerCase().replace(/^[a-z]+:\/\//, '').replace(/\/.*$/, ''))));
    this.#logger = opts.logger;
    this.#policy = { ...DEFAULT_RETRY_POLICY, ...opts.retry };
    this.#userAgent = opts.userAgent ?? 'tsbuild';
    this.#auth = new Authenticator({
      credentials: opts.credentials,
      logger: opts.logger,
      userAgent: this.#userAgent,
      now: opts.now ?? Date.now,
      dispatcherFor: (url, registrySecure) => {
        const insecureHost = this.#isInsecure(url.host);
        const allowed = url.protocol === 'https:' || !registrySecure || insecureHost;
        return { dispatcher: url.protocol === 'https:' && !insecureHost ? this.#secure : this.#insecure, allowed };
      },
    });
  }

  /** The attempts of the retry policy (an upload bounds its sessions by a multiple of it). */
  get attempts(): number {
    return this.#policy.attempts;
  }

  /** Close all connections, once the exchanges left to tidy up (see afterwards) have ended. */
  async close(): Promise<void> {
    await Promise.all(this.#tidying);
    await Promise.all([this.#secureAgent?.close(), this.#insecure.close()]);
  }

  /**
   * Work that nobody waits for and that must not fail anything (it is caught here): close()
   * waits for it, so no connection is cut under it and no request is left half-sent.
   */
  afterwards(work: Promise<unknown>): void {
    const p = work.then(
      () => undefined,
      () => undefined,
    );
    this.#tidying.add(p);
    void p.then(() => this.#tidying.delete(p));
  }

  get #secure(): UndiciAgent {
    return (this.#secureAgent ??= this.#makeSecure());
  }

  #isInsecure(host: string): boolean {
    return isLoopbackRegistry(host) || this.#insecureHosts.has(normalizeRegistry(host.toLowerCase()));
  }

  /** A fresh budget for one operation, which logs each retry. */
  budget(op: { readonly method: string; readonly what: string; readonly signal?: AbortSignal | undefined }): RetryBudget {
    return new RetryBudget(this.#policy, {
      signal: op.signal,
      onRetry: (err, retry, waitMs) => {
        // Only temporary RegistryErrors are retried: the code and status say which.
        const e = err instanceof RegistryError ? err : undefined;
        this.#logger?.info({ method: op.method, what: op.what, code: e?.code, status: e?.status, retry, waitMs }, 'registry request failed; retrying');
      },
    });
  }

  /** `fetch` that hands back the response itself; the caller consumes `body`. */
  async request(ex: Exchange, within?: BudgetStep): Promise<Response> {
    return this.fetch(ex, async (res) => res, within);
  }

  /**
   * The exchange with retries: one attempt authorises (re-authorising once on 401), follows
   * redirects, checks the status, then `read` consumes the response within the same attempt, so
   * a body that breaks or does not verify is tried again like a failed request. `within` names
   * the operation's budget and the step this exchange is, when it is one step of a longer
   * operation; by default the exchange has a budget of its own.
   */
  async fetch<T>(ex: Exchange, read: (res: Response) => Promise<T>, within: BudgetStep = { budget: this.budget(ex), step: 'request' }): Promise<T> {
    for (;;) {
      let res: Response | undefined;
      try {
        res = await this.#attempt(ex);
        return await read(res);
      } catch (e) {
        res?.body.destroy();
        await within.budget.failed(e, within.step);
      }
    }
  }

  // ---- endpoint discovery -------------------------------------------------------------------

  /**
   * Starts asking `registry` which scheme and auth it wants (`GET /v2/`) now, so that the
   * round trip overlaps what a command does before its first request (open the store, read
   * the image). A failure is left to that first request, which asks again and reports it.
   */
  prepare(registry: string, signal?: AbortSignal): void {
    this.#endpoint(registry, `reach ${registry}`, signal).catch(() => undefined);
  }

  /** `GET /v2/`: which scheme the registry speaks and how it wants to be authenticated. One attempt, cached once it succeeds. */
  #endpoint(registry: string, what: string, signal: AbortSignal | undefined): Promise<Endpoint> {
    const key = normalizeRegistry(registry);
    let p = this.#endpoints.get(key);
    if (p === undefined) {
      p = this.#discover(key, what, signal);
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
    if (!this.#isInsecure(host)) return this.#pingOrigin({ registry, origin: `https://${host}`, secure: true, dispatcher: this.#secure }, ctx, signal);
    if (isLoopbackRegistry(host)) {
      // A loopback registry (CI's `registry:2` on localhost:5000) nearly always speaks plain
      // HTTP: asked that first, it costs no TLS attempt (the TLS stack's load, a handshake the
      // server refuses: ~30 ms of a push of a small image). A TLS-only one answers plain HTTP
      // with 400 (Go's server: "Client sent an HTTP request to an HTTPS server") or closes the
      // connection; then HTTPS, unverified as for any insecure registry.
      try {
        return await this.#pingOrigin({ registry, origin: `http://${host}`, secure: false, dispatcher: this.#insecure }, ctx, signal);
      } catch (plain) {
        if (!(plain instanceof RegistryError) || (plain.status !== undefined && plain.status !== 400)) throw plain;
        this.#logger?.debug({ registry, why: plain.message }, 'loopback registry refused plain HTTP; trying HTTPS');
        try {
          return await this.#pingOrigin({ registry, origin: `https://${host}`, secure: false, dispatcher: this.#insecure }, ctx, signal);
        } catch (tls) {
          throw tls instanceof RegistryError && tls.status !== undefined ? tls : plain;
        }
      }
    }
    try {
      return await this.#pingOrigin({ registry, origin: `https://${host}`, secure: false, dispatcher: this.#insecure }, ctx, signal);
    } catch (e) {
      // As Docker does for insecure registries: HTTPS first, then plain HTTP when the TLS
      // attempt produced no HTTP response at all.
      if (!(e instanceof RegistryError) || e.status !== undefined) throw e;
      this.#logger?.debug({ registry }, 'registry does not speak TLS; using plain HTTP');
      return this.#pingOrigin({ registry, origin: `http://${host}`, secure: false, dispatcher: this.#insecure }, ctx, signal);
    }
  }

  async #pingOrigin(at: Omit<Endpoint, 'challenge'>, ctx: ExchangeContext, signal: AbortSignal | undefined): Promise<Endpoint> {
    let res: Dispatcher.ResponseData;
    try {
      res = await at.dispatcher.request({ origin: at.origin, path: '/v2/', method: 'GET', headers: { 'user-agent': this.#userAgent }, ...(signal ? { signal } : {}) });
    } catch (e) {
      throw transportError(e, ctx);
    }
    const text = await readText(res, MAX_ERROR_BODY, ctx);
    if (res.statusCode === 200) return { ...at, challenge: undefined };
    if (res.statusCode === 401) {
      const challenges = parseChallenges(res.headers['www-authenticate']);
      const challenge = challenges.find((c) => c.scheme === 'bearer') ?? challenges.find((c) => c.scheme === 'basic');
      return { ...at, challenge };
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
    const budget = this.budget({ method: 'GET', what: ctx.what, signal: opts.signal });
    for (;;) {
      try {
        return await this.#checkOnce(ctx, opts.signal);
      } catch (e) {
        await budget.failed(e);
      }
    }
  }

  async #checkOnce(ctx: ExchangeContext, signal: AbortSignal | undefined): Promise<void> {
    const ep = await this.#endpoint(ctx.registry, ctx.what, signal);
    if (ep.challenge === undefined) return;
    const auth = await this.#auth.authorization({ challenge: ep.challenge, registry: ctx.registry, registrySecure: ep.secure, scopes: [], signal, fresh: true });
    if (ep.challenge.scheme !== 'basic') return;
    let res: Dispatcher.ResponseData;
    try {
      res = await ep.dispatcher.request({
        origin: ep.origin,
        path: '/v2/',
        method: 'GET',
        headers: { 'user-agent': this.#userAgent, ...(auth !== undefined ? { authorization: auth } : {}) },
        ...(signal ? { signal } : {}),
      });
    } catch (e) {
      throw transportError(e, ctx);
    }
    const text = await readText(res, MAX_ERROR_BODY, ctx);
    if (res.statusCode !== 200) throw responseError(res.statusCode, text, header(res.headers, 'retry-after'), ctx);
  }

  // ---- one attempt: auth, redirects, the error gate -----------------------------------------

  /** One attempt: authorises (re-authorising once on 401), follows redirects, checks the status. */
  async #attempt(ex: Exchange): Promise<Response> {
    const ep = await this.#endpoint(ex.repo.registry, ex.what, ex.signal);
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
      return await this.#auth.authorization({ challenge: ep.challenge, registry: ex.repo.registry, registrySecure: ep.secure, scopes, signal: ex.signal, fresh });
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
}
