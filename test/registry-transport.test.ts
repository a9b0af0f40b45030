import fs from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { LocalImage } from '../src/image/local-image.js';
import { readLocalImage } from '../src/image/local-image.js';
import { DOCKER_MANIFEST_LIST, DOCKER_MANIFEST, DOCKER_SCHEMA1_SIGNED_MANIFEST, OCI_IMAGE_MANIFEST, canonicalJson, parseDigest, parseReference, sha256Digest } from '../src/oci/index.js';
import { RegistryClient, pullImage, pushImage, type PushProgress } from '../src/registry/index.js';
import { openStore, type Store } from '../src/store/index.js';
import { tool, tsbuild, type RunResult } from './support/cli.js';
import { startFaultProxy, type FaultProxy } from './support/fault-proxy.js';
import { makeStoreImage } from './support/images.js';
import { freePort, nonLoopbackAddress, startRegistry, type RunningRegistry } from './support/registry.js';

// The transport details of issue 4 against the real registry, with the fault proxy in front
// where the test must see or shape the exchange: chunked uploads under a request-size cap and
// resumed from the registry's Range, the 202 answer to a cross-repository mount, Retry-After,
// the parallelism flags, keep-alive, Docker manifest lists, and each bad input at the CLI.
let registry: RunningRegistry;
let proxy: FaultProxy;
let tmp: string;
let direct: RegistryClient;
const clients: RegistryClient[] = [];

beforeAll(async () => {
  registry = await startRegistry({ mode: { kind: 'open' } });
  proxy = await startFaultProxy({ upstream: `http://${registry.host}` });
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'tsbuild-transport-'));
  direct = client();
});

afterAll(async () => {
  await Promise.all(clients.map((c) => c.close()));
  await proxy?.stop();
  await registry?.stop();
  if (tmp) await fs.rm(tmp, { recursive: true, force: true });
});

beforeEach(() => {
  proxy.setRules([]);
  proxy.setFaults(0, []);
});

function client(): RegistryClient {
  const c = new RegistryClient({ retry: { baseDelayMs: 5, maxDelayMs: 50 } });
  clients.push(c);
  return c;
}

let n = 0;
async function freshStore(): Promise<{ store: Store; root: string }> {
  const root = path.join(tmp, `s${++n}`);
  return { store: await openStore(root), root };
}

const viaProxy = (s: string) => parseReference(`${proxy.host}/${s}`);
const viaDirect = (s: string) => parseReference(`${registry.host}/${s}`);

/** Log entries from index `from` on. */
const logSince = (from: number) => proxy.stats.log.slice(from);

const UPLOAD = /\/blobs\/uploads\//;

describe('chunked uploads', () => {
  const CAP = 64 * 1024;
  /** A registry (or the proxy in front of it) that refuses upload requests over CAP bytes, as some cap request bodies. */
  const capRule = {
    path: UPLOAD,
    when: (req: { method?: string; headers: Record<string, string | string[] | undefined> }) =>
      (req.method === 'PATCH' || req.method === 'PUT') && !(typeof req.headers['content-length'] === 'string' && Number(req.headers['content-length']) <= CAP),
    respond: { status: 413, headers: { 'content-type': 'application/json' }, body: JSON.stringify({ errors: [{ code: 'SIZE_INVALID', message: 'request body too large' }] }) },
  };

  it('a size-capped registry takes every blob of a new image in chunks no bigger than --chunk-size', async () => {
    const { store, root } = await freshStore();
    // A new image: no compressed form is known, so without chunks its layers would stream in one PATCH.
    const image = await makeStoreImage(store, 'docker.io/library/capped:v1', [300_000, 100_000]);
    proxy.setRules([capRule]);

    const from = proxy.stats.log.length;
    const pushed = await pushImage(client(), store, image, viaProxy('capped/lib:v1'), { chunkSize: CAP });
    const uploads = logSince(from).filter((e) => UPLOAD.test(e.path) && (e.method === 'PATCH' || e.method === 'PUT'));
    expect(uploads.filter((e) => e.status === 413)).toEqual([]);
    for (const e of uploads) expect(Number(e.contentLength)).toBeLessThanOrEqual(CAP);
    expect(uploads.filter((e) => e.method === 'PATCH').length).toBeGreaterThanOrEqual(Math.ceil(300_000 / CAP) + Math.ceil(100_000 / CAP));

    const check = (await freshStore()).store;
    expect((await pullImage(direct, check, viaDirect(`capped/lib@${pushed.digest}`))).image.configDescriptor.digest).toBe(image.configDescriptor.digest);

    // The CLI: without --chunk-size the registry refuses, with it the push goes through.
    const other = await makeStoreImage(store, 'docker.io/library/capped:v2', [200_000]);
    const refused = await tsbuild(['push', 'capped:v2', `${proxy.host}/capped/cli:v2`], { root });
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/^error: .*capped\/cli.*HTTP 413/m);
    expect(refused.stderr).toContain(proxy.host);
    const ok = await tsbuild(['push', '--chunk-size', String(CAP), 'capped:v2', `${proxy.host}/capped/cli:v2`], { root });
    expect(ok.code, ok.stderr).toBe(0);
    const check2 = (await freshStore()).store;
    expect((await pullImage(direct, check2, viaDirect('capped/cli:v2'))).image.configDescriptor.digest).toBe(other.configDescriptor.digest);
  });

  it('resumes from the Range the registry reports after a chunk is lost', async () => {
    const { store } = await freshStore();
    const image = await makeStoreImage(store, 'docker.io/library/resume:v1', [400_000]);
    let patches = 0;
    // The layer's third PATCH never reaches the registry: the connection is cut. (The config,
    // smaller than a chunk, goes up alongside in one PATCH of its own.)
    proxy.setRules([{ method: 'PATCH', path: UPLOAD, when: (req) => req.headers['content-length'] === String(CAP) && ++patches === 3, fault: 'reset' }]);
    const from = proxy.stats.log.length;
    const pushed = await pushImage(client(), store, image, viaProxy('resume/img:v1'), { chunkSize: CAP, compression: 'uncompressed' });
    const log = logSince(from);
    const cut = log.findIndex((e) => e.method === 'PATCH' && e.status === 0);
    expect(cut).toBeGreaterThan(0);
    expect(log[cut]?.contentRange).toBe(`${2 * CAP}-${3 * CAP - 1}`);
    // It asked the registry how much it has (GET on the session: 204 with Range 0-N)...
    const status = log.slice(cut).find((e) => e.method === 'GET' && UPLOAD.test(e.path));
    expect(status?.status).toBe(204);
    // ...and went on from there: no chunk sent twice, none skipped.
    const configRange = `0-${image.configDescriptor.size - 1}`;
    const ranges = log.filter((e) => e.method === 'PATCH' && e.status === 202 && e.contentRange !== configRange).map((e) => e.contentRange);
    expect(ranges.slice(0, 7)).toEqual([0, 1, 2, 3, 4, 5, 6].map((i) => `${i * CAP}-${Math.min(400_000, (i + 1) * CAP) - 1}`));
    const check = (await freshStore()).store;
    expect((await pullImage(direct, check, viaDirect(`resume/img@${pushed.digest}`))).image.configDescriptor.digest).toBe(image.configDescriptor.digest);
  });
});

describe('uploads of layers compressed by the push', () => {
  it('a small layer goes up in one PUT after its POST, a bigger one streams in a PATCH; both are remembered', async () => {
    const { store } = await freshStore();
    // The store has the layers uncompressed, so the push compresses each: 'tiny' and 20,000
    // bytes are at most 64 KiB, 200,000 are more.
    const image = await makeStoreImage(store, 'docker.io/library/smallput:v1', [Buffer.from('tiny'), 20_000, 200_000]);
    const from = proxy.stats.log.length;
    const pushed = await pushImage(client(), store, image, viaProxy('smallput/a:v1'));
    const uploads = logSince(from).filter((e) => UPLOAD.test(e.path));
    // One session per blob (three layers and the config), each opened by a POST and ended by a PUT.
    expect(uploads.filter((e) => e.method === 'POST').length).toBe(4);
    const puts = uploads.filter((e) => e.method === 'PUT');
    expect(puts.map((e) => e.status)).toEqual([201, 201, 201, 201]);
    // Only the 200,000-byte layer streams: its bytes in a PATCH and a PUT without a body; the
    // other three PUTs carry their blob.
    const patches = uploads.filter((e) => e.method === 'PATCH');
    expect(patches.length).toBe(1);
    expect(puts.filter((e) => Number(e.contentLength ?? '0') > 0).length).toBe(3);
    const check = (await freshStore()).store;
    expect((await pullImage(direct, check, viaDirect(`smallput/a@${pushed.digest}`))).image.configDescriptor.digest).toBe(image.configDescriptor.digest);
    // Their compressed forms were remembered: a push to another repository mounts all three.
    const events: PushProgress[] = [];
    await pushImage(client(), store, image, viaProxy('smallput/b:v1'), { onProgress: (e) => events.push(e) });
    expect(events.filter((e) => e.type === 'layer').map((e) => (e.type === 'layer' ? e.status : ''))).toEqual(['mounted', 'mounted', 'mounted']);
  });
});

describe('cross-repository mounts', () => {
  it('a 202 answer to a mount means the blob is uploaded normally', async () => {
    const { store: src } = await freshStore();
    const image = await makeStoreImage(src, 'docker.io/library/m202:v1', [70_000, 80_000]);
    await pushImage(direct, src, image, viaDirect('m202/a:v1'));
    // A store that pulled it (through the proxy's name) knows repository m202/a has both blobs...
    const { store } = await freshStore();
    const pulled = await pullImage(client(), store, viaProxy('m202/a:v1'));
    const served = JSON.parse((await direct.getManifest(viaDirect('m202/a:v1'))).bytes.toString()) as { layers: { digest: string }[] };
    const gone = served.layers[0]!.digest;
    // ...but one is no longer linked there, so the registry cannot mount it.
    const del = await fetch(`http://${registry.host}/v2/m202/a/blobs/${gone}`, { method: 'DELETE' });
    expect(del.status).toBe(202);

    const local = await readLocalImage(store, pulled.image.manifestDescriptor);
    const events: PushProgress[] = [];
    const from = proxy.stats.log.length;
    const pushed = await pushImage(client(), store, local, viaProxy('m202/b:v1'), { onProgress: (e) => events.push(e) });
    const mounts = logSince(from).filter((e) => e.method === 'POST' && e.path.includes('mount='));
    expect(mounts.find((e) => e.path.includes(encodeURIComponent(gone)))?.status).toBe(202);
    const final = new Map(events.flatMap((e) => (e.type === 'layer' ? [[e.digest, e.status] as const] : [])));
    expect(final.get(parseDigest(gone))).toBe('uploaded');
    expect(final.get(parseDigest(served.layers[1]!.digest))).toBe('mounted');
    const check = (await freshStore()).store;
    expect((await pullImage(direct, check, viaDirect(`m202/b@${pushed.digest}`))).image.configDescriptor.digest).toBe(image.configDescriptor.digest);

    // The client's own mount-then-upload: a 202 session is used for the upload.
    const blob = Buffer.from('mount fallback blob');
    const digest = sha256Digest(blob);
    const { Readable } = await import('node:stream');
    const result = await direct.uploadBlob({ repo: viaDirect('m202/c'), digest, size: blob.byteLength, source: async (s, e) => Readable.from([blob.subarray(s, e)]), mountFrom: ['m202/never-pushed'] });
    expect(result).toBe('uploaded');
    expect(await direct.blobSize(viaDirect('m202/c'), digest)).toBe(blob.byteLength);
  });
});

describe('Docker manifest lists', () => {
  it('chooses the platform from a Docker manifest list of schema 2 manifests', async () => {
    const { store } = await freshStore();
    const amd = await makeStoreImage(store, 'docker.io/library/dl:amd64', [1500], { platform: { os: 'linux', architecture: 'amd64' } });
    const arm = await makeStoreImage(store, 'docker.io/library/dl:arm64', [2500], { platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } });
    const { exportOciLayout } = await import('../src/store/archive-export.js');
    const entries = [];
    for (const [img, arch] of [
      [amd, 'amd64'],
      [arm, 'arm64'],
    ] as const) {
      const layout = path.join(tmp, `dl-${arch}`);
      await exportOciLayout(store, [{ ...img, names: [] }], layout, { compression: 'gzip' });
      await tool('skopeo', ['copy', '-q', '--dest-tls-verify=false', '--format', 'v2s2', `oci:${layout}`, `docker://${registry.host}/dlist/img:${arch}`]);
      const raw = (await tool('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${registry.host}/dlist/img:${arch}`])).stdout;
      expect((JSON.parse(raw) as { mediaType: string }).mediaType).toBe(DOCKER_MANIFEST);
      entries.push({ mediaType: DOCKER_MANIFEST, digest: sha256Digest(Buffer.from(raw)), size: Buffer.byteLength(raw), platform: arch === 'amd64' ? { os: 'linux', architecture: 'amd64' } : { os: 'linux', architecture: 'arm64', variant: 'v8' } });
    }
    const list = canonicalJson({ schemaVersion: 2, mediaType: DOCKER_MANIFEST_LIST, manifests: entries });
    await direct.putManifest(viaDirect('dlist/img'), { reference: 'multi', bytes: list, mediaType: DOCKER_MANIFEST_LIST });
    // The registry only serves the list to a client whose Accept names it; others get the amd64 image.
    const pulled = await pullImage(direct, (await freshStore()).store, viaDirect('dlist/img:multi'), { platform: { os: 'linux', architecture: 'arm64' } });
    expect(pulled.image.configDescriptor.digest).toBe(arm.configDescriptor.digest);
    expect(pulled.repoDigest).toBe(`${registry.host}/dlist/img@${sha256Digest(list)}`);
    // The CLI's --platform, and its message when the list has no such platform.
    const cli = await tsbuild(['pull', '--platform', 'linux/arm64', `${registry.host}/dlist/img:multi`], { root: (await freshStore()).root });
    expect(cli.code, cli.stderr).toBe(0);
    expect(cli.stdout.trim()).toBe(arm.configDescriptor.digest);
    expect(cli.stderr).toContain('(linux/arm64');
    const none = await tsbuild(['pull', '--platform', 'linux/s390x', `${registry.host}/dlist/img:multi`], { root: (await freshStore()).root });
    expect(none.code).toBe(1);
    expect(none.stderr).toMatch(/^error: .*dlist\/img:multi has no image for linux\/s390x/m);
    expect(none.stderr).toMatch(/hint: it has linux\/amd64, linux\/arm64/);
  });
});

describe('checks on what the registry answers', () => {
  it('a registry that says it stored another digest than was sent: a protocol error, for blobs and manifests', async () => {
    const { store } = await freshStore();
    const image = await makeStoreImage(store, 'docker.io/library/dcd:v1', [Buffer.from('dcd layer')]);
    const wrong = `sha256:${'1'.repeat(64)}`;
    proxy.setRules([{ method: 'PUT', path: /\/blobs\/uploads\/.*digest=/, respond: { status: 201, headers: { 'docker-content-digest': wrong, location: '/v2/dcd/img/blobs/x' } } }]);
    const blobErr = await pushImage(client(), store, image, viaProxy('dcd/img:v1')).catch((e: unknown) => e);
    expect((blobErr as { code?: string }).code).toBe('REGISTRY_PROTOCOL');
    expect((blobErr as Error).message).toContain(`the registry stored the blob as ${wrong}`);
    expect((blobErr as Error).message).toContain(proxy.host);
    proxy.setRules([{ method: 'PUT', path: /\/manifests\//, respond: { status: 201, headers: { 'docker-content-digest': wrong } } }]);
    const manifestErr = await pushImage(client(), store, image, viaProxy('dcd/img:v1')).catch((e: unknown) => e);
    expect((manifestErr as { code?: string }).code).toBe('REGISTRY_PROTOCOL');
    expect((manifestErr as Error).message).toContain(`the registry stored the manifest as ${wrong}`);
  });

  it('a request that gets no answer times out and is tried again', async () => {
    const { store } = await freshStore();
    const image = await makeStoreImage(store, 'docker.io/library/stall:v1', [20_000]);
    await pushImage(direct, store, image, viaDirect('stall/img:v1'));
    let first = true;
    proxy.setRules([{ method: 'GET', path: /\/manifests\/v1$/, when: () => (first ? !(first = false) : false), fault: 'stall' }]);
    const c = new RegistryClient({ timeoutMs: 2000, retry: { baseDelayMs: 5 } });
    clients.push(c);
    const from = proxy.stats.log.length;
    const pulled = await pullImage(c, (await freshStore()).store, viaProxy('stall/img:v1'));
    expect(pulled.image.configDescriptor.digest).toBe(image.configDescriptor.digest);
    const manifests = logSince(from).filter((e) => e.method === 'GET' && /\/manifests\/v1$/.test(e.path));
    expect(manifests.map((e) => e.status)).toEqual([0, 200]);
  });
});

describe('retries, parallelism and connections at the CLI', () => {
  async function storeImage(name: string, layers: number[]): Promise<{ root: string; image: LocalImage }> {
    const { store, root } = await freshStore();
    return { root, image: await makeStoreImage(store, name, layers) };
  }

  it('waits as long as Retry-After says, then succeeds', async () => {
    const { root } = await storeImage('docker.io/library/ra:v1', [10_000]);
    expect((await tsbuild(['push', '-q', 'ra:v1', `${registry.host}/ra/img:v1`], { root })).code).toBe(0);
    let first = true;
    proxy.setRules([
      {
        method: 'GET',
        path: /\/manifests\/v1$/,
        when: () => (first ? !(first = false) : false),
        respond: { status: 429, headers: { 'retry-after': '2', 'content-type': 'application/json' }, body: JSON.stringify({ errors: [{ code: 'TOOMANYREQUESTS', message: 'slow down' }] }) },
      },
    ]);
    const r = await tsbuild(['pull', '--log-level', 'info', `${proxy.host}/ra/img:v1`], { root: (await freshStore()).root });
    expect(r.code, r.stderr).toBe(0);
    const retry = r.stderr.split('\n').find((l) => l.includes('retrying'));
    expect(retry).toBeDefined();
    expect(JSON.parse(retry!)).toMatchObject({ status: 429, waitMs: 2000, retry: 1 });
  });

  it('transfers at most --max-concurrent-downloads/-uploads blobs at once (default 4), over kept-alive connections', async () => {
    const { root } = await storeImage('docker.io/library/par:v1', [500_000, 500_000, 500_000, 500_000, 500_000, 500_000]);
    const push = async (args: string[], dest: string): Promise<number> => {
      proxy.stats.maxInflight = 0;
      const r = await tsbuild(['push', '-q', ...args, 'par:v1', `${proxy.host}/${dest}`], { root });
      expect(r.code, r.stderr).toBe(0);
      return proxy.stats.maxInflight;
    };
    expect(await push(['--max-concurrent-uploads', '1'], 'par/one:v1')).toBe(1);
    const pull = async (args: string[]): Promise<{ max: number; requests: number; connections: number }> => {
      proxy.stats.maxInflight = 0;
      const before = { requests: proxy.stats.requests, connections: proxy.stats.connections };
      const r = await tsbuild(['pull', '-q', ...args, `${proxy.host}/par/one:v1`], { root: (await freshStore()).root });
      expect(r.code, r.stderr).toBe(0);
      return { max: proxy.stats.maxInflight, requests: proxy.stats.requests - before.requests, connections: proxy.stats.connections - before.connections };
    };
    expect((await pull(['--max-concurrent-downloads', '1'])).max).toBe(1);
    const dflt = await pull([]);
    expect(dflt.max).toBeGreaterThan(1);
    expect(dflt.max).toBeLessThanOrEqual(4);
    // Keep-alive: six layers, a config, a manifest and a ping over fewer connections than requests.
    expect(dflt.requests).toBeGreaterThanOrEqual(9);
    expect(dflt.connections).toBeLessThan(dflt.requests);
    expect((await pull(['--max-concurrent-downloads', '2'])).max).toBeLessThanOrEqual(2);
    const bad = await tsbuild(['pull', '--max-concurrent-downloads', '0', `${proxy.host}/par/one:v1`], { root });
    expect(bad.code).toBe(2); // a usage error
    expect(bad.stderr).toMatch(/^error: --max-concurrent-downloads/);
  });
});

describe('bad input at the CLI: exit 1, the reference and the registry named, nothing half-written', () => {
  let base: string;
  let missingLayer: string;
  let corruptLayer: string;
  beforeAll(async () => {
    const { store, root } = await freshStore();
    await makeStoreImage(store, 'docker.io/library/badin:v1', [Buffer.from('small layer'), 120_000, 130_000]);
    expect((await tsbuild(['push', '-q', 'badin:v1', `${registry.host}/bad/in:v1`], { root })).code).toBe(0);
    const doc = JSON.parse((await direct.getManifest(viaDirect('bad/in:v1'))).bytes.toString()) as { layers: { digest: string }[] };
    missingLayer = doc.layers[1]!.digest;
    corruptLayer = doc.layers[2]!.digest;
    base = `${proxy.host}/bad/in:v1`;
  });

  async function expectClean(r: RunResult, root: string, reference: string, registryName: string): Promise<void> {
    expect(r.code, r.stderr).toBe(1);
    expect(r.stderr).not.toMatch(/\n\s+at /);
    expect(r.stdout).toBe('');
    // Progress lines may come first; the error is one line, then a hint.
    const first = r.stderr.split('\n').find((l) => l.startsWith('error: '));
    expect(first, r.stderr).toBeDefined();
    expect(first).toContain(reference);
    expect(first).toContain(registryName);
    const store = await openStore(root);
    expect(await store.listTags()).toEqual([]);
    expect(await fs.readdir(store.paths.tmp)).toEqual([]);
    for (const d of await store.blobs.listBlobs()) expect((await store.blobs.verifyBlob(d)).ok, d).toBe(true);
  }

  const json = (code: string, message: string) => JSON.stringify({ errors: [{ code, message }] });

  it.each([
    ['unknown host', () => ({ ref: 'no-such-registry.invalid/a/b:c', rules: [] })],
    ['refused connection', async () => ({ ref: `127.0.0.1:${await freePort()}/a/b:c`, rules: [] })],
    ['403', () => ({ ref: base, rules: [{ path: /\/manifests\//, respond: { status: 403, headers: { 'content-type': 'application/json' }, body: json('DENIED', 'requested access to the resource is denied') } }] })],
    ['a missing manifest', () => ({ ref: `${proxy.host}/bad/in:nope`, rules: [] })],
    [
      'a manifest listing a blob the registry lacks',
      () => ({ ref: base, rules: [{ path: new RegExp(`/blobs/${missingLayer}`), respond: { status: 404, headers: { 'content-type': 'application/json' }, body: json('BLOB_UNKNOWN', 'blob unknown to registry') } }] }),
    ],
    ['bytes that do not match their digest', () => ({ ref: base, rules: [{ path: new RegExp(`/blobs/${corruptLayer}`), fault: 'corrupt' as const }] })],
    ['a manifest whose bytes do not match Docker-Content-Digest', () => ({ ref: base, rules: [{ path: /\/manifests\/v1$/, fault: 'corrupt' as const }] })],
    ['a malformed manifest', () => ({ ref: base, rules: [{ path: /\/manifests\//, respond: { status: 200, headers: { 'content-type': OCI_IMAGE_MANIFEST }, body: '{"schemaVersion": 2, "layers": [' } }] })],
    ['an oversized manifest', () => ({ ref: base, rules: [{ path: /\/manifests\//, respond: { status: 200, headers: { 'content-type': OCI_IMAGE_MANIFEST }, body: Buffer.alloc(5 * 1024 * 1024, 0x20) } }] })],
    [
      'a schema 1 manifest',
      () => ({
        ref: base,
        rules: [{ path: /\/manifests\//, respond: { status: 200, headers: { 'content-type': DOCKER_SCHEMA1_SIGNED_MANIFEST }, body: JSON.stringify({ schemaVersion: 1, name: 'bad/in', tag: 'v1', fsLayers: [], history: [], signatures: [] }) } }],
      }),
    ],
  ])('%s', async (what, make) => {
    const { ref, rules } = await make();
    proxy.setRules(rules);
    const { root } = await freshStore();
    const r = await tsbuild(['pull', ref], { root });
    const registryName = ref.slice(0, ref.indexOf('/'));
    const reference = ref.slice(registryName.length + 1);
    await expectClean(r, root, reference, registryName);
    if (what === 'a schema 1 manifest') expect(r.stderr).toMatch(/schema ?1/i);
    if (what === 'an oversized manifest') expect(r.stderr).toMatch(/limit/);
  });
});

describe('TLS and --insecure-registry at the CLI (registries on a non-loopback address)', () => {
  const HOST = nonLoopbackAddress();
  let tlsReg: RunningRegistry;
  let plainReg: RunningRegistry;
  let caFile: string;
  let env: NodeJS.ProcessEnv;
  let root: string;
  beforeAll(async () => {
    tlsReg = await startRegistry({ mode: { kind: 'basic-tls', users: { alice: 'pw-alice-tls' } }, listenHost: HOST });
    plainReg = await startRegistry({ mode: { kind: 'open' }, listenHost: HOST });
    caFile = path.join(tmp, 'registry-ca.pem');
    await fs.writeFile(caFile, tlsReg.caPem!);
    env = { DOCKER_CONFIG: path.join(tmp, 'tls-docker'), REGISTRY_AUTH_FILE: '', XDG_RUNTIME_DIR: path.join(tmp, 'tls-xdg'), SSL_CERT_FILE: '' };
    const s = await freshStore();
    root = s.root;
    await makeStoreImage(s.store, 'docker.io/library/tlsimg:v1', [Buffer.from('tls layer'), 20_000]);
  });
  afterAll(async () => {
    await tlsReg?.stop();
    await plainReg?.stop();
  });

  it('a private CA: refused without it, trusted from --tls-ca-file or SSL_CERT_FILE', async () => {
    const login = (extra: string[], e: NodeJS.ProcessEnv = env) => tsbuild(['login', tlsReg.host, '-u', 'alice', '--password-stdin', ...extra], { env: e, input: 'pw-alice-tls\n' });
    const refused = await login([]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(new RegExp(`^error: .*TLS connection to ${tlsReg.host.replace(/\./g, '\\.')} failed`, 'm'));
    expect(refused.stderr).toContain('--tls-ca-file');
    expect(refused.stderr).not.toContain('pw-alice-tls');
    const ok = await login(['--tls-ca-file', caFile]);
    expect(ok.code, ok.stderr).toBe(0);

    const dest = `${tlsReg.host}/tls/img:v1`;
    const noCa = await tsbuild(['push', '-q', 'tlsimg:v1', dest], { root, env });
    expect(noCa.code).toBe(1);
    expect(noCa.stderr).toContain(tlsReg.host);
    const pushed = await tsbuild(['push', '-q', 'tlsimg:v1', dest], { root, env: { ...env, SSL_CERT_FILE: caFile } });
    expect(pushed.code, pushed.stderr).toBe(0);
    expect(pushed.stdout.trim()).toMatch(/^sha256:[0-9a-f]{64}$/);
    const pulled = await tsbuild(['pull', '-q', '--tls-ca-file', caFile, dest], { root: (await freshStore()).root, env });
    expect(pulled.code, pulled.stderr).toBe(0);
    const missing = await tsbuild(['pull', '-q', '--tls-ca-file', path.join(tmp, 'no-such-ca.pem'), dest], { root: (await freshStore()).root, env });
    expect(missing.code).toBe(2); // a usage error
    expect(missing.stderr).toMatch(/^error: cannot read the CA certificate file .*no-such-ca\.pem/);
  });

  it('plain HTTP to a registry that is not loopback only with --insecure-registry', async () => {
    const dest = `${plainReg.host}/plain/img:v1`;
    const refused = await tsbuild(['push', '-q', 'tlsimg:v1', dest], { root, env });
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/^error: .*TLS connection to .* failed/m);
    expect(refused.stderr).toContain(`--insecure-registry ${plainReg.host}`);
    const pushed = await tsbuild(['push', '-q', '--insecure-registry', plainReg.host, 'tlsimg:v1', dest], { root, env });
    expect(pushed.code, pushed.stderr).toBe(0);
    const pulled = await tsbuild(['pull', '-q', '--insecure-registry', `http://${plainReg.host}`, dest], { root: (await freshStore()).root, env });
    expect(pulled.code, pulled.stderr).toBe(0);
    const { stdout: raw } = await tool('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${dest}`]);
    expect(sha256Digest(Buffer.from(raw))).toBe(pushed.stdout.trim());
  });
});

describe('loopback registries', () => {
  it('a plain-HTTP one is asked over plain HTTP first: no TLS handshake reaches it', async () => {
    // A TCP relay in front of the registry that notes each connection's first byte (0x16: a
    // TLS handshake record).
    const firstBytes: number[] = [];
    const relay = net.createServer((client) => {
      const upstream = net.connect(registry.port, '127.0.0.1');
      client.once('data', (d: Buffer) => firstBytes.push(d[0]!));
      client.pipe(upstream).pipe(client);
      const close = () => {
        client.destroy();
        upstream.destroy();
      };
      client.on('error', close);
      upstream.on('error', close);
    });
    await new Promise<void>((resolve) => relay.listen(0, '127.0.0.1', resolve));
    try {
      const s = await freshStore();
      await makeStoreImage(s.store, 'docker.io/library/loopimg:v1', [Buffer.from('loopback layer'), 10_000]);
      const dest = `127.0.0.1:${(relay.address() as net.AddressInfo).port}/loop/img:v1`;
      const pushed = await tsbuild(['push', '-q', 'loopimg:v1', dest], { root: s.root });
      expect(pushed.code, pushed.stderr).toBe(0);
      expect(firstBytes.length).toBeGreaterThan(0);
      expect(firstBytes.filter((b) => b === 0x16)).toEqual([]);
    } finally {
      relay.close();
    }
  });

  it('a TLS-only one is still reached: plain HTTP is refused, then HTTPS without verification', async () => {
    const tlsLoop = await startRegistry({ mode: { kind: 'basic-tls', users: { alice: 'pw-loop' } } });
    try {
      expect(tlsLoop.host.startsWith('127.0.0.1:')).toBe(true);
      const env = { DOCKER_CONFIG: path.join(tmp, 'loop-docker'), REGISTRY_AUTH_FILE: '', XDG_RUNTIME_DIR: path.join(tmp, 'loop-xdg') };
      const login = await tsbuild(['login', tlsLoop.host, '-u', 'alice', '--password-stdin'], { env, input: 'pw-loop\n' });
      expect(login.code, login.stderr).toBe(0);
      const s = await freshStore();
      await makeStoreImage(s.store, 'docker.io/library/tlsloop:v1', [Buffer.from('tls loopback layer'), 10_000]);
      const pushed = await tsbuild(['push', '-q', 'tlsloop:v1', `${tlsLoop.host}/loop/tls:v1`], { root: s.root, env });
      expect(pushed.code, pushed.stderr).toBe(0);
      const wrong = await tsbuild(['login', tlsLoop.host, '-u', 'alice', '--password-stdin'], { env, input: 'not-it\n' });
      expect(wrong.code).toBe(1);
      expect(wrong.stderr).not.toContain('not-it');
    } finally {
      await tlsLoop.stop();
    }
  });
});
