import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { LocalImage } from '../src/image/local-image.js';
import { parseReference, type Digest } from '../src/oci/index.js';
import { RegistryClient, RegistryError, pullImage, pushImage } from '../src/registry/index.js';
import { openStore, type Store } from '../src/store/index.js';
import { startFaultProxy, type FaultProxy, type ProxyLogEntry } from './support/fault-proxy.js';
import { makeStoreImage } from './support/images.js';
import { startRegistry, type RunningRegistry } from './support/registry.js';

// Retries happen at one level only: a request that keeps failing with a temporary error is
// sent exactly as many times as the retry policy's attempts, whichever operation sent it
// (a manifest GET, a blob download inside a pull, an upload inside a push), and then fails
// with a typed error naming what was asked for and the registry. Nested retry loops multiply
// (5 x 5 = 25 requests under a 5-attempt policy); these tests count what reaches the proxy.
const ATTEMPTS = 5;

let registry: RunningRegistry;
let proxy: FaultProxy;
let tmp: string;
let direct: RegistryClient;
let source: Store;
let image: LocalImage;
const clients: RegistryClient[] = [];

beforeAll(async () => {
  registry = await startRegistry({ mode: { kind: 'open' } });
  proxy = await startFaultProxy({ upstream: `http://${registry.host}` });
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'tsbuild-retry-'));
  direct = new RegistryClient();
  source = await openStore(path.join(tmp, 'source'));
  image = await makeStoreImage(source, 'docker.io/library/retry:v1', [Buffer.from('one layer'), 200_000]);
  await pushImage(direct, source, image, parseReference(`${registry.host}/retry/base:v1`));
});

afterAll(async () => {
  await Promise.all([direct, ...clients].map((c) => c?.close()));
  await proxy?.stop();
  await registry?.stop();
  if (tmp) await fs.rm(tmp, { recursive: true, force: true });
});

beforeEach(() => {
  proxy.setRules([]);
  proxy.setFaults(0, []);
});

/** A client with the default attempt count and short waits (the count is what is tested). */
function client(): RegistryClient {
  const c = new RegistryClient({ retry: { attempts: ATTEMPTS, baseDelayMs: 1, maxDelayMs: 5 } });
  clients.push(c);
  return c;
}

let n = 0;
async function freshStore(): Promise<Store> {
  return openStore(path.join(tmp, `s${++n}`));
}

const logSince = (from: number): ProxyLogEntry[] => proxy.stats.log.slice(from);

function expectUnavailable(e: unknown, ...names: string[]): asserts e is RegistryError {
  expect(e, e instanceof Error ? (e.stack ?? e.message) : String(e)).toBeInstanceOf(RegistryError);
  const err = e as RegistryError;
  expect(err.code).toBe('REGISTRY_UNAVAILABLE');
  expect(err.status).toBe(503);
  for (const name of names) expect(err.message).toContain(name);
}

describe('retries at one level: a failing request is sent exactly the policy attempts', () => {
  it('getManifest against a registry answering 503 to every manifest GET', async () => {
    proxy.setRules([{ method: 'GET', path: /\/manifests\//, fault: '503' }]);
    const from = proxy.stats.log.length;
    const err = await client()
      .getManifest(parseReference(`${proxy.host}/retry/base:v1`))
      .then(() => undefined, (e: unknown) => e);
    expectUnavailable(err, `${proxy.host}/retry/base:v1`);
    const sent = logSince(from);
    expect(sent.filter((e) => e.method === 'GET' && e.path.includes('/manifests/')).length).toBe(ATTEMPTS);
    // Besides those, only the one ping that discovers the endpoint.
    expect(sent.filter((e) => !e.path.includes('/manifests/')).map((e) => e.path)).toEqual(['/v2/']);
  });

  it('a pull whose config blob GET keeps answering 503', async () => {
    const cfg = image.manifest.config.digest;
    proxy.setRules([{ method: 'GET', path: new RegExp(`/blobs/${cfg}`), fault: '503' }]);
    const store = await freshStore();
    const from = proxy.stats.log.length;
    const err = await pullImage(client(), store, parseReference(`${proxy.host}/retry/base:v1`)).then(
      () => undefined,
      (e: unknown) => e,
    );
    expectUnavailable(err, cfg, proxy.host);
    expect(logSince(from).filter((e) => e.method === 'GET' && e.path.includes(`/blobs/${cfg}`)).length).toBe(ATTEMPTS);
    expect(await store.listTags()).toEqual([]);
  });

  it('a pull whose layer blob GET keeps answering 503', async () => {
    const layer = (await direct.getManifest(parseReference(`${registry.host}/retry/base:v1`))).bytes;
    const digest = (JSON.parse(layer.toString()) as { layers: { digest: Digest }[] }).layers[1]!.digest;
    proxy.setRules([{ method: 'GET', path: new RegExp(`/blobs/${digest}`), fault: '503' }]);
    const store = await freshStore();
    const from = proxy.stats.log.length;
    const err = await pullImage(client(), store, parseReference(`${proxy.host}/retry/base:v1`)).then(
      () => undefined,
      (e: unknown) => e,
    );
    expectUnavailable(err, digest, proxy.host);
    expect(logSince(from).filter((e) => e.method === 'GET' && e.path.includes(`/blobs/${digest}`)).length).toBe(ATTEMPTS);
  });

  it('a push whose upload sessions keep answering 503', async () => {
    proxy.setRules([{ method: 'POST', path: /\/blobs\/uploads\//, fault: '503' }]);
    const from = proxy.stats.log.length;
    const err = await pushImage(client(), source, image, parseReference(`${proxy.host}/retry/pushed:v1`), { concurrency: 1 }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expectUnavailable(err, proxy.host);
    // One layer's upload fails (concurrency 1): the attempts are spent on its session, once.
    expect(logSince(from).filter((e) => e.method === 'POST').length).toBe(ATTEMPTS);
  });

  it('a registry whose ping (GET /v2/) keeps answering 503', async () => {
    proxy.setRules([{ method: 'GET', path: /^\/v2\/$/, fault: '503' }]);
    // A client of its own: the endpoint discovered by another client is not shared.
    const from = proxy.stats.log.length;
    const err = await client()
      .getManifest(parseReference(`${proxy.host}/retry/base:v1`))
      .then(() => undefined, (e: unknown) => e);
    expectUnavailable(err, `${proxy.host}/retry/base:v1`);
    expect(logSince(from).map((e) => e.path)).toEqual(Array<string>(ATTEMPTS).fill('/v2/'));
  });

  it('a push of a new layer (compressed while it uploads) whose upload sessions keep answering 503', async () => {
    const store = await freshStore();
    const fresh = await makeStoreImage(store, 'docker.io/library/fresh:v1', [100_000]);
    proxy.setRules([{ method: 'POST', path: /\/blobs\/uploads\//, fault: '503' }]);
    const from = proxy.stats.log.length;
    const err = await pushImage(client(), store, fresh, parseReference(`${proxy.host}/retry/fresh:v1`), { concurrency: 1 }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expectUnavailable(err, proxy.host);
    // The streamed attempt and the upload of the stored copy share one budget.
    expect(logSince(from).filter((e) => e.method === 'POST').length).toBe(ATTEMPTS);
  });

  it('a chunked upload whose PATCHes keep answering 503', async () => {
    proxy.setRules([{ method: 'PATCH', path: /\/blobs\/uploads\//, fault: '503' }]);
    const from = proxy.stats.log.length;
    const err = await pushImage(client(), source, image, parseReference(`${proxy.host}/retry/chunked:v1`), { concurrency: 1, chunkSize: 64 * 1024 }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expectUnavailable(err, proxy.host);
    const sent = logSince(from);
    expect(sent.filter((e) => e.method === 'PATCH').length).toBe(ATTEMPTS);
    // The first chunk never lands, so no session can be resumed ("0-0" is ambiguous): each
    // failure opens a new one, and the sessions are bounded by the same budget.
    expect(sent.filter((e) => e.method === 'POST').length).toBe(ATTEMPTS);
  });

  it('a manifest PUT that keeps answering 503', async () => {
    proxy.setRules([{ method: 'PUT', path: /\/manifests\//, fault: '503' }]);
    const from = proxy.stats.log.length;
    const err = await pushImage(client(), source, image, parseReference(`${proxy.host}/retry/base:v2`)).then(
      () => undefined,
      (e: unknown) => e,
    );
    expectUnavailable(err, `${proxy.host}/retry/base:v2`);
    expect(logSince(from).filter((e) => e.method === 'PUT' && e.path.includes('/manifests/')).length).toBe(ATTEMPTS);
  });
});
