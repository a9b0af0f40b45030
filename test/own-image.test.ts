import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fs from 'node:fs/promises';
import path from 'node:path';
import { repoRoot, requireTool, storeWithBusybox, tempDir, tool, tsbuild, writeTree } from './support/cli.js';

// tsbuild's own image, built by tsbuild from the root Dockerfile (base: the debootstrapped
// Debian of scripts/make-debian-image; Node from this machine, staged by scripts/stage-image),
// then run by podman as an unprivileged container: no user namespaces, no privileges, only
// Docker's default capability set (and podman's narrower default). Inside, tsbuild builds an
// image with a RUN step: the isolation ladder steps down to chroot, with its one warning.
// Heavy (apt-get against the Debian mirror, ~1 minute): one sequential file.
let work: string;
let root: string;

/** Docker's default capabilities (moby oci/caps/defaults.go). */
const DOCKER_CAPS = ['CHOWN', 'DAC_OVERRIDE', 'FSETID', 'FOWNER', 'MKNOD', 'NET_RAW', 'SETGID', 'SETUID', 'SETFCAP', 'SETPCAP', 'NET_BIND_SERVICE', 'SYS_CHROOT', 'KILL', 'AUDIT_WRITE'];

beforeAll(async () => {
  if (process.getuid?.() !== 0) throw new Error('podman runs the image as root here; run the suite as root (CI does)');
  for (const t of ['podman', 'skopeo', 'tar', 'debootstrap']) await requireTool(t);
  work = await tempDir('own-image');
  root = path.join(work, 'store');
  await tool(path.join(repoRoot, 'scripts', 'make-debian-image'), [], { env: { TSBUILD_ROOT: root } });
  await tool(path.join(repoRoot, 'scripts', 'stage-image'), []);
}, 600_000);
afterAll(async () => {
  await tool('podman', ['rmi', '-f', 'localhost/tsbuild-selftest:1']).catch(() => undefined);
  if (work) await fs.rm(work, { recursive: true, force: true });
});

describe("tsbuild's own image", () => {
  it('is built by tsbuild from the root Dockerfile and builds an image in a container with default capabilities only', async () => {
    const built = await tsbuild(['build', '--progress', 'plain', '-t', 'localhost/tsbuild-selftest:1', '.'], { root, cwd: repoRoot });
    expect(built.code, built.stderr).toBe(0);
    const archive = path.join(work, 'tsbuild.tar');
    expect((await tsbuild(['save', '-o', archive, 'localhost/tsbuild-selftest:1'], { root })).code).toBe(0);
    await tool('podman', ['load', '-q', '-i', archive]);
    const config = JSON.parse((await tool('podman', ['image', 'inspect', 'localhost/tsbuild-selftest:1'])).stdout) as Array<{ Config: { Entrypoint: string[] } }>;
    expect(config[0]!.Config.Entrypoint).toEqual(['tsbuild']);

    // The inner build's base comes in as an archive (no registry is reachable from inside).
    const bbRoot = path.join(work, 'bb-store');
    await storeWithBusybox(bbRoot);
    expect((await tsbuild(['save', '-o', path.join(work, 'busybox.tar'), 'busybox'], { root: bbRoot })).code).toBe(0);
    await writeTree(path.join(work, 'ctx'), {
      Dockerfile: 'FROM scratch AS files\nCOPY hello.txt /hello.txt\nFROM busybox\nCOPY --from=files /hello.txt /hello.txt\nRUN cat /hello.txt > /copied && echo ran-in-step\n',
      'hello.txt': 'hello from inside\n',
    });
    for (const [label, caps] of [
      ['docker', ['--cap-drop', 'all', '--cap-add', DOCKER_CAPS.join(',')]],
      ['podman', []], // podman's own default set: no MKNOD, NET_RAW or AUDIT_WRITE
    ] as const) {
      const storeDir = path.join(work, `inner-store-${label}`);
      await fs.mkdir(storeDir);
      const podman = (args: readonly string[]) =>
        tool('podman', ['run', '--rm', '--runtime', 'runc', '--ulimit', 'nofile=1024:1024', '--ulimit', 'nproc=1024:1024', ...caps, '-v', `${storeDir}:/var/lib/tsbuild`, '-v', `${work}:/in`, 'localhost/tsbuild-selftest:1', ...args]);
      await podman(['load', '-i', '/in/busybox.tar']);
      const r = await podman(['build', '--progress', 'plain', '-o', `type=oci,dest=/in/inner-${label}.tar`, '/in/ctx']);
      expect(r.stdout.trim(), label).toMatch(/^sha256:[0-9a-f]{64}$/);
      expect(r.stderr, label).toContain('ran-in-step');
      const warnings = r.stderr.split('\n').filter((l) => l.startsWith('WARNING:'));
      expect(warnings, label).toHaveLength(1);
      expect(warnings[0], label).toMatch(/falling back to --isolation=chroot/);
      // Read back with tools that are not tsbuild: the RUN step's file is in a layer.
      await tool('skopeo', ['inspect', `oci-archive:${path.join(work, `inner-${label}.tar`)}`]);
      const unpacked = path.join(work, `unpacked-${label}`);
      await fs.mkdir(unpacked);
      await tool('tar', ['-xf', path.join(work, `inner-${label}.tar`), '-C', unpacked]);
      const index = JSON.parse(await fs.readFile(path.join(unpacked, 'index.json'), 'utf8')) as { manifests: Array<{ digest: string }> };
      const manifest = JSON.parse(await fs.readFile(path.join(unpacked, 'blobs/sha256', index.manifests[0]!.digest.slice(7)), 'utf8')) as { layers: Array<{ digest: string }> };
      const last = manifest.layers[manifest.layers.length - 1]!.digest.slice(7);
      expect((await tool('tar', ['-xzOf', path.join(unpacked, 'blobs/sha256', last), 'copied'])).stdout, label).toBe('hello from inside\n');
    }
  }, 900_000);
});
