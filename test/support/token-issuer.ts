import { createPrivateKey, randomBytes, sign, X509Certificate } from 'node:crypto';
import fs from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { makeCertificate } from './registry.js';

/**
 * A small token server for the registry's `auth.token` mode (distribution docs/spec/auth/token.md
 * and oauth.md), the flow Docker Hub, GHCR, Quay and Harbor use:
 *   GET  /token?service=&scope=...   optional Basic credentials; `offline_token=true` adds a refresh token
 *   POST /token                      grant_type=password|refresh_token (form)
 * It grants the intersection of the requested and allowed actions (never an error for asking
 * more), and signs ES256 JWTs (node:crypto) whose x5c certificate is the registry's rootcertbundle.
 */
export type Acl = (user: string | undefined, repository: string) => readonly string[];

export interface TokenIssuer {
  readonly realm: string;
  readonly service: string;
  readonly issuer: string;
  /** Path of the PEM certificate for the registry's rootcertbundle. */
  readonly rootCertBundle: string;
  /** Requests served, for asserting token reuse. */
  readonly log: { method: string; user: string | undefined; scopes: string[]; grant: string }[];
  /** A refresh token for a user, as an OAuth registry hands out at `docker login`. */
  issueRefreshToken(user: string): string;
  stop(): Promise<void>;
}

export async function startTokenIssuer(opts: { readonly dir: string; readonly users: Readonly<Record<string, string>>; readonly acl: Acl; readonly expiresIn?: number }): Promise<TokenIssuer> {
  const { cert, key } = await makeCertificate(opts.dir, 'token-signer', ['127.0.0.1']);
  const keyObj = createPrivateKey(await fs.readFile(key, 'utf8'));
  const der = new X509Certificate(await fs.readFile(cert, 'utf8')).raw.toString('base64');
  const service = 'tsbuild-test-registry';
  const issuer = 'tsbuild-test-issuer';
  const refreshTokens = new Map<string, string>(); // refresh token -> user
  const log: TokenIssuer['log'] = [];

  const b64url = (b: Buffer | string): string => Buffer.from(b).toString('base64url');
  const jwt = (user: string | undefined, access: { type: string; name: string; actions: readonly string[] }[]): string => {
    const now = Math.floor(Date.now() / 1000);
    const header = { typ: 'JWT', alg: 'ES256', x5c: [der] };
    const claims = { iss: issuer, sub: user ?? '', aud: service, exp: now + (opts.expiresIn ?? 300), nbf: now - 10, iat: now, jti: randomBytes(8).toString('hex'), access };
    const input = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`;
    const sig = sign('sha256', Buffer.from(input), { key: keyObj, dsaEncoding: 'ieee-p1363' });
    return `${input}.${b64url(sig)}`;
  };

  const grant = (user: string | undefined, scopes: string[]): { type: string; name: string; actions: string[] }[] =>
    scopes.flatMap((s) => {
      const m = /^repository:([^:]+):(.+)$/.exec(s);
      if (!m) return [];
      const name = m[1] ?? '';
      const allowed = opts.acl(user, name);
      const actions = (m[2] ?? '').split(',').filter((a) => allowed.includes(a));
      return [{ type: 'repository', name, actions }];
    });

  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (d: Buffer) => (body += d.toString()));
    req.on('end', () => {
      const url = new URL(req.url ?? '/', 'http://x');
      const reply = (status: number, value: unknown): void => {
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(JSON.stringify(value));
      };
      if (url.pathname !== '/token') return reply(404, { error: 'not found' });
      let user: string | undefined;
      let scopes: string[];
      let grantType = 'anonymous';
      let offline = false;
      if (req.method === 'GET') {
        scopes = url.searchParams.getAll('scope').flatMap((s) => s.split(' ')).filter((s) => s !== '');
        offline = url.searchParams.get('offline_token') === 'true';
        const auth = req.headers.authorization;
        if (auth !== undefined) {
          const m = /^Basic (.+)$/.exec(auth);
          const [u, ...rest] = Buffer.from(m?.[1] ?? '', 'base64').toString('utf8').split(':');
          if (u === undefined || opts.users[u] === undefined || opts.users[u] !== rest.join(':')) return reply(401, { details: 'incorrect username or password' });
          user = u;
          grantType = 'basic';
        }
      } else if (req.method === 'POST') {
        const form = new URLSearchParams(body);
        scopes = (form.get('scope') ?? '').split(' ').filter((s) => s !== '');
        grantType = form.get('grant_type') ?? '';
        if (grantType === 'password') {
          const u = form.get('username') ?? '';
          if (opts.users[u] === undefined || opts.users[u] !== form.get('password')) return reply(401, { details: 'incorrect username or password' });
          user = u;
        } else if (grantType === 'refresh_token') {
          const u = refreshTokens.get(form.get('refresh_token') ?? '');
          if (u === undefined) return reply(401, { details: 'invalid refresh token' });
          user = u;
        } else {
          return reply(400, { details: 'unsupported grant_type' });
        }
        offline = form.get('access_type') === 'offline';
      } else {
        return reply(405, {});
      }
      log.push({ method: req.method ?? '', user, scopes, grant: grantType });
      const token = jwt(user, grant(user, scopes));
      const out: Record<string, unknown> = { token, access_token: token, expires_in: opts.expiresIn ?? 300, issued_at: new Date().toISOString() };
      if (offline && user !== undefined) {
        const rt = randomBytes(16).toString('hex');
        refreshTokens.set(rt, user);
        out['refresh_token'] = rt;
      }
      reply(200, out);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return {
    realm: `http://127.0.0.1:${port}/token`,
    service,
    issuer,
    rootCertBundle: path.resolve(cert),
    log,
    issueRefreshToken(user: string): string {
      const rt = randomBytes(16).toString('hex');
      refreshTokens.set(rt, user);
      return rt;
    },
    async stop() {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    },
  };
}
