import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseChallenges } from './challenge.js';
import { authFileCredentials, authFilesFromEnv, removeCredential, saveCredential, type HelperRunner } from './credentials.js';
import { RegistryError, parseRetryAfter, responseError, transportError } from './errors.js';
import { DEFAULT_RETRY_POLICY, RetryBudget, retryDelayMs } from './retry.js';
import { parseLayerSources, parseRepoDigests, readLayerVariants, readRepoDigests, recordLayerVariant, recordRepoDigest } from './store-layers.js';
import type { Digest } from '../oci/index.js';
import { openStore } from '../store/index.js';

const ctx = { what: 'manifest r.example/a:b', registry: 'r.example' };

describe('WWW-Authenticate', () => {
  it('parses Bearer with quoted parameters, commas and escapes', () => {
    expect(parseChallenges('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:samalba/my-app:pull,push"')).toEqual([
      { scheme: 'bearer', params: { realm: 'https://auth.docker.io/token', service: 'registry.docker.io', scope: 'repository:samalba/my-app:pull,push' } },
    ]);
    expect(parseChallenges('Bearer realm="a\\"b", error="insufficient_scope"')[0]?.params).toEqual({ realm: 'a"b', error: 'insufficient_scope' });
  });

  it('splits several challenges in one header and across headers', () => {
    const c = parseChallenges(['Basic realm="x", Bearer realm="y",service=z', 'Negotiate']);
    expect(c.map((x) => x.scheme)).toEqual(['basic', 'bearer', 'negotiate']);
    expect(c[1]?.params).toEqual({ realm: 'y', service: 'z' });
    expect(parseChallenges(undefined)).toEqual([]);
  });
});

describe('the response gate', () => {
  const body = (code: string, message = '') => JSON.stringify({ errors: [{ code, message }] });

  it('maps statuses and OCI error codes to codes and the temporary flag', () => {
    const cases: [number, string, string, boolean][] = [
      [401, body('UNAUTHORIZED'), 'REGISTRY_UNAUTHORIZED', false],
      [403, body('DENIED'), 'REGISTRY_DENIED', false],
      [404, body('MANIFEST_UNKNOWN'), 'REGISTRY_MANIFEST_UNKNOWN', false],
      [404, body('NAME_UNKNOWN'), 'REGISTRY_NAME_UNKNOWN', false],
      [404, body('BLOB_UNKNOWN'), 'REGISTRY_BLOB_UNKNOWN', false],
      [429, body('TOOMANYREQUESTS'), 'REGISTRY_TOO_MANY_REQUESTS', true],
      [500, 'oops', 'REGISTRY_UNAVAILABLE', true],
      [502, '', 'REGISTRY_UNAVAILABLE', true],
      [503, body('UNAVAILABLE'), 'REGISTRY_UNAVAILABLE', true],
      [408, '', 'REGISTRY_UNAVAILABLE', true],
      [400, body('MANIFEST_INVALID', 'bad'), 'REGISTRY_ERROR', false],
      [501, '', 'REGISTRY_ERROR', false],
    ];
    for (const [status, text, code, temporary] of cases) {
      const e = responseError(status, text, undefined, ctx);
      expect([status, e.code, e.temporary]).toEqual([status, code, temporary]);
      expect(e.message).toContain('r.example');
    }
  });

  it('reads Retry-After as seconds or a date', () => {
    expect(parseRetryAfter('3')).toBe(3000);
    expect(parseRetryAfter(new Date(10_000).toUTCString(), 4_000)).toBe(6000);
    expect(parseRetryAfter('soon')).toBeUndefined();
    expect(responseError(429, '', '2', ctx).retryAfterMs).toBe(2000);
  });

  it('classifies transport failures', () => {
    const sys = (code: string) => Object.assign(new Error(code), { code });
    expect((transportError(sys('ENOTFOUND'), ctx) as RegistryError).code).toBe('REGISTRY_UNREACHABLE');
    expect((transportError(sys('ECONNREFUSED'), ctx) as RegistryError).temporary).toBe(false);
    expect((transportError(sys('ECONNRESET'), ctx) as RegistryError).temporary).toBe(true);
    expect((transportError(Object.assign(new Error('x'), { cause: sys('DEPTH_ZERO_SELF_SIGNED_CERT') }), ctx) as RegistryError).code).toBe('REGISTRY_TLS');
    const abort = new DOMException('stop', 'AbortError');
    expect(transportError(abort, ctx)).toBe(abort);
  });
});

describe('retry delays', () => {
  it('backs off exponentially with jitter, honours Retry-After, and stops', () => {
    const temp = responseError(503, '', undefined, ctx);
    const d1 = retryDelayMs(DEFAULT_RETRY_POLICY, 1, temp, () => 1)!;
    const d3 = retryDelayMs(DEFAULT_RETRY_POLICY, 3, temp, () => 1)!;
    expect(d3).toBe(4 * d1);
    expect(retryDelayMs(DEFAULT_RETRY_POLICY, 3, temp, () => 0)).toBe(d3 / 2);
    expect(retryDelayMs(DEFAULT_RETRY_POLICY, DEFAULT_RETRY_POLICY.attempts, temp)).toBeUndefined();
    expect(retryDelayMs(DEFAULT_RETRY_POLICY, 1, responseError(404, '', undefined, ctx))).toBeUndefined();
    expect(retryDelayMs(DEFAULT_RETRY_POLICY, 1, responseError(429, '', '7', ctx))).toBe(7000);
    expect(retryDelayMs(DEFAULT_RETRY_POLICY, 1, responseError(429, '', '3600', ctx))).toBeUndefined();
    expect(retryDelayMs(DEFAULT_RETRY_POLICY, 1, new Error('bug'))).toBeUndefined();
  });
});

describe('credentials files', () => {
  it('orders REGISTRY_AUTH_FILE, XDG auth.json, then the docker config', () => {
    expect(authFilesFromEnv({ REGISTRY_AUTH_FILE: '/a.json', XDG_RUNTIME_DIR: '/run/u', DOCKER_CONFIG: '/d' }, '/home/u')).toEqual(['/a.json', '/run/u/containers/auth.json', '/d/config.json']);
    expect(authFilesFromEnv({}, '/home/u')).toEqual(['/home/u/.docker/config.json']);
  });

  it('matches auths keys by host, Docker Hub under its v1 URL', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'tsbuild-creds-'));
    try {
      const file = path.join(dir, 'config.json');
      const b64 = (s: string) => Buffer.from(s).toString('base64');
      await fs.writeFile(file, JSON.stringify({ auths: { 'https://index.docker.io/v1/': { auth: b64('hub:pw') }, 'https://reg.example:5000/v2/': { auth: b64('u:p:with:colons') } } }));
      const src = authFileCredentials([file]);
      expect(await src.get('docker.io')).toEqual({ username: 'hub', password: 'pw' });
      expect(await src.get('reg.example:5000')).toEqual({ username: 'u', password: 'p:with:colons' });
      expect(await src.get('reg.example')).toBeUndefined();
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });

  it('login writes 0600 and keeps other settings; logout removes; helpers get store/erase', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'tsbuild-creds-'));
    try {
      const file = path.join(dir, 'sub', 'config.json');
      await fs.mkdir(path.dirname(file));
      await fs.writeFile(file, JSON.stringify({ psFormat: 'table', auths: { 'other:1': { auth: 'eDp5' } } }));
      expect(await saveCredential(file, 'reg.example', { username: 'u', password: 'p' })).toBe('file');
      expect((await fs.stat(file)).mode & 0o777).toBe(0o600);
      const doc = JSON.parse(await fs.readFile(file, 'utf8')) as Record<string, unknown>;
      expect(doc['psFormat']).toBe('table');
      expect(Object.keys(doc['auths'] as object).sort()).toEqual(['other:1', 'reg.example']);
      expect(await removeCredential(file, 'reg.example')).toBe(true);
      expect(await removeCredential(file, 'reg.example')).toBe(false);

      const calls: string[] = [];
      const runHelper: HelperRunner = async (name, action, input) => {
        calls.push(`${name} ${action} ${action === 'store' ? (JSON.parse(input) as { ServerURL: string }).ServerURL : input}`);
        return { code: 0, stdout: '', stderr: '' };
      };
      await fs.writeFile(file, JSON.stringify({ credsStore: 'pass' }));
      expect(await saveCredential(file, 'docker.io', { username: 'u', password: 'p' }, { runHelper })).toBe('helper:pass');
      expect(await fs.readFile(file, 'utf8')).not.toContain(Buffer.from('u:p').toString('base64'));
      await removeCredential(file, 'docker.io', { runHelper });
      expect(calls).toEqual(['pass store https://index.docker.io/v1/', 'pass erase https://index.docker.io/v1/']);
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });
});

describe('retry budget', () => {
  const policy = { ...DEFAULT_RETRY_POLICY, attempts: 3, baseDelayMs: 1, maxDelayMs: 1 };
  const temp = (): RegistryError => responseError(503, '', undefined, ctx);

  it('tries a failing step exactly the policy attempts, and an error it gave up on stays final', async () => {
    const budget = new RetryBudget(policy);
    const err = temp();
    await budget.failed(err, 'chunk');
    await budget.failed(err, 'chunk');
    await expect(budget.failed(err, 'chunk')).rejects.toBe(err);
    // A loop around the step that reports the same error again (another step) gets it back at once.
    await expect(budget.failed(err, 'session')).rejects.toBe(err);
    // Other steps keep their own count; progress starts a step afresh.
    await budget.failed(temp(), 'session');
    budget.progressed('chunk');
    await budget.failed(temp(), 'chunk');
  });

  it('never retries a permanent error', async () => {
    const budget = new RetryBudget(policy);
    const err = responseError(404, '', undefined, ctx);
    await expect(budget.failed(err)).rejects.toBe(err);
  });
});

describe('store records of registry facts', () => {
  const d = (c: string): Digest => `sha256:${c.repeat(64)}` as Digest;

  it('parse only well-formed entries, from any JSON', () => {
    expect(parseLayerSources(undefined)).toEqual({ variants: [] });
    expect(parseLayerSources({ variants: 'x' })).toEqual({ variants: [] });
    const good = { digest: d('a'), size: 3, mediaType: 'm', repositories: ['r/a', 7] };
    expect(parseLayerSources({ variants: [good, { ...good, digest: 'nope' }, null, { ...good, size: '3' }] })).toEqual({ variants: [{ ...good, repositories: ['r/a'] }] });
    expect(parseRepoDigests([1])).toEqual({});
    expect(parseRepoDigests({ [d('b')]: ['r/a@x', 1], notadigest: ['r/b@y'], [d('c')]: 'r/c@z' })).toEqual({ [d('b')]: ['r/a@x'] });
  });

  it('round-trip through a store: one repo digest per repository, the latest repositories first', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'tsbuild-records-'));
    try {
      const store = await openStore(dir);
      await recordRepoDigest(store, d('1'), `r/a@${d('2')}`);
      await recordRepoDigest(store, d('1'), `r/b@${d('3')}`);
      await recordRepoDigest(store, d('1'), `r/a@${d('4')}`);
      expect(await readRepoDigests(store, d('1'))).toEqual([`r/a@${d('4')}`, `r/b@${d('3')}`]);
      const v = { digest: d('5'), size: 10, mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip' };
      await recordLayerVariant(store, d('6'), v, 'r/a');
      await recordLayerVariant(store, d('6'), v, 'r/b');
      await recordLayerVariant(store, d('6'), v, 'r/a');
      expect(await readLayerVariants(store, d('6'))).toEqual([{ ...v, repositories: ['r/a', 'r/b'] }]);
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });
});

describe('compressionTurn (a push compresses one layer at a time)', () => {
  it('lets the next layer start only when the one before it is done, and an abort while waiting leaves the order intact', async () => {
    const { compressionTurn } = await import('./push.js');
    const order: string[] = [];
    const first = await compressionTurn(undefined);
    let secondStarted = false;
    const second = compressionTurn(undefined).then((release) => {
      secondStarted = true;
      order.push('second');
      return release;
    });
    const controller = new AbortController();
    const third = compressionTurn(controller.signal);
    const fourth = compressionTurn(undefined).then((release) => {
      order.push('fourth');
      return release;
    });
    await new Promise((r) => setTimeout(r, 20));
    expect(secondStarted).toBe(false);
    // The third gives up while waiting: rejected at once, and not a turn the fourth waits for.
    controller.abort(new Error('stop'));
    await expect(third).rejects.toThrow('stop');
    order.push('first done');
    first();
    (await second)();
    (await fourth)();
    expect(order).toEqual(['first done', 'second', 'fourth']);
  });
});

describe('a push whose compressor cannot start', () => {
  it('gives its turn to the next big layer (zstd missing: each push fails at once, none waits)', async () => {
    const { pushLayers, compressionTurn } = await import('./push.js');
    const { RegistryClient } = await import('./client.js');
    const { parseReference, OCI_LAYER_TAR } = await import('../oci/index.js');
    const { randomBytes } = await import('node:crypto');
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'turn-'));
    const savedPath = process.env['PATH'];
    const client = new RegistryClient();
    try {
      const store = await openStore(path.join(dir, 'store'));
      // Over a MiB: it waits for its turn to compress.
      const info = await store.blobs.putBytes(randomBytes(2 * 1024 * 1024));
      const layer = { mediaType: OCI_LAYER_TAR, digest: info.digest, size: info.size };
      await fs.mkdir(path.join(dir, 'empty'));
      process.env['PATH'] = path.join(dir, 'empty'); // no zstd program (looked up once, now)
      const dest = parseReference('127.0.0.1:1/turn/test:v1'); // never reached
      for (let i = 0; i < 2; i++) await expect(pushLayers(client, store, dest, [layer], { compression: 'zstd' })).rejects.toMatchObject({ code: 'UNSUPPORTED' });
      (await compressionTurn(undefined))();
    } finally {
      process.env['PATH'] = savedPath;
      await client.close();
      await fs.rm(dir, { recursive: true, force: true });
    }
  });
});
