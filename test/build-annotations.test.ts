import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fs from 'node:fs/promises';
import path from 'node:path';
import { requireTool, tempDir, tool, tsbuild, writeTree } from './support/cli.js';
import { startRegistry, type RunningRegistry } from './support/registry.js';

// `build --annotation` as buildx: on the image manifest (pushed and exported, read back by
// skopeo from the real registry and the OCI archive) and, with manifest-descriptor:, on the
// manifest's entry in the OCI output's index.json.

let work: string;
let root: string;
let reg: RunningRegistry;

beforeAll(async () => {
  await requireTool('skopeo');
  work = await tempDir('annotations');
  root = path.join(work, 'store');
  reg = await startRegistry({ mode: { kind: 'open' } });
});
afterAll(async () => {
  await reg?.stop();
  await fs.rm(work, { recursive: true, force: true });
});

describe('build --annotation', () => {
  it('annotates the manifest pushed and exported, and the descriptor in index.json', async () => {
    const ctx = path.join(work, 'ctx');
    await writeTree(ctx, { Dockerfile: 'FROM scratch\nCOPY f.txt /\n', 'f.txt': 'f\n' });
    const name = `${reg.host}/test/annotated:1`;
    const oci = path.join(work, 'out.tar');
    const r = await tsbuild(
      ['build', '-q', '--push', '-t', name, '-o', `type=oci,dest=${oci}`, '--annotation', 'org.opencontainers.image.title=demo', '--annotation', 'manifest,manifest-descriptor:com.example.both=yes', '--annotation', 'manifest-descriptor:com.example.desc=only', '--annotation', 'manifest[linux/s390x]:com.example.other=no', ctx],
      { root },
    );
    expect(r.code, r.stderr).toBe(0);

    const pushed = JSON.parse((await tool('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${name}`])).stdout) as { annotations?: Record<string, string> };
    expect(pushed.annotations).toEqual({ 'org.opencontainers.image.title': 'demo', 'com.example.both': 'yes' });
    const exported = JSON.parse((await tool('skopeo', ['inspect', '--raw', `oci-archive:${oci}`])).stdout) as { annotations?: Record<string, string> };
    expect(exported.annotations).toEqual(pushed.annotations);

    const index = JSON.parse((await tool('tar', ['-xOf', oci, 'index.json'])).stdout) as { manifests: Array<{ annotations?: Record<string, string> }> };
    expect(index.manifests).toHaveLength(1);
    expect(index.manifests[0]!.annotations).toMatchObject({ 'com.example.both': 'yes', 'com.example.desc': 'only', 'org.opencontainers.image.ref.name': '1' });
    expect(index.manifests[0]!.annotations).not.toHaveProperty('org.opencontainers.image.title');

    // Another annotation value is another manifest (the config, and so the image ID, stay).
    const digestWith = async (title: string): Promise<string> => {
      const meta = path.join(work, `meta-${title}.json`);
      const b = await tsbuild(['build', '-q', '--metadata-file', meta, '--annotation', `org.opencontainers.image.title=${title}`, ctx], { root });
      expect(b.code, b.stderr).toBe(0);
      return (JSON.parse(await fs.readFile(meta, 'utf8')) as Record<string, string>)['containerimage.digest']!;
    };
    const a = await digestWith('demo');
    const b = await digestWith('other');
    expect(a).toMatch(/^sha256:/);
    expect(a).not.toBe(b);
    expect(await digestWith('demo')).toBe(a);
  });

  it('refuses index annotations and malformed flags as usage errors', async () => {
    const ctx = path.join(work, 'ctx');
    for (const flag of ['index:a=1', 'nokeyvalue', 'bogus:a=1']) {
      const r = await tsbuild(['build', '--annotation', flag, ctx], { root });
      expect(r.code, flag).toBe(2);
      expect(r.stderr).toContain(JSON.stringify(flag));
    }
  });
});
