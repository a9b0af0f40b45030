import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fs from 'node:fs/promises';
import path from 'node:path';
import { requireTool, tempDir, tool, tsbuild, writeTree } from './support/cli.js';
import { storeWithMultiarchBusybox } from './support/multiarch.js';

// Multi-platform builds: one build for linux/amd64 and linux/arm64, the arm64 RUN steps under
// qemu-user through binfmt_misc (scripts/setup registers Debian's qemu-user-static), the result
// one OCI image index. Read back with skopeo and GNU tar, run with podman.
let work: string;
let root: string;

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
}, 300_000);
afterAll(async () => {
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
    if (process.env.SHOW) console.log(r.stderr);
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
  }, 300_000);
});
