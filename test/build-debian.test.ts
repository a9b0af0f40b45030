import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { repoRoot, requireTool, tempDir, tool, tsbuild } from './support/cli.js';
import { CLI, withTestUser } from './support/rootless.js';

// The heavy, real case: a Debian base made with debootstrap from the host's package mirror
// (scripts/make-debian-image) and `apt-get install python3` in a RUN step (examples/python),
// as root and as an ordinary user in a user namespace with the subordinate ID range (apt
// drops to its _apt user to download: IDs other than root must work). The debootstrap tar is
// cached in ~/.cache/tsbuild, so only a fresh machine pays for it (about 1.5 minutes).
const SLOW = 900_000;
let work: string;
let root: string;
const cache = process.env['TSBUILD_CACHE'] ?? path.join(os.homedir(), '.cache', 'tsbuild');

beforeAll(async () => {
  if (process.getuid?.() !== 0) throw new Error('these tests build as root and as tsbuild-test; run the suite as root (CI does)');
  for (const t of ['debootstrap', 'bwrap', 'podman', 'runuser', 'newuidmap']) await requireTool(t);
  work = await tempDir('e2e-debian');
  root = path.join(work, 'store');
  await tool(path.join(repoRoot, 'scripts/make-debian-image'), [], { env: { ...process.env, TSBUILD_ROOT: root, TSBUILD_CACHE: cache } });
}, SLOW);
afterAll(async () => {
  await fs.rm(work, { recursive: true, force: true });
});

describe('examples/python on a debootstrapped Debian', () => {
  it('apt-get installs python3 in a RUN step, and podman runs the image', async () => {
    const archive = path.join(work, 'py.tar');
    const r = await tsbuild(['build', '--progress', 'plain', '-t', 'pyhello:e2e', '--output', `type=docker,dest=${archive}`, path.join(repoRoot, 'examples/python')], { root });
    expect(r.code, r.stderr.slice(-3000)).toBe(0);
    expect(r.stderr).toMatch(/Setting up python3/);
    await tool('podman', ['load', '-q', '-i', archive]);
    try {
      const run = await tool('podman', ['run', '--runtime', 'runc', '--ulimit', 'nofile=1024:1024', '--ulimit', 'nproc=1024:1024', '--rm', 'pyhello:e2e']);
      expect(run.stdout).toMatch(/^Hello from Python 3\.\d+\.\d+ on Debian, built by tsbuild$/m);
    } finally {
      await tool('podman', ['rmi', '-f', 'pyhello:e2e']).catch(() => undefined);
    }
    // Rebuilt unchanged: every step cached, the same image.
    const again = await tsbuild(['build', '--progress', 'plain', '-t', 'pyhello:e2e', path.join(repoRoot, 'examples/python')], { root });
    expect(again.code).toBe(0);
    expect(again.stderr).not.toMatch(/Setting up python3/);
    expect(again.stdout).toBe(r.stdout);
  }, SLOW);

  it('does the same as an ordinary user, rootless, with files owned by other IDs', async () => {
    await withTestUser('debian', async ({ dir, give, ok }) => {
      await fs.mkdir(path.join(dir, 'cache'));
      await fs.copyFile(path.join(cache, 'debian-bookworm.tar'), path.join(dir, 'cache', 'debian-bookworm.tar'));
      await fs.cp(path.join(repoRoot, 'examples/python'), path.join(dir, 'ctx'), { recursive: true });
      // A step that checks what only a real ID mapping gives: chown to apt's user sticks.
      await fs.appendFile(path.join(dir, 'ctx', 'Dockerfile'), 'RUN chown _apt /app && test "$(stat -c %U /app)" = _apt && python3 -c "print(\'rootless ok\')"\n');
      await give();
      const out = await ok(`${path.join(repoRoot, 'scripts/make-debian-image')} >/dev/null && ${CLI} build --progress plain --output type=oci,dest=${dir}/o.tar ${dir}/ctx`, { TSBUILD_CACHE: `${dir}/cache` });
      expect(out.stderr).toMatch(/Setting up python3/);
      expect(out.stderr).toMatch(/rootless ok/);
      // The image's files: python3 installed, /app owned by _apt (uid 42 in Debian), root's files root's.
      const listing = (await tool('sh', ['-c', `mkdir ${dir}/x && tar -xf ${dir}/o.tar -C ${dir}/x && for b in ${dir}/x/blobs/sha256/*; do tar -tvzf "$b" 2>/dev/null; done; true`])).stdout;
      expect(listing).toMatch(/^\S+ 0\/0 .* usr\/bin\/python3\.\d+$/m);
      expect(listing).toMatch(/^d\S+ 42\/0 .* app\/?$/m);
    });
  }, SLOW);
});

// setcap in a RUN step (as the postinst of iputils-ping does): the file capability must be in
// the layer as SCHILY.xattr.security.capability, as docker and BuildKit write it; it used to be
// dropped. The host's setcap (libcap2-bin; Debian 12 like the base, which has libcap.so.2) is
// copied in; GNU tar extracts the layer with xattrs and getcap reads it back.
describe('file capabilities set by a RUN step', () => {
  const dockerfile = 'FROM debian:bookworm\nCOPY setcap /usr/local/sbin/setcap\nRUN cp /bin/true /usr/local/bin/pinger && /usr/local/sbin/setcap cap_net_raw+ep /usr/local/bin/pinger\n';
  async function capsInLayers(archive: string, out: string): Promise<string> {
    // The layer that has the file, extracted with its xattrs; getcap prints e.g. "... cap_net_raw=ep".
    const script = `set -e; mkdir -p ${out}/oci ${out}/fs; tar -xf ${archive} -C ${out}/oci; for b in ${out}/oci/blobs/sha256/*; do if tar -tzf "$b" 2>/dev/null | grep -qx usr/local/bin/pinger; then tar --xattrs --xattrs-include='security.capability' -xzf "$b" -C ${out}/fs usr/local/bin/pinger; fi; done; getcap ${out}/fs/usr/local/bin/pinger`;
    return (await tool('sh', ['-c', script])).stdout;
  }

  it.each(['overlay', 'copy'])('are kept in the layer (root, %s snapshots)', async (snapshotter) => {
    await requireTool('getcap');
    const ctx = path.join(work, `caps-${snapshotter}`);
    await fs.mkdir(ctx, { recursive: true });
    await fs.writeFile(path.join(ctx, 'Dockerfile'), dockerfile);
    await fs.copyFile(await requireTool('setcap'), path.join(ctx, 'setcap'));
    const archive = path.join(work, `caps-${snapshotter}.tar`);
    const r = await tsbuild(['build', '--progress', 'plain', '--output', `type=oci,dest=${archive}`, ctx], { root, env: { TSBUILD_SNAPSHOTTER: snapshotter } });
    expect(r.code, r.stderr.slice(-3000)).toBe(0);
    expect(await capsInLayers(archive, path.join(work, `caps-${snapshotter}-x`))).toMatch(/pinger cap_net_raw=ep$/m);
  }, SLOW);

  it('are kept in the layer rootless (read in the user namespace, written as v2)', async () => {
    await withTestUser('debian-caps', async ({ dir, give, ok }) => {
      await fs.mkdir(path.join(dir, 'cache'));
      await fs.copyFile(path.join(cache, 'debian-bookworm.tar'), path.join(dir, 'cache', 'debian-bookworm.tar'));
      await fs.mkdir(path.join(dir, 'ctx'));
      await fs.writeFile(path.join(dir, 'ctx', 'Dockerfile'), dockerfile);
      await fs.copyFile(await requireTool('setcap'), path.join(dir, 'ctx', 'setcap'));
      await give();
      await ok(`${path.join(repoRoot, 'scripts/make-debian-image')} >/dev/null && ${CLI} build --progress plain --output type=oci,dest=${dir}/o.tar ${dir}/ctx`, { TSBUILD_CACHE: `${dir}/cache` });
      expect(await capsInLayers(`${dir}/o.tar`, `${dir}/x`)).toMatch(/pinger cap_net_raw=ep$/m);
    });
  }, SLOW);
});
