import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TsbuildError } from '../src/errors.js';
import type { LocalImage } from '../src/image/local-image.js';
import { DOCKER_SCHEMA1_SIGNED_MANIFEST, OCI_IMAGE_MANIFEST, parseDigest, parseReference, sha256Digest } from '../src/oci/index.js';
import { RegistryClient, pullImage, pushImage } from '../src/registry/index.js';
import { openStore, type Store } from '../src/store/index.js';
import { startFaultProxy, type FaultKind, type FaultProxy } from './support/fault-proxy.js';
import { freePort, startRegistry, type RunningRegistry } from './support/registry.js';
import { makeStoreImage } from './support/images.js';

// The real registry behind a fault-injecting proxy: every pull and push either succeeds with
// verified content or fails with a coded error; the store never keeps a blob that does not
// match its digest and never a half-written image.
let registry: RunningRegistry;
let proxy: FaultProxy;
let tmp: string;
let direct: RegistryClient;
let source: Store;
let image: LocalImage;

const ALL_FAULTS: FaultKind[] = ['500', '503', '429', 'reset', 'truncate', 'corrupt', 'slow', 'redirect'];

beforeAll(async () => {
  registry = await startRegistry({ mode: { kind: 'open' } });
  proxy = await startFaultProxy({ upstream: `http://${registry.host}` });
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'tsbuild-faults-'));
  direct = new RegistryClient();
  source = await openStore(path.join(tmp, 'source'));
  image = await makeStoreImage(source, 'docker.io/library/faulty:v1', [Buffer.from('small'), 400_000, 150_000, 1_200_000]);
  await pushImage(direct, source, image, parseReference(`${registry.host}/faults/base:v1`));
});

afterAll(async () => {
  await direct?.close();
  await proxy?.stop();
  await registry?.stop();
  if (tmp) await fs.rm(tmp, { recursive: true, force: true });
});

let n = 0;
async function freshStore(): Promise<Store> {
  return openStore(path.join(tmp, `s${++n}`));
}

function proxied(): RegistryClient {
  return new RegistryClient({ retry: { baseDelayMs: 5, maxDelayMs: 50, attempts: 6 } });
}

/** Every blob in the store matches its name, and no temp file is left behind. */
async function assertStoreClean(store: Store): Promise<void> {
  for (const d of await store.blobs.listBlobs()) expect((await store.blobs.verifyBlob(d)).ok, d).toBe(true);
  expect(await fs.readdir(store.paths.tmp)).toEqual([]);
}

function expectCoded(e: unknown): asserts e is TsbuildError {
  expect(e, e instanceof Error ? (e.stack ?? e.message) : String(e)).toBeInstanceOf(TsbuildError);
  expect((e as TsbuildError).code).toMatch(/^[A-Z_]+$/);
}

describe('through the fault proxy', () => {
  it('pulls succeed or fail with a coded error, and never store a bad blob', async () => {
    let ok = 0;
    for (let seed = 1; seed <= 12; seed++) {
      proxy.setFaults(0.4, ALL_FAULTS, seed);
      const store = await freshStore();
      const client = proxied();
      try {
        const pulled = await pullImage(client, store, parseReference(`${proxy.host}/faults/base:v1`));
        expect(pulled.image.configDescriptor.digest).toBe(image.configDescriptor.digest);
        ok++;
      } catch (e) {
        expectCoded(e);
        expect(await store.listTags()).toEqual([]);
      } finally {
        await client.close();
      }
      await assertStoreClean(store);
    }
    proxy.setFaults(0, []);
    // One level of retries (5 attempts per step of a pull) makes most of these succeed at a 40 %
    // fault rate; some may fail cleanly. The bound checks that retries work at all (without them
    // hardly any pull gets through), not a success rate: a rate belongs in scripts/torture.
    expect(ok).toBeGreaterThanOrEqual(8);
    expect(Object.keys(proxy.stats.faults).length).toBeGreaterThanOrEqual(6);
  });

  it('pushes succeed or fail with a coded error; what succeeded pulls back intact', async () => {
    let ok = 0;
    for (let seed = 1; seed <= 8; seed++) {
      proxy.setFaults(0.4, ['500', '503', 'reset', 'truncate', 'slow'], 100 + seed);
      const client = proxied();
      const dest = `faults/push${seed}:v1`;
      // Odd seeds: a new image, so layers are compressed while they upload (streamed);
      // even seeds: known compressed blobs, uploaded in chunks that resume.
      const fresh = seed % 2 === 1;
      const pushStore = fresh ? await freshStore() : source;
      const pushed = fresh ? await makeStoreImage(pushStore, `docker.io/library/fresh${seed}:v1`, [300_000, 90_000]) : image;
      try {
        await pushImage(client, pushStore, pushed, parseReference(`${proxy.host}/${dest}`), { chunkSize: fresh ? undefined : 128 * 1024 });
        ok++;
        proxy.setFaults(0, []);
        const check = await freshStore();
        const pulled = await pullImage(direct, check, parseReference(`${registry.host}/${dest}`));
        expect(pulled.image.configDescriptor.digest).toBe(pushed.configDescriptor.digest);
      } catch (e) {
        expectCoded(e);
      } finally {
        await client.close();
      }
    }
    proxy.setFaults(0, []);
    // A push is 15-25 requests, each tried at most 5 times in a row (one level of retries), so
    // at a 40 % fault rate about one push in ten fails cleanly (measured: 6 to 8 of 8 succeed).
    // The bound checks that retries work at all (without them no push gets through), not a rate.
    expect(ok).toBeGreaterThanOrEqual(4);
  });

  it('follows redirects to blob storage on another host', async () => {
    proxy.setFaults(1, ['redirect'], 7);
    const before = proxy.stats.redirectsServed;
    const store = await freshStore();
    const client = proxied();
    try {
      const pulled = await pullImage(client, store, parseReference(`${proxy.host}/faults/base:v1`));
      expect(pulled.image.configDescriptor.digest).toBe(image.configDescriptor.digest);
    } finally {
      await client.close();
      proxy.setFaults(0, []);
    }
    expect(proxy.stats.redirectsServed - before).toBeGreaterThanOrEqual(5);
    expect(proxy.stats.authorizationLeaks).toBe(0);
  });

  it('sends the config alongside the layers, and a config the registry refuses stops the layers', async () => {
    proxy.setFaults(0, []);
    // Layers of their own (random bytes): none can be mounted from an earlier test's repositories.
    const store = await freshStore();
    const own = await makeStoreImage(store, 'docker.io/library/config-first:v1', [Buffer.from(`config first ${Date.now()}`), 300_000, 200_000]);
    const cfg = own.manifest.config.digest;
    const client = proxied();
    try {
      const before = proxy.stats.log.length;
      await pushImage(client, store, own, parseReference(`${proxy.host}/faults/config-first:v1`));
      const log = proxy.stats.log.slice(before);
      const configHead = log.findIndex((e) => e.method === 'HEAD' && e.path.endsWith(`/blobs/${cfg}`));
      const layerPuts = log.flatMap((e, i) => (e.method === 'PUT' && e.path.includes('/blobs/uploads/') && !e.path.includes(encodeURIComponent(cfg)) ? [i] : []));
      expect(configHead).toBeGreaterThanOrEqual(0);
      expect(layerPuts.length).toBe(own.manifest.layers.length);
      // Before the last layer is finished (it was three round trips after it).
      expect(configHead).toBeLessThan(Math.max(...layerPuts));
      // The config's upload refused for good: the push fails with that error, no manifest goes up.
      const cfgPut = new RegExp(`/blobs/uploads/.*digest=${encodeURIComponent(cfg)}`);
      proxy.setRules([{ method: 'PUT', path: cfgPut, respond: { status: 403, body: '{"errors":[{"code":"DENIED","message":"no"}]}' } }]);
      const at = proxy.stats.log.length;
      await expect(pushImage(client, store, own, parseReference(`${proxy.host}/faults/config-denied:v1`))).rejects.toMatchObject({ code: 'REGISTRY_DENIED' });
      expect(proxy.stats.log.slice(at).some((e) => e.path.includes('/manifests/'))).toBe(false);
    } finally {
      proxy.setRules([]);
      await client.close();
    }
  });

  it('asks whether the repository has a blob while its upload session opens, and cancels the session when it has', async () => {
    proxy.setFaults(0, []);
    const bytes = Buffer.from(`ask and open at once ${Date.now()} ${Math.random()}`);
    const digest = sha256Digest(bytes);
    const repo = parseReference(`${proxy.host}/faults/ask-and-open:v1`);
    const blob = { repo, digest, size: bytes.byteLength, source: async () => Readable.from([bytes]), unlessPresent: true } as const;
    // Every blob HEAD answered late: an upload that waited for it would open its session after that answer.
    proxy.setRules([{ method: 'HEAD', path: /\/blobs\/sha256:/, delayMs: 300 }]);
    const sinceHead = (at: number, method: string) => {
      const log = proxy.stats.log.slice(at);
      const head = log.find((e) => e.method === 'HEAD');
      expect(head?.status).toBeGreaterThan(0);
      return { log, head: head!, before: log.slice(0, head!.answeredAt - at).filter((e) => e.method === method) };
    };
    const client = proxied();
    let closed = false;
    try {
      let at = proxy.stats.log.length;
      expect(await client.uploadBlob(blob)).toBe('uploaded');
      let seen = sinceHead(at, 'POST');
      expect(seen.head.status).toBe(404);
      expect(seen.before).toHaveLength(1); // the POST came in before the HEAD was answered
      expect(seen.log.filter((e) => e.method === 'PUT' && e.path.includes(encodeURIComponent(digest)))).toHaveLength(1);

      // Now present: no upload; the session opened alongside is cancelled, by the time the client is closed.
      at = proxy.stats.log.length;
      expect(await client.uploadBlob(blob)).toBe('exists');
      closed = true;
      await client.close();
      seen = sinceHead(at, 'POST');
      expect(seen.head.status).toBe(200);
      expect(seen.before).toHaveLength(1);
      expect(seen.log.filter((e) => e.method === 'PUT' || e.method === 'PATCH')).toEqual([]);
      const deleted = seen.log.filter((e) => e.method === 'DELETE' && e.path.includes('/blobs/uploads/'));
      expect(deleted).toHaveLength(1);
      expect(deleted[0]!.status).toBe(204);

      // A HEAD refused: the upload fails with that error, and its session is cancelled too.
      proxy.setRules([{ method: 'HEAD', path: /\/blobs\/sha256:/, delayMs: 300, respond: { status: 403, body: '{"errors":[{"code":"DENIED","message":"no"}]}' } }]);
      const other = Buffer.from(`refused ${Date.now()} ${Math.random()}`);
      const refused = proxied();
      at = proxy.stats.log.length;
      await expect(refused.uploadBlob({ ...blob, digest: sha256Digest(other), size: other.byteLength, source: async () => Readable.from([other]) })).rejects.toMatchObject({ code: 'REGISTRY_DENIED' });
      await refused.close();
      const after = proxy.stats.log.slice(at);
      expect(after.filter((e) => e.method === 'PUT' || e.method === 'PATCH')).toEqual([]);
      expect(after.filter((e) => e.method === 'DELETE' && e.path.includes('/blobs/uploads/') && e.status === 204)).toHaveLength(1);
    } finally {
      proxy.setRules([]);
      if (!closed) await client.close();
    }
  });
});

describe('stalled and dripping response bodies (the registry timeout, docs/design.md)', () => {
  // With a 1 s timeout a dripping blob (20 bytes/s) would take about 17 hours and a stalled one
  // forever: each must be cut within the timeout and tried again, so the pull ends.
  const TIMEOUT_MS = 1000;
  const slowClient = (attempts: number): RegistryClient => new RegistryClient({ timeoutMs: TIMEOUT_MS, retry: { baseDelayMs: 5, maxDelayMs: 50, attempts } });

  for (const fault of ['stall-body', 'drip'] as const) {
    it(`${fault}: a pull is cut within the timeout and retried, and ends with the right image`, async () => {
      // The first GET of each blob gets the fault; its retry comes through.
      const seen = new Set<string>();
      proxy.setRules([{ method: 'GET', path: /\/blobs\/sha256:/, fault, when: (req) => !seen.has(req.url ?? '') && seen.add(req.url ?? '') !== undefined }]);
      const store = await freshStore();
      const client = slowClient(6);
      try {
        const pulled = await pullImage(client, store, parseReference(`${proxy.host}/faults/base:v1`));
        expect(pulled.image.configDescriptor.digest).toBe(image.configDescriptor.digest);
      } finally {
        await client.close();
        proxy.setRules([]);
      }
      expect(seen.size).toBeGreaterThanOrEqual(5); // config + 4 layers each faulted once
      await assertStoreClean(store);
    });

    it(`${fault}: without retries, a pull fails with a coded, temporary error and stores nothing`, async () => {
      proxy.setRules([{ method: 'GET', path: /\/blobs\/sha256:/, fault }]);
      const store = await freshStore();
      const client = slowClient(1);
      try {
        const err = await pullImage(client, store, parseReference(`${proxy.host}/faults/base:v1`)).then(() => undefined, (e: unknown) => e);
        expectCoded(err);
        expect(err.code).toBe('REGISTRY_UNAVAILABLE');
        expect(err.message).toMatch(/UND_ERR_BODY_TIMEOUT/);
      } finally {
        await client.close();
        proxy.setRules([]);
      }
      expect(await store.listTags()).toEqual([]);
      await assertStoreClean(store);
    });

    it(`${fault}: a push through them ends (pushed whole, or a coded error), each faulted exchange cut`, async () => {
      // Upload responses have small or empty bodies: a stalled one is cut by the header or body
      // timeout, a dripping one by the low-speed limit.
      proxy.setFaults(0.2, [fault], fault === 'drip' ? 31 : 32);
      const client = slowClient(6);
      const dest = `faults/${fault}:v1`;
      let pushed = false;
      try {
        await pushImage(client, source, image, parseReference(`${proxy.host}/${dest}`), { chunkSize: 128 * 1024 });
        pushed = true;
      } catch (e) {
        expectCoded(e);
      } finally {
        await client.close();
        proxy.setFaults(0, []);
      }
      expect(proxy.stats.faults[fault] ?? 0).toBeGreaterThan(0);
      if (!pushed) return;
      const check = await freshStore();
      const pulled = await pullImage(direct, check, parseReference(`${registry.host}/${dest}`));
      expect(pulled.image.configDescriptor.digest).toBe(image.configDescriptor.digest);
    });
  }
});

describe('bad input: each a clear, coded error naming the registry, nothing half-written', () => {
  async function pullError(reference: string, client: RegistryClient = direct): Promise<{ err: TsbuildError; store: Store }> {
    const store = await freshStore();
    const err = await pullImage(client, store, parseReference(reference)).then(
      () => undefined,
      (e: unknown) => e,
    );
    expectCoded(err);
    expect(await store.listTags()).toEqual([]);
    await assertStoreClean(store);
    return { err, store };
  }

  it('unknown host', async () => {
    const { err } = await pullError('no-such-registry.invalid/a/b:c', new RegistryClient({ retry: { attempts: 1 } }));
    expect(err.code).toBe('REGISTRY_UNREACHABLE');
    expect(err.message).toContain('no-such-registry.invalid');
  });

  it('refused connection', async () => {
    const port = await freePort();
    const { err } = await pullError(`127.0.0.1:${port}/a/b:c`);
    expect(err.code).toBe('REGISTRY_UNREACHABLE');
    expect(err.message).toContain(`127.0.0.1:${port}`);
  });

  it('missing manifest and missing repository', async () => {
    const tag = await pullError(`${registry.host}/faults/base:nope`);
    expect(tag.err.code).toBe('REGISTRY_MANIFEST_UNKNOWN');
    expect(tag.err.message).toContain(`${registry.host}/faults/base:nope`);
    const repo = await pullError(`${registry.host}/faults/never-pushed:v1`);
    expect(['REGISTRY_NAME_UNKNOWN', 'REGISTRY_MANIFEST_UNKNOWN']).toContain(repo.err.code);
  });

  it('a manifest listing a blob the registry lacks', async () => {
    const layer = image.manifest.layers[2]!;
    // The registry's own check refuses to store such a manifest...
    const bad = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_IMAGE_MANIFEST, config: image.manifest.config, layers: [{ ...layer, digest: `sha256:${'0'.repeat(64)}` }] }));
    const putErr = await direct.putManifest(parseReference(`${registry.host}/faults/bad`), { reference: 'v1', bytes: bad, mediaType: OCI_IMAGE_MANIFEST }).catch((e: unknown) => e);
    expectCoded(putErr);
    expect((putErr as TsbuildError).code).toBe('REGISTRY_BLOB_UNKNOWN');
    // ...so serve one whose blob the registry does not have.
    const manifest = await direct.getManifest(parseReference(`${registry.host}/faults/base:v1`));
    const doc = JSON.parse(manifest.bytes.toString()) as { layers: { digest: string }[] };
    const missing = doc.layers[3]!.digest;
    proxy.setRules([{ path: new RegExp(`/blobs/${missing}`), respond: { status: 404, headers: { 'content-type': 'application/json' }, body: JSON.stringify({ errors: [{ code: 'BLOB_UNKNOWN', message: 'blob unknown to registry' }] }) } }]);
    try {
      const { err } = await pullError(`${proxy.host}/faults/base:v1`, proxied());
      expect(err.code).toBe('REGISTRY_BLOB_UNKNOWN');
      expect(err.message).toContain(missing);
    } finally {
      proxy.setRules([]);
    }
  });

  it('bytes that do not match their digest', async () => {
    const manifest = await direct.getManifest(parseReference(`${registry.host}/faults/base:v1`));
    const doc = JSON.parse(manifest.bytes.toString()) as { layers: { digest: string }[] };
    const target = doc.layers[1]!.digest;
    proxy.setRules([{ path: new RegExp(`/blobs/${target}`), fault: 'corrupt' }]);
    try {
      const { err, store } = await pullError(`${proxy.host}/faults/base:v1`, proxied());
      expect(err.code).toBe('DIGEST_MISMATCH');
      expect(await store.blobs.hasBlob(parseDigest(target))).toBe(false);
    } finally {
      proxy.setRules([]);
    }
    // A manifest served with wrong bytes for its digest.
    proxy.setRules([{ path: /\/manifests\/sha256:/, fault: 'corrupt' }]);
    try {
      const { err } = await pullError(`${proxy.host}/faults/base@${manifest.digest}`, proxied());
      expect(err.code).toBe('DIGEST_MISMATCH');
    } finally {
      proxy.setRules([]);
    }
  });

  it('a layer damaged where gunzip does not look: the pull fails and stores nothing of it (issue 19)', async () => {
    // Byte 4 of a gzip stream is in its MTIME field, which decompression ignores: the layer
    // still decompresses to its diff ID, and only the layer digest tells the bytes are wrong.
    const manifest = await direct.getManifest(parseReference(`${registry.host}/faults/base:v1`));
    const doc = JSON.parse(manifest.bytes.toString()) as { layers: { digest: string; mediaType: string }[] };
    const target = doc.layers[2]!;
    expect(target.mediaType).toMatch(/gzip$/);
    const diffId = image.manifest.layers[2]!.digest;
    proxy.setRules([{ method: 'GET', path: new RegExp(`/blobs/${target.digest}`), fault: 'corrupt', corruptOffset: 4 }]);
    try {
      const { err, store } = await pullError(`${proxy.host}/faults/base:v1`, proxied());
      expect(err.code).toBe('DIGEST_MISMATCH');
      expect(err.hint).toContain('nothing was stored');
      expect(await store.blobs.hasBlob(diffId)).toBe(false);
      const blobDir = path.dirname(store.blobs.blobPath(diffId));
      const names = await fs.readdir(blobDir).catch(() => [] as string[]);
      expect(names).not.toContain(diffId.slice('sha256:'.length));
    } finally {
      proxy.setRules([]);
    }
  });

  it('oversized, malformed and schema 1 manifests', async () => {
    const big = Buffer.alloc(5 * 1024 * 1024, 0x20);
    const cases: { body: Buffer | string; type: string }[] = [
      { body: big, type: OCI_IMAGE_MANIFEST },
      { body: '{"schemaVersion": 2, "mediaType": ', type: OCI_IMAGE_MANIFEST },
      { body: JSON.stringify({ schemaVersion: 1, name: 'x', tag: 'y', fsLayers: [], history: [], signatures: [] }), type: DOCKER_SCHEMA1_SIGNED_MANIFEST },
    ];
    for (const c of cases) {
      proxy.setRules([{ path: /\/manifests\//, respond: { status: 200, headers: { 'content-type': c.type }, body: c.body } }]);
      try {
        const { err } = await pullError(`${proxy.host}/faults/base:v1`, proxied());
        expect(err.code).toBe('MANIFEST_INVALID');
      } finally {
        proxy.setRules([]);
      }
    }
  });

  it('403 from the registry', async () => {
    proxy.setRules([{ path: /\/manifests\//, respond: { status: 403, headers: { 'content-type': 'application/json' }, body: JSON.stringify({ errors: [{ code: 'DENIED', message: 'requested access to the resource is denied' }] }) } }]);
    try {
      const { err } = await pullError(`${proxy.host}/faults/base:v1`, proxied());
      expect(err.code).toBe('REGISTRY_DENIED');
      expect(err.message).toContain(proxy.host);
    } finally {
      proxy.setRules([]);
    }
  });

  it('a registry that keeps failing: bounded retries, then a temporary-failure error', async () => {
    proxy.setFaults(1, ['503'], 3);
    try {
      const before = proxy.stats.requests;
      const { err } = await pullError(`${proxy.host}/faults/base:v1`, proxied());
      expect(err.code).toBe('REGISTRY_UNAVAILABLE');
      // Bounded: the ping and the manifest request, each tried at most the client's 6 attempts.
      const tried = proxy.stats.requests - before;
      expect(tried).toBeGreaterThan(1);
      expect(tried).toBeLessThanOrEqual(12);
    } finally {
      proxy.setFaults(0, []);
    }
  });
});
