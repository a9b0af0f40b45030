import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { requireTool, tempDir, tool, tsbuild, writeTree } from './support/cli.js';

// Dockerfile-frontend behaviour seen through real builds (FROM scratch: no sandbox needed):
// directives, FROM --platform, ADD --unpack of a download, HEALTHCHECK flags in the config,
// --build-arg NAME from the environment. Images are read back with skopeo.
let work: string;
let root: string;
let server: http.Server;
let baseUrl: string;
let archive: Buffer;

beforeAll(async () => {
  await requireTool('skopeo');
  await requireTool('tar');
  work = await tempDir('e2e-frontend');
  root = path.join(work, 'store');
  await writeTree(path.join(work, 'src'), { 'd/one.txt': 'one', 'two.txt': 'two' });
  archive = execFileSync('tar', ['-C', path.join(work, 'src'), '-czf', '-', '.']);
  server = http.createServer((req, res) => {
    if (req.url === '/files/a.tgz') {
      res.writeHead(200, { 'content-type': 'application/gzip' });
      res.end(archive);
    } else if (req.url === '/files/plain.txt') {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end('plain\n');
    } else {
      res.writeHead(404);
      res.end('no');
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  await new Promise<void>((r) => server.close(() => r()));
  await fs.rm(work, { recursive: true, force: true });
});

interface Built {
  readonly code: number;
  readonly stderr: string;
  readonly dir: string;
}

/** Builds `files` (a context with its Dockerfile) to an OCI archive and a rootfs directory. */
async function build(files: Record<string, string>, extra: string[] = [], env: NodeJS.ProcessEnv = {}): Promise<Built> {
  const dir = await fs.mkdtemp(path.join(work, 'ctx-'));
  await writeTree(path.join(dir, 'ctx'), files);
  const r = await tsbuild(
    ['build', ...extra, '--output', `type=oci,dest=${path.join(dir, 'o.tar')}`, '--output', `type=local,dest=${path.join(dir, 'rootfs')}`, path.join(dir, 'ctx')],
    { root, env },
  );
  return { code: r.code, stderr: r.stderr, dir };
}

async function config(b: Built): Promise<{ architecture: string; config: Record<string, unknown> }> {
  return JSON.parse((await tool('skopeo', ['inspect', '--config', `oci-archive:${path.join(b.dir, 'o.tar')}`])).stdout) as {
    architecture: string;
    config: Record<string, unknown>;
  };
}

/** The image config exactly as written (skopeo's view drops fields the OCI spec lacks, e.g. Healthcheck). */
async function rawConfig(b: Built): Promise<{ config: Record<string, unknown> }> {
  const layout = path.join(b.dir, 'layout');
  await fs.mkdir(layout);
  await tool('tar', ['-C', layout, '-xf', path.join(b.dir, 'o.tar')]);
  const blob = async (digest: string): Promise<unknown> => JSON.parse(await fs.readFile(path.join(layout, 'blobs', ...digest.split(':')), 'utf8'));
  const index = JSON.parse(await fs.readFile(path.join(layout, 'index.json'), 'utf8')) as { manifests: Array<{ digest: string }> };
  const manifest = (await blob(index.manifests[0]!.digest)) as { config: { digest: string } };
  return (await blob(manifest.config.digest)) as { config: Record<string, unknown> };
}

async function exists(p: string): Promise<boolean> {
  return fs.access(p).then(
    () => true,
    () => false,
  );
}

describe('directives', () => {
  it('an invalid # check= fails at its line; a foreign # syntax= warns', async () => {
    const bad = await build({ Dockerfile: '# syntax=docker/dockerfile:1\n# check=bogus\nFROM scratch\n' });
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/Dockerfile:2: failed to parse check options: invalid check option "bogus"/);
    expect(bad.stderr).not.toMatch(/\n\s+at .*\.js:\d+/);
    expect(await exists(path.join(bad.dir, 'o.tar'))).toBe(false);

    const warned = await build({ Dockerfile: '# syntax=example.com/my/frontend:1\n# check=skip=all;error=true\nFROM scratch\nLABEL a=b\n' });
    expect(warned.code).toBe(0);
    expect(warned.stderr).toMatch(/example\.com\/my\/frontend:1/);
    // error=true with every check skipped has nothing to fail on (test/build-checks.test.ts has the rest).
    expect(warned.stderr).not.toMatch(/lint violation/);
  });
});

describe('FROM --platform', () => {
  it('another platform than the host: files-only stages build anywhere; RUN without an emulator is a located error', async () => {
    const host = (await config(await build({ Dockerfile: 'FROM scratch\nLABEL a=b\n' }))).architecture;
    const other = host === 's390x' ? 'linux/ppc64le' : 'linux/s390x';
    const files = await build({ Dockerfile: `FROM scratch AS base\nLABEL a=b\n\nFROM --platform=${other} scratch\nCOPY --from=base / /\n` });
    expect(files.code).toBe(0);
    expect((await config(files)).architecture).toBe(other.split('/')[1]);
    // No binfmt_misc (an empty directory stands for an unmounted one): the RUN's line, the platform, what to install.
    const noEmulator = { TSBUILD_BINFMT_MISC: await fs.mkdtemp(path.join(work, 'binfmt-')) };
    const r = await build({ Dockerfile: `FROM scratch AS base\nLABEL a=b\n\nFROM --platform=${other} scratch\nCOPY --from=base / /\nRUN true\n` }, [], noEmulator);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(new RegExp(`Dockerfile:6: RUN for ${other} cannot run on this linux/${host} host: binfmt_misc is not mounted`));
    expect(r.stderr).toMatch(/apt-get install qemu-user-static binfmt-support/);
    expect(await exists(path.join(r.dir, 'o.tar'))).toBe(false);
    // A stage --target leaves out is not built, so its platform does not matter.
    const pruned = await build({ Dockerfile: `FROM --platform=${other} scratch AS other\nRUN true\nFROM scratch AS mine\nLABEL a=b\n` }, ['--target', 'mine'], noEmulator);
    expect(pruned.code).toBe(0);
  });

  it('$BUILDPLATFORM and $TARGETPLATFORM are the host and build', async () => {
    const r = await build({ Dockerfile: 'FROM --platform=$BUILDPLATFORM scratch AS a\nLABEL a=1\nFROM --platform=$TARGETPLATFORM a\nARG TARGETPLATFORM\nLABEL t=$TARGETPLATFORM\n' });
    expect(r.stderr).not.toMatch(/error/i);
    expect(r.code).toBe(0);
    const cfg = await config(r);
    expect((cfg.config.Labels as Record<string, string>).t).toMatch(new RegExp(`^linux/${cfg.architecture}`));
  });
});

describe('ADD of a download', () => {
  it('--unpack=true unpacks an archive; by default, and for other files, the download is copied as it is', async () => {
    const r = await build({
      Dockerfile: `FROM scratch\nADD --unpack=true ${baseUrl}/files/a.tgz /x/\nADD ${baseUrl}/files/a.tgz /y/\nADD --unpack=true ${baseUrl}/files/plain.txt /z/\n`,
    });
    expect(r.stderr).not.toMatch(/error/i);
    expect(r.code).toBe(0);
    const rootfs = path.join(r.dir, 'rootfs');
    expect(await fs.readFile(path.join(rootfs, 'x/d/one.txt'), 'utf8')).toBe('one');
    expect(await fs.readFile(path.join(rootfs, 'x/two.txt'), 'utf8')).toBe('two');
    expect(await exists(path.join(rootfs, 'x/a.tgz'))).toBe(false);
    expect(await fs.readFile(path.join(rootfs, 'y/a.tgz'))).toEqual(archive);
    expect(await fs.readFile(path.join(rootfs, 'z/plain.txt'), 'utf8')).toBe('plain\n');
  });

  it('--checksum on a context file is a located error', async () => {
    const r = await build({ Dockerfile: `FROM scratch\nADD --checksum=sha256:${'0'.repeat(64)} a.txt /x\n`, 'a.txt': 'a' });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/Dockerfile:2: checksum can't be specified for non-HTTP\(S\) sources/);
  });
});

describe('instruction flags that reach the image', () => {
  it('HEALTHCHECK --interval --timeout --start-period --start-interval --retries', async () => {
    const r = await build({
      Dockerfile: 'FROM scratch\nHEALTHCHECK --interval=1m30s --timeout=3s --start-period=500ms --start-interval=1.5s --retries=3 CMD ["/bin/check", "-q"]\n',
    });
    expect(r.code).toBe(0);
    expect((await rawConfig(r)).config.Healthcheck).toEqual({
      Test: ['CMD', '/bin/check', '-q'],
      Interval: 90_000_000_000,
      Timeout: 3_000_000_000,
      StartPeriod: 500_000_000,
      StartInterval: 1_500_000_000,
      Retries: 3,
    });
  });

  it('RUN --network with a value BuildKit does not know is a located error', async () => {
    const r = await build({ Dockerfile: 'FROM scratch\nRUN --network=bogus true\n' });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/Dockerfile:2: invalid network mode "bogus"/);
  });
});

describe('--build-arg', () => {
  it('NAME alone takes the value from the environment, and is left out when the environment has none', async () => {
    const r = await build(
      { Dockerfile: 'FROM scratch\nARG FROM_ENV=default\nARG NOT_SET=default\nLABEL e=$FROM_ENV n=$NOT_SET\n' },
      ['--build-arg', 'FROM_ENV', '--build-arg', 'NOT_SET'],
      { FROM_ENV: 'from the environment', NOT_SET: undefined },
    );
    expect(r.code).toBe(0);
    expect((await config(r)).config.Labels).toEqual({ e: 'from the environment', n: 'default' });
  });
});

describe('.dockerignore', () => {
  it('NAME.dockerignore next to a Dockerfile called NAME wins over the context .dockerignore', async () => {
    const dir = await fs.mkdtemp(path.join(work, 'ignore-'));
    await writeTree(dir, {
      'ctx/.dockerignore': 'a.txt\n',
      'ctx/a.txt': 'a',
      'ctx/b.txt': 'b',
      'ctx/keep/c.txt': 'c',
      'elsewhere/app.Dockerfile': 'FROM scratch\nCOPY . /ctx/\n',
      'elsewhere/app.Dockerfile.dockerignore': '# only this file counts\n*.txt\n!keep/*.txt\n',
      'ctx/plain.Dockerfile': 'FROM scratch\nCOPY . /ctx/\n',
    });
    const copied = async (dockerfile: string, out: string): Promise<string[]> => {
      const r = await tsbuild(['build', '-f', dockerfile, '--output', `type=local,dest=${path.join(dir, out)}`, path.join(dir, 'ctx')], { root });
      expect(r.code, r.stderr).toBe(0);
      const names = (await fs.readdir(path.join(dir, out, 'ctx'), { recursive: true })) as string[];
      return names.sort();
    };
    expect(await copied(path.join(dir, 'elsewhere/app.Dockerfile'), 'out1')).toEqual(['.dockerignore', 'keep', 'keep/c.txt', 'plain.Dockerfile']);
    expect(await copied(path.join(dir, 'ctx/plain.Dockerfile'), 'out2')).toEqual(['.dockerignore', 'b.txt', 'keep', 'keep/c.txt', 'plain.Dockerfile']);
  });
});
