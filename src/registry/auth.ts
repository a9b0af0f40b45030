import type { Dispatcher } from 'undici';
import type { Logger } from 'pino';
import { normalizeRegistry } from '../oci/index.js';
import type { Challenge } from './challenge.js';
import type { Credential, CredentialSource } from './credentials.js';
import { RegistryError, protocolError, responseError, transportError, type ExchangeContext } from './errors.js';

/**
 * Authorization for registry requests: Basic, or the Bearer token flow of the distribution
 * token spec (docs/spec/auth/token.md, oauth.md):
 *
 *  - the challenge (realm, service) comes from `GET /v2/` or from a 401;
 *  - a token is asked for per set of scopes (`repository:NAME:pull,push`), anonymously or with
 *    credentials, and reused for that set until shortly before it expires;
 *  - with an identity token (refresh token) we POST `grant_type=refresh_token` (falling back to
 *    GET on 404/405, as go-containerregistry does); with a password we GET with Basic and
 *    `offline_token=true`, and keep the refresh token the server hands back;
 *  - `access_token` is accepted where `token` is missing (some registries only set that).
 *
 * Tokens and passwords never reach logs or error messages. A token request is one attempt: a
 * temporary failure is retried by the exchange that needed the token (transport.ts), so it counts
 * against that exchange's retry budget instead of multiplying it.
 */
export interface AuthEnvironment {
  readonly credentials: CredentialSource | undefined;
  readonly logger: Logger | undefined;
  /** The dispatcher and security of a URL's origin (for the realm). */
  readonly dispatcherFor: (url: URL, registrySecure: boolean) => { dispatcher: Dispatcher; allowed: boolean };
  readonly userAgent: string;
  readonly now: () => number;
}

/** What an exchange needs authorised. */
export interface AuthorizationRequest {
  readonly challenge: Challenge | undefined;
  readonly registry: string;
  /** The registry is spoken to over verified TLS: its token realm must be too. */
  readonly registrySecure: boolean;
  readonly scopes: readonly string[];
  readonly signal?: AbortSignal | undefined;
  /** Drop a cached token for these scopes first (after the registry refused it). */
  readonly fresh?: boolean;
}

interface TokenRequest {
  readonly realm: string;
  readonly service: string;
  readonly scopes: readonly string[];
  readonly registry: string;
  readonly registrySecure: boolean;
  readonly cred: Credential | undefined;
  readonly signal: AbortSignal | undefined;
}

interface CachedToken {
  readonly token: string;
  readonly expiresAt: number;
}

/** Refresh a token this long before the server says it expires. */
const EXPIRY_MARGIN_MS = 10_000;
const MAX_TOKEN_RESPONSE = 1024 * 1024;

export class Authenticator {
  readonly #env: AuthEnvironment;
  readonly #credentials = new Map<string, Promise<Credential | undefined>>();
  readonly #tokens = new Map<string, Promise<CachedToken>>();
  /** Refresh tokens handed out by token servers, per registry + service. */
  readonly #refreshTokens = new Map<string, string>();

  constructor(env: AuthEnvironment) {
    this.#env = env;
  }

  /** Credentials for a registry, looked up once per client. */
  credentialFor(registry: string, signal?: AbortSignal): Promise<Credential | undefined> {
    const key = normalizeRegistry(registry);
    let p = this.#credentials.get(key);
    if (p === undefined) {
      const source = this.#env.credentials;
      p = source === undefined ? Promise.resolve(undefined) : source.get(key, { signal });
      this.#credentials.set(key, p);
      p.catch(() => this.#credentials.delete(key));
    }
    return p;
  }

  /**
   * The Authorization header value for a request needing `scopes`, or undefined when the
   * registry asked for none (or we have nothing to send for Basic).
   */
  async authorization(req: AuthorizationRequest): Promise<string | undefined> {
    const { challenge, registry, registrySecure, scopes, signal } = req;
    if (challenge === undefined) return undefined;
    const cred = await this.credentialFor(registry, signal);
    if (challenge.scheme === 'basic') {
      if (cred?.username === undefined || cred.password === undefined) return undefined;
      return `Basic ${Buffer.from(`${cred.username}:${cred.password}`, 'utf8').toString('base64')}`;
    }
    if (challenge.scheme !== 'bearer') return undefined;
    const realm = challenge.params['realm'];
    const ctx: ExchangeContext = { what: `token for ${registry}`, registry };
    if (realm === undefined || realm === '') throw protocolError('the Bearer challenge names no realm', ctx);
    const service = challenge.params['service'] ?? '';
    const sorted = [...new Set(scopes)].sort();
    const key = `${normalizeRegistry(registry)}\n${realm}\n${service}\n${sorted.join(' ')}`;
    if (req.fresh === true) this.#tokens.delete(key);
    let p = this.#tokens.get(key);
    if (p !== undefined) {
      const t = await p.catch(() => undefined);
      if (t !== undefined && t.expiresAt - EXPIRY_MARGIN_MS > this.#env.now()) return `Bearer ${t.token}`;
      if (this.#tokens.get(key) === p) this.#tokens.delete(key);
    }
    p = this.#tokens.get(key);
    if (p === undefined) {
      p = this.#fetchToken({ realm, service, scopes: sorted, registry, registrySecure, cred, signal });
      this.#tokens.set(key, p);
      p.catch(() => {
        if (this.#tokens.get(key) === p) this.#tokens.delete(key);
      });
    }
    return `Bearer ${(await p).token}`;
  }

  async #fetchToken(t: TokenRequest): Promise<CachedToken> {
    const { realm, service, scopes, registry, registrySecure, cred, signal } = t;
    const ctx: ExchangeContext = { what: `token for ${registry}`, registry };
    let url: URL;
    try {
      url = new URL(realm);
    } catch {
      throw protocolError('the Bearer challenge has an invalid realm URL', ctx);
    }
    if (url.protocol !== 'https:' && url.protocol !== 'http:') throw protocolError('the token realm is not an http(s) URL', ctx);
    const { dispatcher, allowed } = this.#env.dispatcherFor(url, registrySecure);
    if (!allowed) {
      throw protocolError(`refusing to send credentials to the plain-HTTP token realm ${url.origin} of a TLS registry`, ctx);
    }
    const refreshKey = `${normalizeRegistry(registry)}\n${service}`;
    const refresh = cred?.identityToken ?? this.#refreshTokens.get(refreshKey);
    const started = this.#env.now();
    let res: Dispatcher.ResponseData | undefined;
    if (refresh !== undefined) {
      // OAuth2 (docs/spec/auth/oauth.md); not every token server implements it.
      const form = new URLSearchParams({ grant_type: 'refresh_token', refresh_token: refresh, service, client_id: 'tsbuild', access_type: 'offline' });
      if (scopes.length > 0) form.set('scope', scopes.join(' '));
      res = await this.#send({ dispatcher, url, method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: form.toString(), ctx, signal });
      if (res.statusCode === 404 || res.statusCode === 405) {
        await res.body.dump();
        res = undefined;
      }
    }
    if (res === undefined) {
      const q = new URL(url);
      if (service !== '') q.searchParams.set('service', service);
      for (const s of scopes) q.searchParams.append('scope', s);
      const headers: Record<string, string> = {};
      if (cred?.username !== undefined && cred.password !== undefined) {
        headers['authorization'] = `Basic ${Buffer.from(`${cred.username}:${cred.password}`, 'utf8').toString('base64')}`;
        q.searchParams.set('offline_token', 'true');
        q.searchParams.set('client_id', 'tsbuild');
      }
      res = await this.#send({ dispatcher, url: q, method: 'GET', headers, ctx, signal });
    }
    const text = await readText(res, MAX_TOKEN_RESPONSE, ctx);
    if (res.statusCode !== 200) {
      if (res.statusCode === 401 || res.statusCode === 403) {
        throw new RegistryError('REGISTRY_UNAUTHORIZED', `authentication to ${registry} failed: the token server refused the credentials (HTTP ${res.statusCode})`, {
          temporary: false,
          status: res.statusCode,
          hint: cred === undefined ? `log in with \`tsbuild login ${registry}\`` : `check the username and password for ${registry} (\`tsbuild login ${registry}\`)`,
        });
      }
      throw responseError(res.statusCode, text, header(res.headers, 'retry-after'), ctx);
    }
    let body: { token?: unknown; access_token?: unknown; expires_in?: unknown; issued_at?: unknown; refresh_token?: unknown };
    try {
      body = JSON.parse(text) as typeof body;
    } catch {
      throw protocolError('the token server answered with something that is not JSON', ctx);
    }
    const token = typeof body.token === 'string' && body.token !== '' ? body.token : typeof body.access_token === 'string' ? body.access_token : '';
    if (token === '') throw protocolError('the token server answered without a token', ctx);
    if (typeof body.refresh_token === 'string' && body.refresh_token !== '') this.#refreshTokens.set(refreshKey, body.refresh_token);
    // token.md: expires_in defaults to 60 s and is never less.
    const expiresIn = typeof body.expires_in === 'number' && body.expires_in >= 60 ? body.expires_in : 60;
    const issued = typeof body.issued_at === 'string' ? Date.parse(body.issued_at) : Number.NaN;
    // A server clock far from ours must not make a token look expired at once.
    const base = Number.isNaN(issued) || Math.abs(issued - started) > 5 * 60_000 ? started : issued;
    this.#env.logger?.debug({ registry, service, scopes, expiresIn }, 'registry token issued');
    return { token, expiresAt: base + expiresIn * 1000 };
  }

  async #send(r: {
    readonly dispatcher: Dispatcher;
    readonly url: URL;
    readonly method: 'GET' | 'POST';
    readonly headers: Record<string, string>;
    readonly body?: string;
    readonly ctx: ExchangeContext;
    readonly signal: AbortSignal | undefined;
  }): Promise<Dispatcher.ResponseData> {
    const { dispatcher, url, method, headers, body, ctx, signal } = r;
    try {
      return await dispatcher.request({
        origin: url.origin,
        path: url.pathname + url.search,
        method,
        headers: { ...headers, 'user-agent': this.#env.userAgent, accept: 'application/json' },
        ...(body !== undefined ? { body } : {}),
        ...(signal ? { signal } : {}),
      });
    } catch (e) {
      throw transportError(e, ctx);
    }
  }
}

/** One header value (the first, if repeated). */
export function header(headers: Record<string, string | string[] | undefined>, name: string): string | undefined {
  const v = headers[name];
  return Array.isArray(v) ? v[0] : v;
}

/** A response body as text, at most `max` bytes (the rest is discarded). */
export async function readText(res: Dispatcher.ResponseData, max: number, ctx: ExchangeContext): Promise<string> {
  const chunks: Buffer[] = [];
  let n = 0;
  try {
    for await (const c of res.body as AsyncIterable<Buffer>) {
      if (n < max) chunks.push(c.subarray(0, max - n));
      n += c.byteLength;
    }
  } catch (e) {
    throw transportError(e, ctx);
  }
  return Buffer.concat(chunks).toString('utf8');
}
