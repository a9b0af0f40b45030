import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fs from 'node:fs/promises';
import path from 'node:path';
import { requireTool, tempDir, tool, tsbuild, writeTree } from './support/cli.js';
import { pushMultiarchBusybox, storeWithMultiarchBusybox } from './support/multiarch.js';
import { CLI, MAKE_BUSYBOX, withTestUser } from './support/rootless.js';
import { startRegistry, type RunningRegistry } from './support/registry.js';

// Multi-platform builds: one build for linux/amd64 and linux/arm64, the arm64 RUN steps under
// qemu-user through binfmt_misc (scripts/setup registers Debian's qemu-user-static), the result
// one OCI image index. Read back with skopeo and GNU tar, run with podman.
let work: string;
let root: string;
let registry: RunningRegistry;
const PODMAN_RUN = ['run', '--runtime', 'runc', '--ulimit', 'nofile=1024:1024', '--ulimit', 'nproc=1024:1024', '--rm', '--tls-verify=false'];

interface OciIndex {
  manifests: Array<{ mediaType: string; digest: string; size: number; platform?: { os: string; architecture: string; variant?: string }; annotations?: Record<string, string> }>;
}
interface OciManifest {
  config: { digest: string };
  layers: Array<{ digest: string }>;
}

beforeAll(async () => {
  if (process.getuid?.() !== 0) throw new Error('these tests run RUN steps as root; run the suite as root (CI does)');
  for (const t of ['bwrap', 'podman', 'skopeo', 'tar', 'qemu-aarch64-static']) await requireTool(t);
  const reg = await fs.readFile('/proc/sys/fs/binfmt_misc/qemu-aarch64', 'utf8').catch(() => '');
  if (!/^enabled/.test(reg) || !/flags:.*F/.test(reg)) throw new Error('qemu-aarch64 is not registered in binfmt_misc with the F flag; run scripts/setup');
  work = await tempDir('platforms');
  root = path.join(work, 'store');
  await storeWithMultiarchBusybox(root);
  registry = await startRegistry({ mode: { kind: 'open' } });
}, 300_000);
afterAll(async () => {
  await registry?.stop();
  await fs.rm(work, { recursive: true, force: true });
});

async function ctxWith(files: Record<string, string>): Promise<string> {
  const ctx = await fs.mkdtemp(path.join(work, 'ctx-'));
  await writeTree(ctx, files);
  return ctx;
}

async function readJson<T>(file: string): Promise<T> {
  return JSON.parse(await fs.readFile(file, 'utf8')) as T;
}

/** A layout's platforms -> manifest, from index.json -> the image index -> each manifest. */
async function layoutImages(dir: string): Promise<Map<string, OciManifest>> {
  const top = await readJson<OciIndex>(path.join(dir, 'index.json'));
  expect(top.manifests).toHaveLength(1);
  expect(top.manifests[0]!.mediaType).toBe('application/vnd.oci.image.index.v1+json');
  const index = await readJson<OciIndex>(path.join(dir, 'blobs/sha256', top.manifests[0]!.digest.slice(7)));
  const out = new Map<string, OciManifest>();
  for (const m of index.manifests) out.set(`${m.platform!.os}/${m.platform!.architecture}`, await readJson<OciManifest>(path.join(dir, 'blobs/sha256', m.digest.slice(7))));
  return out;
}

/** The files of one layer blob (gzip) of a layout, extracted to a new directory. */
async function extractLayer(dir: string, digest: string): Promise<string> {
  const out = await fs.mkdtemp(path.join(work, 'layer-'));
  await tool('tar', ['-xzf', path.join(dir, 'blobs/sha256', digest.slice(7)), '-C', out]);
  return out;
}

const TWO_PLATFORM_DOCKERFILE = [
  'FROM --platform=$BUILDPLATFORM busybox:latest AS gen',
  'RUN head -c 32 /dev/urandom | od -An -tx1 > /rand && echo "gen ran on $(uname -m)"',
  'FROM busybox:multi',
  'ARG TARGETPLATFORM',
  'ARG TARGETARCH',
  'ARG BUILDPLATFORM',
  'COPY --from=gen /rand /rand',
  'RUN uname -m > /arch && echo "$TARGETPLATFORM $TARGETARCH $BUILDPLATFORM" > /args',
  '',
].join('\n');

describe('build --platform linux/amd64,linux/arm64', () => {
  it('builds one image per platform into one index; the $BUILDPLATFORM stage runs once; arm64 RUN runs emulated', async () => {
    const ctx = await ctxWith({ Dockerfile: TWO_PLATFORM_DOCKERFILE });
    const layout = path.join(work, 'two-layout');
    const r = await tsbuild(['build', '--progress', 'plain', '--platform', 'linux/amd64,linux/arm64', '-t', 'two:1', '--output', `type=oci-layout,dest=${layout}`, ctx], { root });
    expect(r.stderr).not.toMatch(/ERROR/);
    expect(r.code).toBe(0);
    // The generating stage executed once: one "gen ran on" line, from the host's CPU.
    expect(r.stderr.match(/^#\d+ gen ran on/gm)).toHaveLength(1);
    expect(r.stderr).toMatch(/^#\d+ gen ran on x86_64$/m);
    const images = await layoutImages(layout);
    expect([...images.keys()].sort()).toEqual(['linux/amd64', 'linux/arm64']);
    const amd = images.get('linux/amd64')!;
    const arm = images.get('linux/arm64')!;
    // Base layer differs (two busyboxes); the COPY --from=gen layer is the same blob in both.
    expect(amd.layers[0]!.digest).not.toBe(arm.layers[0]!.digest);
    expect(amd.layers[1]!.digest).toBe(arm.layers[1]!.digest);
    const armRun = await extractLayer(layout, arm.layers[2]!.digest);
    expect((await fs.readFile(path.join(armRun, 'arch'), 'utf8')).trim()).toBe('aarch64');
    expect((await fs.readFile(path.join(armRun, 'args'), 'utf8')).trim()).toBe('linux/arm64 arm64 linux/amd64');
    const amdRun = await extractLayer(layout, amd.layers[2]!.digest);
    expect((await fs.readFile(path.join(amdRun, 'arch'), 'utf8')).trim()).toBe('x86_64');
    expect((await fs.readFile(path.join(amdRun, 'args'), 'utf8')).trim()).toBe('linux/amd64 amd64 linux/amd64');
    const armConfig = await readJson<{ architecture: string; os: string }>(path.join(layout, 'blobs/sha256', arm.config.digest.slice(7)));
    expect(armConfig.architecture).toBe('arm64');
    // skopeo reads the layout's index and picks the arm64 image by platform.
    const inspected = JSON.parse((await tool('skopeo', ['inspect', '--override-arch', 'arm64', `oci:${layout}`])).stdout) as { Architecture: string };
    expect(inspected.Architecture).toBe('arm64');
    const raw = JSON.parse((await tool('skopeo', ['inspect', '--raw', `oci:${layout}`])).stdout) as OciIndex;
    expect(raw.manifests.map((m) => m.platform?.architecture).sort()).toEqual(['amd64', 'arm64']);

    // The store tags the index: a rebuild is fully cached and gives the same index.
    const again = await tsbuild(['build', '--progress', 'plain', '--platform', 'linux/amd64,linux/arm64', '-t', 'two:1', ctx], { root });
    expect(again.code).toBe(0);
    expect(again.stderr).not.toMatch(/^#\d+ gen ran on/m);
    // --no-cache takes nothing from earlier builds, yet the platforms still share the stage.
    const cold = await tsbuild(['build', '--progress', 'plain', '--no-cache', '--platform', 'linux/amd64,linux/arm64', '-t', 'two:1', ctx], { root });
    expect(cold.code).toBe(0);
    expect(cold.stderr.match(/^#\d+ gen ran on/gm)).toHaveLength(1);
  }, 300_000);

  it('tags the index in the store; run --platform runs each image, the arm64 one emulated', async () => {
    const ctx = await ctxWith({ Dockerfile: 'FROM busybox:multi\nARG TARGETARCH\nRUN echo "$TARGETARCH $(uname -m)" > /who\nCMD ["cat", "/who"]\n' });
    const r = await tsbuild(['build', '-q', '--platform', 'linux/arm64,linux/amd64', '-t', 'who:1', ctx], { root });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    // stdout: the index digest, which the store keeps under the tag.
    const id = r.stdout.trim();
    expect(id).toMatch(/^sha256:[a-f0-9]{64}$/);
    const index = await readJson<OciIndex>(path.join(root, 'blobs/sha256', id.slice(7)));
    expect(index.manifests.map((m) => `${m.platform!.os}/${m.platform!.architecture}`)).toEqual(['linux/arm64', 'linux/amd64']);
    const arm = await tsbuild(['run', '--platform', 'linux/arm64', 'who:1'], { root });
    expect(arm.stdout.trim()).toBe('arm64 aarch64');
    const amd = await tsbuild(['run', '--platform', 'linux/amd64', 'who:1'], { root });
    expect(amd.stdout.trim()).toBe('amd64 x86_64');
    const missing = await tsbuild(['run', '--platform', 'linux/s390x', 'who:1'], { root });
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/who:1 has no image for linux\/s390x/);
    expect(missing.stderr).toMatch(/linux\/arm64, linux\/amd64/);
    // The arm64 image needs the emulator to run: without binfmt_misc, what to install.
    const noEmulator = await tsbuild(['run', '--platform', 'linux/arm64', 'who:1'], { root, env: { TSBUILD_BINFMT_MISC: path.join(work, 'no-binfmt') } });
    expect(noEmulator.code).toBe(1);
    expect(noEmulator.stderr).toMatch(/linux\/arm64, which cannot run on this linux\/amd64 host: binfmt_misc is not mounted/);
    expect(noEmulator.stderr).toMatch(/qemu-user-static/);
  }, 300_000);

  it('--push pushes every image, then the index; skopeo reads it and podman runs the arm64 image', async () => {
    const ctx = await ctxWith({ Dockerfile: 'FROM busybox:multi\nRUN uname -m > /arch\nCMD ["cat", "/arch"]\n' });
    const ref = `${registry.host}/multi/app:1`;
    const r = await tsbuild(['build', '--progress', 'plain', '--platform', 'linux/amd64,linux/arm64', '-t', ref, '--push', '--metadata-file', path.join(work, 'push-meta.json'), ctx], { root });
    expect(r.stderr).not.toMatch(/ERROR/);
    expect(r.code).toBe(0);
    const raw = JSON.parse((await tool('skopeo', ['inspect', '--tls-verify=false', '--raw', `docker://${ref}`])).stdout) as OciIndex & { mediaType: string };
    expect(raw.mediaType).toBe('application/vnd.oci.image.index.v1+json');
    expect(raw.manifests.map((m) => m.platform!.architecture)).toEqual(['amd64', 'arm64']);
    const meta = await readJson<Record<string, string>>(path.join(work, 'push-meta.json'));
    // skopeo's Digest of a list is the index's: the one the build reported as pushed.
    const pushedDigest = (await tool('skopeo', ['inspect', '--tls-verify=false', '--format', '{{.Digest}}', `docker://${ref}`])).stdout.trim();
    expect(meta['containerimage.digest']).toBe(pushedDigest);
    const armCfg = JSON.parse((await tool('skopeo', ['inspect', '--tls-verify=false', '--config', '--override-arch', 'arm64', `docker://${ref}`])).stdout) as { architecture: string };
    expect(armCfg.architecture).toBe('arm64');
    // Pulled back into an empty store: the same index digest as pushed, the same images' configs.
    const back = path.join(work, 'pulled-back');
    const pulled = await tsbuild(['pull', '--all-platforms', ref], { root: back });
    expect(pulled.code, pulled.stderr).toBe(0);
    const digests = await tsbuild(['images', '--digests', '--format', '{{.Digest}}'], { root: back });
    expect(digests.stdout.trim()).toBe(pushedDigest);
    expect((await tsbuild(['run', '--platform', 'linux/arm64', ref], { root: back })).stdout.trim()).toBe('aarch64');
    // An independent runtime runs the arm64 image under the same emulator.
    const run = await tool('podman', [...PODMAN_RUN, '--platform', 'linux/arm64', ref]);
    expect(run.stdout.trim()).toBe('aarch64');
    await tool('podman', ['rmi', '-f', ref]).catch(() => undefined);
  }, 300_000);

  it('a base from a registry index: each platform pulls its own image', async () => {
    await pushMultiarchBusybox(root, registry.host, 'base/busybox');
    const fresh = path.join(work, 'fresh-store');
    const ctx = await ctxWith({ Dockerfile: `FROM ${registry.host}/base/busybox:multi\nRUN uname -m > /arch\n` });
    const out = path.join(work, 'pulled.tar');
    const r = await tsbuild(['build', '--platform', 'linux/amd64,linux/arm64', '-o', `type=tar,dest=${out}`, ctx], { root: fresh });
    expect(r.stderr).not.toMatch(/ERROR/);
    expect(r.code).toBe(0);
    // type=tar of several platforms: one directory per platform, as buildx writes it.
    const x = await fs.mkdtemp(path.join(work, 'tar-'));
    await tool('tar', ['-xf', out, '-C', x]);
    expect((await fs.readFile(path.join(x, 'linux_arm64', 'arch'), 'utf8')).trim()).toBe('aarch64');
    expect((await fs.readFile(path.join(x, 'linux_amd64', 'arch'), 'utf8')).trim()).toBe('x86_64');
    // A platform the registry's index lacks: named, with what it has; nothing written.
    const bad = path.join(work, 'bad.tar');
    const miss = await tsbuild(['build', '--platform', 'linux/amd64,linux/s390x', '-o', `type=oci,dest=${bad}`, ctx], { root: fresh });
    expect(miss.code).toBe(1);
    expect(miss.stderr).toMatch(/has no image for linux\/s390x/);
    expect(miss.stderr).toMatch(/linux\/amd64, linux\/arm64/);
    await expect(fs.stat(bad)).rejects.toThrow();
  }, 300_000);

  it('type=local writes one directory per platform; a platform with files only needs no emulator', async () => {
    const ctx = await ctxWith({ Dockerfile: 'FROM scratch\nARG TARGETARCH\nCOPY hello /hello\nLABEL arch=$TARGETARCH\n', hello: 'hi\n' });
    const dest = path.join(work, 'local-out');
    const r = await tsbuild(['build', '--platform', 'linux/amd64,linux/riscv64', '-o', `type=local,dest=${dest}`, ctx], { root, env: { TSBUILD_BINFMT_MISC: path.join(work, 'no-binfmt') } });
    expect(r.stderr).not.toMatch(/ERROR/);
    expect(r.code).toBe(0);
    expect((await fs.readdir(dest)).sort()).toEqual(['linux_amd64', 'linux_riscv64']);
    expect(await fs.readFile(path.join(dest, 'linux_riscv64', 'hello'), 'utf8')).toBe('hi\n');
  }, 300_000);
});

describe('multi-platform mistakes: a clear error, nothing written', () => {
  it('refuses an unparsable platform, type=docker of two platforms, and RUN without an emulator', async () => {
    const ctx = await ctxWith({ Dockerfile: 'FROM busybox:multi\nRUN true\n' });
    const dest = path.join(work, 'mistake.tar');
    const unparsable = await tsbuild(['build', '--platform', 'linux/amd64,linux/arm64/v8/x', '-o', `type=oci,dest=${dest}`, ctx], { root });
    expect(unparsable.code).toBe(2);
    expect(unparsable.stderr).toMatch(/invalid platform "linux\/arm64\/v8\/x"/);
    const twice = await tsbuild(['build', '--platform', 'linux/arm64,linux/aarch64', '-o', `type=oci,dest=${dest}`, ctx], { root });
    expect(twice.code).toBe(2);
    expect(twice.stderr).toMatch(/names linux\/arm64 twice/);
    const docker = await tsbuild(['build', '--platform', 'linux/amd64,linux/arm64', '-o', `type=docker,dest=${dest}`, ctx], { root });
    expect(docker.code).toBe(2);
    expect(docker.stderr).toMatch(/type=docker holds one image, but this build is for 2 platforms \(linux\/amd64, linux\/arm64\)/);
    const noEmulator = await tsbuild(['build', '--platform', 'linux/amd64,linux/arm64', '-o', `type=oci,dest=${dest}`, ctx], { root, env: { TSBUILD_BINFMT_MISC: path.join(work, 'no-binfmt') } });
    expect(noEmulator.code).toBe(1);
    expect(noEmulator.stderr).toMatch(/Dockerfile:2/);
    expect(noEmulator.stderr).toMatch(/RUN for linux\/arm64 cannot run on this linux\/amd64 host/);
    expect(noEmulator.stderr).toMatch(/update-binfmts --enable qemu-aarch64/);
    await expect(fs.stat(dest)).rejects.toThrow();
    // A multi-platform base in the store without the platform: named with what it has.
    const lacking = await tsbuild(['build', '--platform', 'linux/s390x,linux/amd64', '-o', `type=oci,dest=${dest}`, ctx], { root });
    expect(lacking.code).toBe(1);
    expect(lacking.stderr).toMatch(/Dockerfile:1: FROM busybox:multi: .*busybox:multi has no image for linux\/s390x in the local store/);
    expect(lacking.stderr).toMatch(/linux\/amd64, linux\/arm64/);
    await expect(fs.stat(dest)).rejects.toThrow();
    // A base in the store for one platform only, for a build of two.
    const single = await ctxWith({ Dockerfile: 'FROM busybox:arm64\nCOPY Dockerfile /\n' });
    const base = await tsbuild(['build', '--pull=never', '--platform', 'linux/amd64,linux/arm64', '-o', `type=oci,dest=${dest}`, single], { root });
    expect(base.code).toBe(1);
    expect(base.stderr).toMatch(/image "busybox:arm64" in the local store is for linux\/arm64, not linux\/amd64/);
    await expect(fs.stat(dest)).rejects.toThrow();
  }, 300_000);
});

describe('compose build.platforms', () => {
  it('builds a service for its one foreign platform; several are a clear error', async () => {
    const dir = await ctxWith({
      Dockerfile: 'FROM busybox:multi\nRUN uname -m > /arch\n',
      'compose.yaml': 'services:\n  app:\n    build:\n      context: .\n      platforms: [linux/arm64]\n    image: composed-arm:1\n',
    });
    const r = await tsbuild(['compose', 'build', '--progress', 'plain'], { root, cwd: dir });
    expect(r.stderr).not.toMatch(/ERROR/);
    expect(r.code).toBe(0);
    expect((await tsbuild(['run', 'composed-arm:1', 'cat', '/arch'], { root })).stdout.trim()).toBe('aarch64');
    await fs.writeFile(path.join(dir, 'compose.yaml'), 'services:\n  app:\n    build:\n      context: .\n      platforms: [linux/amd64, linux/arm64]\n    image: composed-two:1\n');
    const two = await tsbuild(['compose', 'build'], { root, cwd: dir });
    expect(two.code).toBe(1);
    expect(two.stderr).toMatch(/build.platforms names 2 platforms \(linux\/amd64, linux\/arm64\); compose builds one platform per service/);
  }, 300_000);
});

describe('multi-platform, rootless', () => {
  it('an unprivileged user builds both platforms, the arm64 RUN emulated inside its user namespace', async () => {
    await withTestUser('platforms', async ({ dir, give, ok }) => {
      await writeTree(path.join(dir, 'ctx'), {
        Dockerfile: 'ARG TARGETARCH\nFROM busybox:${TARGETARCH}\nRUN mkdir /d && uname -m > /d/arch && chown -R 1234:2345 /d\n',
      });
      await give();
      // The .deb cache is the user's own (HOME=dir): the arm64 package is fetched as that user.
      await ok(`${MAKE_BUSYBOX} --platform linux/amd64 busybox:amd64 >/dev/null && ${MAKE_BUSYBOX} --platform linux/arm64 busybox:arm64 >/dev/null`);
      await ok(`${CLI} build -q --platform linux/amd64,linux/arm64 -o type=tar,dest=${dir}/out.tar ${dir}/ctx`);
      const x = await fs.mkdtemp(path.join(work, 'rootless-'));
      await tool('tar', ['-xf', path.join(dir, 'out.tar'), '-C', x]);
      expect((await fs.readFile(path.join(x, 'linux_arm64/d/arch'), 'utf8')).trim()).toBe('aarch64');
      expect((await fs.readFile(path.join(x, 'linux_amd64/d/arch'), 'utf8')).trim()).toBe('x86_64');
    });
  }, 300_000);
});
