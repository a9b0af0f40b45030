import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { repoRoot, requireTool, storeWithBusybox, tempDir, tool, writeTree } from './support/cli.js';

// The programmatic API as a user gets it: `npm pack` of this package, the tarball installed
// into a separate Node project with npm, and ESM scripts there that import from 'tsbuild'.
// The consumer's TypeScript is checked against the .d.ts files the tarball ships.
let work: string;
let consumer: string;
let root: string;
let tarball: string;

beforeAll(async () => {
  if (process.getuid?.() !== 0) throw new Error('the aborted build runs a RUN step as root; run the suite as root (CI does)');
  await requireTool('bwrap');
  work = await tempDir('api');
  root = path.join(work, 'store');
  await storeWithBusybox(root);
  // dist/ is fresh (vitest's globalSetup); --ignore-scripts: `prepare` would rebuild it under the other tests.
  const packed = (await tool('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', work], { cwd: repoRoot })).stdout;
  tarball = path.join(work, (JSON.parse(packed) as Array<{ filename: string }>)[0]!.filename);
  consumer = path.join(work, 'consumer');
  await writeTree(consumer, { 'package.json': JSON.stringify({ name: 'consumer', version: '1.0.0', private: true, type: 'module' }) });
  await tool('npm', ['install', tarball, '--prefer-offline', '--no-audit', '--no-fund', '--ignore-scripts'], { cwd: consumer });
}, 300_000);
afterAll(async () => {
  await fs.rm(work, { recursive: true, force: true });
});

/** Runs an ESM script in the consumer project; its last stdout line is JSON. */
async function runScript(name: string, code: string): Promise<Record<string, unknown>> {
  await fs.writeFile(path.join(consumer, name), code);
  const { stdout } = await tool(process.execPath, [name], { cwd: consumer, env: { TSBUILD_ROOT: root } });
  return JSON.parse(stdout.trim().split('\n').pop()!) as Record<string, unknown>;
}

describe('the packed package', () => {
  it('ships the API, its declarations and the CLI, and no tests', async () => {
    const pkg = path.join(consumer, 'node_modules', 'tsbuild');
    const manifest = JSON.parse(await fs.readFile(path.join(pkg, 'package.json'), 'utf8')) as { exports: Record<string, unknown> };
    expect(Object.keys(manifest.exports)).toEqual(['.', './package.json']);
    for (const f of ['dist/src/api/index.js', 'dist/src/api/index.d.ts', 'dist/src/api/build.d.ts', 'dist/cmd/tsbuild.cjs', 'dist/cmd/namespace-worker.js']) {
      expect(await fs.stat(path.join(pkg, f)).then(() => f), f).toBe(f);
    }
    const listed = (await tool('tar', ['-tzf', tarball])).stdout.split('\n');
    expect(listed.filter((f) => /\.test\.|\.cache$/.test(f))).toEqual([]);
  });

  it("installs the command npm links (node_modules/.bin/tsbuild, package.json's bin)", async () => {
    // A shell script reached through npm's symlink: it must find tsbuild.cjs next to itself.
    const { stdout } = await tool(path.join(consumer, 'node_modules', '.bin', 'tsbuild'), ['images', '--format', '{{.Repository}}'], { env: { TSBUILD_ROOT: root } });
    expect(stdout.split('\n')).toContain('busybox');
  });

  it('builds an image through build(), with its events and ID, and the CLI sees it', async () => {
    const ctx = path.join(work, 'ctx-copy');
    await writeTree(ctx, { Dockerfile: 'FROM busybox\nCOPY hello.txt /hello.txt\nLABEL via=api\n', 'hello.txt': 'hello from the API\n' });
    const out = await runScript(
      'build.mjs',
      `import { build, images } from 'tsbuild';
const events = [];
const result = await build({ context: ${JSON.stringify(ctx)}, tags: ['api-test:1'], labels: { extra: 'yes' }, onEvent: (e) => events.push(e) });
const listed = await images();
console.log(JSON.stringify({ result, events, listed }));
`,
    );
    const result = out.result as { imageId: string; digest: string; metadata: Record<string, unknown> };
    expect(result.imageId).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(result.metadata['containerimage.config.digest']).toBe(result.imageId);
    expect(result.metadata['containerimage.digest']).toBe(result.digest);
    expect(result.metadata['image.name']).toBe('docker.io/library/api-test:1');
    const events = out.events as Array<{ type: string; name?: string }>;
    expect(events.filter((e) => e.type === 'step-start').map((e) => e.name)).toEqual(expect.arrayContaining([expect.stringContaining('COPY hello.txt /hello.txt')]));
    expect((out.listed as Array<{ imageId: string; tags: string[] }>).find((i) => i.tags.includes('docker.io/library/api-test:1'))?.imageId).toBe(result.imageId);
    // A verifier that is not ours: skopeo reads the store (an OCI layout) and sees the labels.
    const inspected = JSON.parse((await tool('skopeo', ['inspect', `oci:${root}:docker.io/library/api-test:1`])).stdout) as { Labels: Record<string, string>; Digest: string };
    expect(inspected.Labels).toEqual({ via: 'api', extra: 'yes' });
    expect(inspected.Digest).toBe(result.digest);
  });

  it('cancels a build cleanly when the signal aborts mid-step, and refuses mistyped options', async () => {
    const ctx = path.join(work, 'ctx-run');
    await writeTree(ctx, { Dockerfile: 'FROM busybox\nRUN echo started && sleep 60\n' });
    const out = await runScript(
      'abort.mjs',
      `import { build, TsbuildError } from 'tsbuild';
const controller = new AbortController();
const t0 = Date.now();
const seen = [];
let outcome;
try {
  await build({ context: ${JSON.stringify(ctx)}, noCache: true, signal: controller.signal, onEvent: (e) => {
    seen.push(e.type);
    if (e.type === 'step-log' && e.text.includes('started')) setTimeout(() => controller.abort(), 200);
  } });
  outcome = { resolved: true };
} catch (e) {
  outcome = { code: e.code, typed: e instanceof TsbuildError, ms: Date.now() - t0 };
}
const mistakes = [];
for (const opts of [{ context: '.', tag: 'x' }, { context: '.', tags: 42 }, { context: '.', network: 'bridge' }, { context: '.', platforms: 'linux/s390x/x/y' }, { context: '.', cacheFrom: 'type=gha' }, { context: '.', cacheTo: 'type=bogus' }]) {
  try { await build(opts); mistakes.push({ resolved: true }); } catch (e) { mistakes.push({ code: e.code, hint: e.hint, typed: e instanceof TsbuildError }); }
}
console.log(JSON.stringify({ outcome, seen, mistakes }));
`,
    );
    expect(out.outcome).toMatchObject({ code: 'CANCELLED', typed: true });
    expect((out.outcome as { ms: number }).ms).toBeLessThan(50_000);
    expect(out.seen).toContain('step-log');
    expect(out.mistakes).toEqual([
      { code: 'USAGE', hint: 'did you mean "tags"?', typed: true },
      { code: 'USAGE', typed: true },
      { code: 'USAGE', typed: true },
      { code: 'USAGE', hint: expect.stringContaining('os/arch[/variant]'), typed: true },
      { code: 'UNSUPPORTED', hint: expect.any(String), typed: true },
      { code: 'USAGE', hint: expect.stringContaining('registry, local'), typed: true },
    ]);
  });

  it('type-checks a consumer against the shipped declarations, and rejects a mistyped option at compile time', async () => {
    const tsc = path.join(repoRoot, 'node_modules', 'typescript', 'bin', 'tsc');
    await writeTree(consumer, {
      'tsconfig.json': JSON.stringify({
        compilerOptions: { module: 'NodeNext', moduleResolution: 'NodeNext', target: 'ES2022', strict: true, noEmit: true, skipLibCheck: false, types: ['node'], typeRoots: [path.join(repoRoot, 'node_modules', '@types')] },
        include: ['good.ts'],
      }),
      'good.ts': `import { build, TsbuildError, type BuildEvent, type BuildOptions } from 'tsbuild';
const events: BuildEvent[] = [];
const options: BuildOptions = { context: '.', tags: ['app:1'], buildArgs: { A: '1' }, progress: 'json', signal: new AbortController().signal, onEvent: (e) => events.push(e) };
try {
  const { imageId, digest, metadata }: { imageId: string; digest: string; metadata: Readonly<Record<string, unknown>> } = await build(options);
  console.log(imageId, digest, metadata['containerimage.digest']);
} catch (e) {
  if (e instanceof TsbuildError) console.log(e.code, e.hint, e.location?.startLine);
}
`,
      'bad.ts': `import { build } from 'tsbuild';\nawait build({ context: '.', tag: 'app:1' });\n`,
    });
    // skipLibCheck off: the shipped .d.ts files must be valid on their own (with @types/node).
    await tool(process.execPath, [tsc, '-p', 'tsconfig.json'], { cwd: consumer });
    await fs.writeFile(path.join(consumer, 'tsconfig.bad.json'), JSON.stringify({ extends: './tsconfig.json', include: ['bad.ts'] }));
    // tsc prints its diagnostics on stdout.
    const bad = await new Promise<string>((resolve) => execFile(process.execPath, [tsc, '-p', 'tsconfig.bad.json'], { cwd: consumer }, (err, stdout) => resolve(err ? stdout : '')));
    expect(bad).toMatch(/'tag' does not exist in type 'BuildOptions'/);
  });
});
