#!/usr/bin/env node
// Push/pull throughput of a ~500 MB image (5 random 100 MB layers) against a loopback
// docker-registry, next to `skopeo copy` of the same image in the same run.
// Usage: npx tsc -p . && node test/support/bench-registry.mjs [layers=5] [layerMiB=100] [random|usr]
// Needs docker-registry and skopeo. `random` layers are incompressible: gzip's worst case for
// zlib (skopeo's klauspost/pgzip detects them and stores blocks); `usr` layers are consecutive
// slices of `tar -c /usr` (real binaries and text, about 2:1 with gzip).
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const dist = (p) => path.join(repo, 'dist', p);
const { openStore } = await import(dist('src/store/index.js'));
const { sealImage } = await import(dist('src/image/seal.js'));
const { exportOciLayout } = await import(dist('src/store/archive-export.js'));
const { readLocalImage } = await import(dist('src/image/local-image.js'));

const layers = Number(process.argv[2] ?? 5);
const layerMiB = Number(process.argv[3] ?? 100);
const kind = process.argv[4] ?? 'random';
const totalMB = (layers * layerMiB * 1024 * 1024) / 1e6;
const tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'tsbuild-bench-'));

async function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

async function startRegistry(name) {
  const dir = path.join(tmp, name);
  await fs.mkdir(path.join(dir, 'storage'), { recursive: true });
  const port = await freePort();
  const config = path.join(dir, 'config.yml');
  await fs.writeFile(config, `version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: ${dir}/storage\nhttp:\n  addr: 127.0.0.1:${port}\n  secret: bench\n`);
  const child = spawn('docker-registry', ['serve', config], { stdio: 'ignore' });
  for (let i = 0; i < 200; i++) {
    const ok = await fetch(`http://127.0.0.1:${port}/v2/`).then((r) => r.ok, () => false);
    if (ok) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  return { host: `127.0.0.1:${port}`, child };
}

function randomStream(size) {
  let left = size;
  return new Readable({
    read() {
      if (left <= 0) return this.push(null);
      const n = Math.min(left, 4 * 1024 * 1024);
      left -= n;
      this.push(randomBytes(n));
    },
  });
}

function timed(label, cmd, args, env = {}) {
  const t0 = process.hrtime.bigint();
  execFileSync(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  const s = Number(process.hrtime.bigint() - t0) / 1e9;
  console.log(`${label.padEnd(58)} ${s.toFixed(2).padStart(7)} s  ${(totalMB / s).toFixed(0).padStart(5)} MB/s`);
  return s;
}

const regA = await startRegistry('regA');
const regB = await startRegistry('regB');
const regC = await startRegistry('regC');
const regD = await startRegistry('regD');
try {
  const rootA = path.join(tmp, 'storeA');
  const store = await openStore(rootA);
  const stored = [];
  if (kind === 'usr') {
    // Consecutive slices of one tar stream of /usr.
    const tar = spawn('tar', ['-cf', '-', '/usr'], { stdio: ['ignore', 'pipe', 'ignore'] });
    const it = tar.stdout[Symbol.asyncIterator]();
    let carry = Buffer.alloc(0);
    for (let i = 0; i < layers; i++) {
      const want = layerMiB * 1024 * 1024;
      const parts = [];
      let have = 0;
      while (have < want) {
        const c = carry.length > 0 ? carry : (await it.next()).value;
        carry = Buffer.alloc(0);
        if (c === undefined) throw new Error('/usr is too small');
        const take = c.subarray(0, want - have);
        carry = c.subarray(take.length);
        parts.push(take);
        have += take.length;
      }
      const info = await store.blobs.putBytes(Buffer.concat(parts));
      stored.push({ diffId: info.digest, size: info.size });
    }
    tar.kill();
  } else {
    for (let i = 0; i < layers; i++) {
      const info = await store.blobs.putBlob(randomStream(layerMiB * 1024 * 1024));
      stored.push({ diffId: info.digest, size: info.size });
    }
  }
  const config = { architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: stored.map((s) => s.diffId) }, config: {} };
  const sealed = await sealImage(store, config, stored);
  await store.setTag('docker.io/library/bench:v1', sealed.manifestDescriptor);
  const image = await readLocalImage(store, sealed.manifestDescriptor);
  const layoutRaw = path.join(tmp, 'layout-raw');
  await exportOciLayout(store, [{ manifest: image.manifest, config: image.config, names: [] }], layoutRaw, { compression: 'uncompressed' });
  const layoutGz = path.join(tmp, 'layout-gz');
  const tsb = (args, root) => ['node', [dist('cmd/tsbuild.cjs'), ...args], { TSBUILD_ROOT: root }];
  console.log(`image: ${layers} layers x ${layerMiB} MiB ${kind} (${totalMB.toFixed(0)} MB); node ${process.version}; ${os.cpus().length} CPUs; load ${os.loadavg()[0].toFixed(1)}`);
  console.log('-- push (compress + upload)');
  timed('tsbuild push (gzip on the fly, first time)', ...tsb(['push', '-q', 'bench:v1', `${regA.host}/bench/ts:v1`], rootA));
  timed('skopeo copy oci:(uncompressed) -> docker:// (gzip on the fly)', 'skopeo', ['copy', '-q', '--dest-tls-verify=false', `oci:${layoutRaw}`, `docker://${regA.host}/bench/sk:v1`]);
  // Forget the level-6 blobs for this run (a push reuses any gzip form it knows), then restore.
  const meta = path.join(rootA, 'meta');
  const saved = path.join(tmp, 'meta-saved');
  await fs.cp(meta, saved, { recursive: true });
  for (const f of await fs.readdir(meta)) if (/^(compressed|layer-sources)\./.test(f)) await fs.rm(path.join(meta, f));
  timed('tsbuild push --compression-level 1 (fresh registry)', ...tsb(['push', '-q', '--compression-level', '1', 'bench:v1', `${regD.host}/bench/ts:v1`], rootA));
  await fs.rm(meta, { recursive: true });
  await fs.cp(saved, meta, { recursive: true });
  console.log('-- push (upload only: compressed blobs already at hand)');
  timed('tsbuild push to a fresh registry (gzip remembered)', ...tsb(['push', '-q', 'bench:v1', `${regB.host}/bench/ts:v1`], rootA));
  await exportOciLayout(store, [{ manifest: image.manifest, config: image.config, names: [] }], layoutGz, { compression: 'gzip' });
  timed('skopeo copy oci:(gzip) -> docker:// fresh registry', 'skopeo', ['copy', '-q', '--dest-tls-verify=false', `oci:${layoutGz}`, `docker://${regC.host}/bench/sk:v1`]);
  timed('tsbuild push again, other repo (HEAD + cross-repo mount)', ...tsb(['push', '-q', 'bench:v1', `${regA.host}/bench/ts-mount:v1`], rootA));
  console.log('-- pull');
  timed('tsbuild pull (download, verify, gunzip, verify diff IDs)', ...tsb(['pull', '-q', `${regA.host}/bench/ts:v1`], path.join(tmp, 'storeB')));
  timed('skopeo copy docker:// -> oci: (download, verify)', 'skopeo', ['copy', '-q', '--src-tls-verify=false', `docker://${regA.host}/bench/ts:v1`, `oci:${path.join(tmp, 'sk-pull')}`]);
  timed('tsbuild pull again (everything present)', ...tsb(['pull', '-q', `${regA.host}/bench/ts:v1`], path.join(tmp, 'storeB')));
} finally {
  for (const r of [regA, regB, regC, regD]) r.child.kill('SIGTERM');
  await fs.rm(tmp, { recursive: true, force: true });
}
