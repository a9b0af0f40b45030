import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TsbuildError } from '../src/errors.js';
import type { LocalImage } from '../src/image/local-image.js';
import { parseReference } from '../src/oci/index.js';
import {
  RegistryClient,
  authFileCredentials,
  pullImage,
  pushImage,
  staticCredentials,
  type PushProgress,
} from '../src/registry/index.js';
import { openStore, type Store } from '../src/store/index.js';
import { startFaultProxy, type FaultProxy } from './support/fault-proxy.js';
import { makeStoreImage } from './support/images.js';
import { nonLoopbackAddress, startRegistry, type RunningRegistry } from './support/registry.js';
import { startTokenIssuer, type TokenIssuer } from './support/token-issuer.js';

// Two real registries: htpasswd Basic auth behind TLS (on a non-loopback address, so TLS is
// verified), and token auth with our token issuer.
const TLS_HOST = nonLoopbackAddress();
let tmp: string;
let basic: RunningRegistry;
let tokenReg: RunningRegistry;
let issuer: TokenIssuer;
let store: Store;
let image: LocalImage;
const clients: RegistryClient[] = [];

function client(opts: ConstructorParameters<typeof RegistryClient>[0] = {}): RegistryClient {
  const c = new RegistryClient({ retry: { baseDelayMs: 10, attempts: 3 }, ...opts });
  clients.push(c);
  return c;
}

beforeAll(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'tsbuild-auth-'));
  basic = await startRegistry({ mode: { kind: 'basic-tls', users: { alice: 'correct horse' } }, listenHost: TLS_HOST });
  issuer = await startTokenIssuer({
    dir: tmp,
    users: { bob: 'pw-bob', eve: 'pw-eve' },
    acl: (user, repo) => {
      if (repo.startsWith('public/')) return user === 'bob' ? ['pull', 'push'] : ['pull'];
      if (repo.startsWith('private/') && user === 'bob') return ['pull', 'push'];
      return [];
    },
  });
  tokenReg = await startRegistry({ mode: { kind: 'token', realm: issuer.realm, service: issuer.service, issuer: issuer.issuer, rootCertBundle: issuer.rootCertBundle } });
  store = await openStore(path.join(tmp, 'store'));
  image = await makeStoreImage(store, 'docker.io/library/authy:v1', [Buffer.from('auth layer'), 100_000]);
});

afterAll(async () => {
  await Promise.all(clients.map((c) => c.close()));
  await tokenReg?.stop();
  await basic?.stop();
  await issuer?.stop();
  if (tmp) await fs.rm(tmp, { recursive: true, force: true });
});

async function codeOf(p: Promise<unknown>): Promise<string> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(TsbuildError);
  return (e as TsbuildError).code;
}

describe('Basic auth behind TLS', () => {
  const alice = () => staticCredentials({ username: 'alice', password: 'correct horse' });

  it('refuses an unknown certificate, trusts it with the CA, or with --insecure-registry', async () => {
    const ref = parseReference(`${basic.host}/team/app:v1`);
    expect(await codeOf(pushImage(client({ credentials: alice() }), store, image, ref))).toBe('REGISTRY_TLS');
    const pushed = await pushImage(client({ credentials: alice(), caCertificates: [basic.caPem!] }), store, image, ref);
    const dst = await openStore(path.join(tmp, 'basic-pull'));
    const pulled = await pullImage(client({ credentials: alice(), insecureRegistries: [basic.host] }), dst, ref);
    expect(pulled.repoDigest.endsWith(pushed.digest)).toBe(true);
  });

  it('401 for a wrong password and for no credentials', async () => {
    const ref = parseReference(`${basic.host}/team/app:v1`);
    const dst = await openStore(path.join(tmp, 'basic-401'));
    const wrong = client({ credentials: staticCredentials({ username: 'alice', password: 'wrong' }), caCertificates: [basic.caPem!] });
    expect(await codeOf(pullImage(wrong, dst, ref))).toBe('REGISTRY_UNAUTHORIZED');
    expect(await codeOf(wrong.checkCredentials(basic.host))).toBe('REGISTRY_UNAUTHORIZED');
    expect(await codeOf(pullImage(client({ caCertificates: [basic.caPem!] }), dst, ref))).toBe('REGISTRY_UNAUTHORIZED');
    expect(await dst.listTags()).toEqual([]);
  });

  it('does not forward Authorization when a blob redirects to another host', async () => {
    const auth = `Basic ${Buffer.from('alice:correct horse').toString('base64')}`;
    const proxy: FaultProxy = await startFaultProxy({ upstream: `https://${basic.host}`, upstreamAuthorization: auth });
    try {
      proxy.setFaults(1, ['redirect'], 11);
      const dst = await openStore(path.join(tmp, 'redirect-pull'));
      const pulled = await pullImage(client({ credentials: staticCredentials({ username: 'alice', password: 'correct horse' }) }), dst, parseReference(`${proxy.host}/team/app:v1`));
      expect(pulled.image.configDescriptor.digest).toBe(image.configDescriptor.digest);
      expect(proxy.stats.redirectsServed).toBeGreaterThanOrEqual(3);
      expect(proxy.stats.authorizationLeaks).toBe(0);
    } finally {
      await proxy.stop();
    }
  });
});

describe('Bearer token auth', () => {
  it('pushes with credentials, reusing tokens per scope, and mounts across repositories', async () => {
    const bob = client({ credentials: staticCredentials({ username: 'bob', password: 'pw-bob' }) });
    const before = issuer.log.length;
    await pushImage(bob, store, image, parseReference(`${tokenReg.host}/private/app:v1`));
    // One token for pull+push on the repository serves every request of the push.
    expect(issuer.log.length - before).toBe(1);
    const events: PushProgress[] = [];
    await pushImage(bob, store, image, parseReference(`${tokenReg.host}/private/other:v1`), { onProgress: (e) => events.push(e) });
    expect(events.filter((e) => e.type === 'layer').map((e) => (e as { status: string }).status)).toEqual(['mounted', 'mounted']);
    // The mount asked for pull on the source repository too.
    expect(issuer.log.some((l) => l.scopes.includes('repository:private/app:pull'))).toBe(true);
    // Later tokens came from the refresh token the first (Basic, offline_token) handed out:
    // one for the new repository, one with the mount's extra scope.
    const later = issuer.log.slice(before).map((l) => [l.method, l.grant, l.user]);
    expect(later[0]).toEqual(['GET', 'basic', 'bob']);
    expect(later.slice(1)).toEqual([
      ['POST', 'refresh_token', 'bob'],
      ['POST', 'refresh_token', 'bob'],
    ]);
  });

  it('pulls public images anonymously, and refuses private ones', async () => {
    const bob = client({ credentials: staticCredentials({ username: 'bob', password: 'pw-bob' }) });
    await pushImage(bob, store, image, parseReference(`${tokenReg.host}/public/app:v1`));
    const anon = client();
    const dst = await openStore(path.join(tmp, 'anon'));
    const pulled = await pullImage(anon, dst, parseReference(`${tokenReg.host}/public/app:v1`));
    expect(pulled.image.configDescriptor.digest).toBe(image.configDescriptor.digest);
    expect(issuer.log.at(-1)?.user).toBeUndefined();
    expect(await codeOf(pullImage(anon, dst, parseReference(`${tokenReg.host}/private/app:v1`)))).toBe('REGISTRY_DENIED');
  });

  it('reuses a token until shortly before it expires, then asks for a new one', async () => {
    let clock = Date.now();
    const c = client({ credentials: staticCredentials({ username: 'bob', password: 'pw-bob' }), now: () => clock });
    const ref = parseReference(`${tokenReg.host}/private/app:v1`);
    const count = () => issuer.log.length;
    const before = count();
    await c.getManifest(ref);
    await c.getManifest(ref);
    expect(count() - before).toBe(1);
    clock += 280_000; // the issuer's tokens live 300 s; we renew 10 s early
    await c.getManifest(ref);
    expect(count() - before).toBe(1);
    clock += 15_000;
    await c.getManifest(ref);
    expect(count() - before).toBe(2);
  });

  it('a wrong password is 401; a user without push rights is denied', async () => {
    const wrong = client({ credentials: staticCredentials({ username: 'bob', password: 'nope' }) });
    const dst = await openStore(path.join(tmp, 'wrong'));
    expect(await codeOf(pullImage(wrong, dst, parseReference(`${tokenReg.host}/public/app:v1`)))).toBe('REGISTRY_UNAUTHORIZED');
    const eve = client({ credentials: staticCredentials({ username: 'eve', password: 'pw-eve' }) });
    expect(await codeOf(pushImage(eve, store, image, parseReference(`${tokenReg.host}/public/eve:v1`)))).toBe('REGISTRY_DENIED');
  });

  it('uses identity tokens (OAuth2 refresh_token grant) from the docker config', async () => {
    const dir = path.join(tmp, 'idtoken');
    await fs.mkdir(dir);
    const config = path.join(dir, 'config.json');
    await fs.writeFile(config, JSON.stringify({ auths: { [tokenReg.host]: { auth: Buffer.from('bob:').toString('base64'), identitytoken: issuer.issueRefreshToken('bob') } } }));
    const c = client({ credentials: authFileCredentials([config]) });
    const dst = await openStore(path.join(tmp, 'idtoken-store'));
    await pullImage(c, dst, parseReference(`${tokenReg.host}/private/app:v1`));
    expect(issuer.log.at(-1)).toMatchObject({ method: 'POST', grant: 'refresh_token', user: 'bob' });
  });

  it('reads credentials from auths, credHelpers and credsStore (docker-credential-NAME get)', async () => {
    const dir = path.join(tmp, 'helpers');
    await fs.mkdir(dir);
    const helper = path.join(dir, 'docker-credential-tsbtest');
    await fs.writeFile(helper, `#!/bin/sh\nif [ "$1" = get ]; then read server; if [ "$server" = "${tokenReg.host}" ]; then echo '{"ServerURL":"'$server'","Username":"bob","Secret":"pw-bob"}'; exit 0; fi; echo "credentials not found in native keychain"; exit 1; fi\nexit 1\n`, { mode: 0o755 });
    const oldPath = process.env['PATH'];
    process.env['PATH'] = `${dir}:${oldPath ?? ''}`;
    try {
      for (const [name, doc] of [
        ['auths.json', { auths: { [`http://${tokenReg.host}`]: { auth: Buffer.from('bob:pw-bob').toString('base64') } } }],
        ['helpers.json', { credHelpers: { [tokenReg.host]: 'tsbtest' } }],
        ['store.json', { credsStore: 'tsbtest', auths: { [tokenReg.host]: {} } }],
      ] as const) {
        const file = path.join(dir, name);
        await fs.writeFile(file, JSON.stringify(doc));
        const c = client({ credentials: authFileCredentials([path.join(dir, 'missing.json'), file]) });
        const dst = await openStore(path.join(tmp, `helper-${name}`));
        const pulled = await pullImage(c, dst, parseReference(`${tokenReg.host}/private/app:v1`));
        expect(pulled.image.configDescriptor.digest, name).toBe(image.configDescriptor.digest);
      }
      // A helper that does not know the registry: anonymous, then denied.
      const file = path.join(dir, 'store2.json');
      await fs.writeFile(file, JSON.stringify({ credsStore: 'tsbtest' }));
      const creds = authFileCredentials([file]);
      expect(await creds.get('other.example:5000')).toBeUndefined();
      // A broken config file is a clear error.
      await fs.writeFile(file, '{ nope');
      expect(await codeOf(authFileCredentials([file]).get(tokenReg.host))).toBe('AUTH_CONFIG_INVALID');
    } finally {
      process.env['PATH'] = oldPath;
    }
  });
});
