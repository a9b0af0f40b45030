import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fs from 'node:fs/promises';
import path from 'node:path';
import { requireTool, storeWithBusybox, tempDir, tool, tsbuild, writeTree } from './support/cli.js';

// Issue 3, item 4: every config instruction, as BuildKit writes it into the image config,
// read back by skopeo; --chown with names from the image's own /etc/passwd and /etc/group,
// read back by GNU tar; the oci-layout output read by umoci; --metadata-file as buildx.
let work: string;
let root: string;

interface Config {
  created: string;
  config: {
    Cmd?: string[] | null;
    Entrypoint?: string[] | null;
    Env?: string[];
    User?: string;
    Volumes?: Record<string, object>;
    WorkingDir?: string;
    ExposedPorts?: Record<string, object>;
    StopSignal?: string;
    Healthcheck?: { Test: string[]; Interval?: number; Retries?: number };
    OnBuild?: string[] | null;
    Shell?: string[];
    Labels?: Record<string, string>;
  };
  rootfs: { diff_ids: string[] };
  history: Array<{ created: string; created_by: string; comment?: string; empty_layer?: boolean }>;
}

const EPOCH = '1700000000';
const EPOCH_ISO = '2023-11-14T22:13:20Z';

const dockerfile = [
  'FROM busybox AS base',
  'ONBUILD LABEL from.onbuild=yes',
  'CMD ["base-cmd"]',
  '',
  'FROM base AS app',
  'SHELL ["/bin/sh", "-ec"]',
  'ENTRYPOINT ["/bin/echo"]',
  'USER nobody',
  'VOLUME /data',
  'WORKDIR /srv/app',
  'EXPOSE 80 7000-7001/UDP',
  'STOPSIGNAL SIGINT',
  'HEALTHCHECK --interval=5s --retries=2 CMD true',
  'ONBUILD COPY x /x',
  'ENV A=1',
  'COPY --chown=daemon:nogroup a.txt ./',
  'COPY --chown=nobody b.txt /owned/',
  'COPY --chown=7:8 --chmod=0600 b.txt /numeric',
  '',
  'FROM app AS shellform',
  'CMD echo from the shell form',
  '',
].join('\n');

beforeAll(async () => {
  for (const t of ['skopeo', 'umoci', 'tar']) await requireTool(t);
  work = await tempDir('e2e-config');
  root = path.join(work, 'store');
  await storeWithBusybox(root);
  await writeTree(path.join(work, 'ctx'), { Dockerfile: dockerfile, 'a.txt': 'a\n', 'b.txt': 'b\n', x: 'x' });
});
afterAll(async () => {
  await fs.rm(work, { recursive: true, force: true });
});

async function build(target: string, output: string, extra: string[] = []): Promise<void> {
  const r = await tsbuild(['build', '--target', target, '--output', output, ...extra, path.join(work, 'ctx')], { root, env: { SOURCE_DATE_EPOCH: EPOCH } });
  expect(r.stderr).not.toMatch(/error/i);
  expect(r.code).toBe(0);
}

async function configOf(archive: string): Promise<Config> {
  return JSON.parse((await tool('skopeo', ['inspect', '--raw', '--config', `oci-archive:${archive}`])).stdout) as Config;
}

describe('config instructions', () => {
  it('land in the config as BuildKit writes them, with docker-like history', async () => {
    const out = path.join(work, 'app.tar');
    await build('app', `type=oci,dest=${out}`);
    const c = await configOf(out);
    expect(c.config.Entrypoint).toEqual(['/bin/echo']);
    expect(c.config.Cmd ?? null).toBeNull(); // ENTRYPOINT cleared the CMD inherited from base
    expect(c.config.Shell).toEqual(['/bin/sh', '-ec']);
    expect(c.config.User).toBe('nobody');
    expect(c.config.Volumes).toEqual({ '/data': {} });
    expect(c.config.WorkingDir).toBe('/srv/app');
    expect(Object.keys(c.config.ExposedPorts ?? {}).sort()).toEqual(['7000/udp', '7001/udp', '80/tcp']);
    expect(c.config.StopSignal).toBe('SIGINT');
    expect(c.config.Healthcheck).toEqual({ Test: ['CMD-SHELL', 'true'], Interval: 5_000_000_000, Retries: 2 });
    // The base's trigger ran here (FROM an earlier stage) and was consumed; this stage's is kept.
    expect(c.config.OnBuild).toEqual(['COPY x /x']);
    expect(c.config.Labels?.['from.onbuild']).toBe('yes');
    expect(c.config.Env).toContain('A=1');

    // History: one entry per instruction like docker's; empty_layer exactly where no layer was made.
    expect(c.created).toBe(EPOCH_ISO);
    const own = c.history.slice(1); // the busybox import comes first
    expect(own.every((h) => h.created === EPOCH_ISO && h.comment === 'buildkit.dockerfile.v0')).toBe(true);
    expect(c.history.filter((h) => !h.empty_layer)).toHaveLength(c.rootfs.diff_ids.length);
    const byText = (prefix: string) => own.find((h) => h.created_by.startsWith(prefix));
    for (const p of ['CMD ["base-cmd"]', 'SHELL', 'ENTRYPOINT ["/bin/echo"]', 'USER nobody', 'VOLUME', 'EXPOSE', 'STOPSIGNAL SIGINT', 'HEALTHCHECK', 'ENV A=1', 'LABEL from.onbuild=yes']) {
      expect(byText(p), p).toMatchObject({ empty_layer: true });
    }
    // BuildKit leaves COPY's flags out of created_by and marks layer steps with "# buildkit".
    for (const p of ['WORKDIR /srv/app', 'COPY a.txt ./ # buildkit', 'COPY b.txt /owned/ # buildkit']) {
      expect(byText(p), p).toBeDefined();
      expect(byText(p)!.empty_layer, p).toBeUndefined();
    }
  });

  it('SHELL applies to a shell-form CMD in a later stage', async () => {
    const out = path.join(work, 'shellform.tar');
    await build('shellform', `type=oci,dest=${out}`);
    const c = await configOf(out);
    expect(c.config.Cmd).toEqual(['/bin/sh', '-ec', 'echo from the shell form']);
    expect(c.config.Entrypoint).toEqual(['/bin/echo']);
  });

  it('WORKDIR creates the directory; --chown names come from the image, --chmod sets the mode', async () => {
    const out = path.join(work, 'rootfs.tar');
    await build('app', `type=tar,dest=${out}`);
    const listing = (await tool('tar', ['--numeric-owner', '-tvf', out])).stdout;
    // Made after USER nobody: owned by it, as BuildKit's mkdir WithUser (build-parity.test.ts).
    expect(listing).toMatch(/^d\S+ 65534\/65534 .* srv\/app\/$/m);
    expect(listing).toMatch(/^-rw-r--r-- 1\/65534 .* srv\/app\/a\.txt$/m); // daemon:nogroup
    expect(listing).toMatch(/^-rw-r--r-- 65534\/65534 .* owned\/b\.txt$/m); // nobody, its passwd group
    expect(listing).toMatch(/^-rw------- 7\/8 .* numeric$/m);
  });

  it('--chown of a user the image does not know is a located error', async () => {
    const ctx = path.join(work, 'ghost');
    await writeTree(ctx, { Dockerfile: 'FROM busybox\nCOPY --chown=ghost a.txt /\n', 'a.txt': 'a' });
    const r = await tsbuild(['build', '--output', `type=local,dest=${path.join(work, 'ghost-out')}`, ctx], { root });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/Dockerfile:2: .*ghost.*\/etc\/passwd/);
    expect(r.stderr).not.toMatch(/\n\s+at /);
  });
});

describe('oci-layout output and --metadata-file', () => {
  it('writes a layout umoci unpacks, and metadata naming the manifest that was written', async () => {
    const layout = path.join(work, 'layout');
    const meta = path.join(work, 'meta.json');
    await build('app', `type=oci-layout,dest=${layout}`, ['-t', 'layout-test:v1', '--metadata-file', meta]);
    const index = JSON.parse(await fs.readFile(path.join(layout, 'index.json'), 'utf8')) as { manifests: Array<{ digest: string; size: number; mediaType: string; annotations: Record<string, string> }> };
    expect(index.manifests).toHaveLength(1);
    const [m] = index.manifests;
    expect(m!.annotations['org.opencontainers.image.ref.name']).toBe('v1');
    const bundle = path.join(work, 'bundle');
    await tool('umoci', ['unpack', '--rootless', '--image', `${layout}:v1`, bundle]);
    expect(await fs.readFile(path.join(bundle, 'rootfs', 'srv/app/a.txt'), 'utf8')).toBe('a\n');
    expect((await fs.stat(path.join(bundle, 'rootfs', 'srv/app'))).isDirectory()).toBe(true);

    // buildx's keys; the digests are those of the manifest and config in the output.
    const md = JSON.parse(await fs.readFile(meta, 'utf8')) as Record<string, unknown>;
    expect(md['containerimage.digest']).toBe(m!.digest);
    expect(md['containerimage.descriptor']).toEqual({ mediaType: m!.mediaType, digest: m!.digest, size: m!.size });
    const manifest = JSON.parse(await fs.readFile(path.join(layout, 'blobs', 'sha256', m!.digest.slice(7)), 'utf8')) as { config: { digest: string } };
    expect(md['containerimage.config.digest']).toBe(manifest.config.digest);
    expect(md['image.name']).toBe('docker.io/library/layout-test:v1');
  });
});
