import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fs from 'node:fs/promises';
import path from 'node:path';
import { storeWithBusybox, tempDir, tsbuild, writeTree } from './support/cli.js';
import { startRegistry, type RunningRegistry } from './support/registry.js';

// "Why it missed": a real build, rebuilt after one change at a time (a source file, a build
// arg, the base image's digest in the real registry); every step that runs says why, in the
// plain progress and as fields of the json progress.
let work: string;
let reg: RunningRegistry;

beforeAll(async () => {
  work = await tempDir('cache-explain');
  reg = await startRegistry({ mode: { kind: 'open' } });
});
afterAll(async () => {
  await reg?.stop();
  await fs.rm(work, { recursive: true, force: true });
});

interface JsonEvent {
  readonly type: string;
  readonly id: number;
  readonly name?: string;
  readonly hit?: boolean;
  readonly source?: string;
  readonly reason?: string;
}

/** The json progress, by step name: the cache event (hit or miss) of each step. */
function cacheEvents(stderr: string): Map<string, JsonEvent> {
  const names = new Map<number, string>();
  const out = new Map<string, JsonEvent>();
  for (const line of stderr.split('\n')) {
    if (!line.startsWith('{')) continue;
    const e = JSON.parse(line) as JsonEvent;
    if (e.type === 'step-start') names.set(e.id, e.name!.replace(/^\[\d+\/\d+\] /, ''));
    if (e.type === 'step-cached' || e.type === 'step-miss') out.set(names.get(e.id)!, e);
  }
  return out;
}

/** The plain progress: the `cache miss:` line under each step, by step name. */
function missLines(stderr: string): Map<string, string> {
  const names = new Map<string, string>();
  const out = new Map<string, string>();
  for (const line of stderr.split('\n')) {
    const m = /^#(\d+) (.*)$/.exec(line);
    if (!m) continue;
    const miss = /^cache miss: (.*)$/.exec(m[2]!);
    if (miss) out.set(names.get(m[1]!)!, miss[1]!);
    else if (!names.has(m[1]!)) names.set(m[1]!, m[2]!.replace(/^\[\d+\/\d+\] /, ''));
  }
  return out;
}

describe('why a step missed the cache', () => {
  it('names the changed file, build arg and base image digest; a hit names its source', async () => {
    const builder = path.join(work, 'builder');
    await storeWithBusybox(builder);
    const base = `${reg.host}/explain/base:1`;
    const baseCtx = path.join(work, 'base');
    await writeTree(baseCtx, { Dockerfile: 'FROM busybox\nCOPY v /base-version\n', v: 'one\n' });
    expect((await tsbuild(['build', '--push', '-t', base, '--progress', 'quiet', baseCtx], { root: builder })).code).toBe(0);

    const root = path.join(work, 'store');
    const ctx = path.join(work, 'app');
    await writeTree(ctx, {
      Dockerfile: `FROM ${base}\nARG VERSION\nCOPY src/ /app/\nRUN echo "$VERSION" > /version\n`,
      'src/app.py': 'print(1)\n',
      'src/lib.py': 'x = 1\n',
    });
    const build = (progress: 'plain' | 'json', version: string) => tsbuild(['build', '--pull=always', '--progress', progress, '--build-arg', `VERSION=${version}`, '-t', 'app', ctx], { root });

    const first = await build('plain', '1');
    expect(first.code, first.stderr).toBe(0);
    expect(missLines(first.stderr)).toEqual(
      new Map([
        ['COPY src/ /app/', 'no cache entry'],
        ['RUN echo "$VERSION" > /version', 'no cache entry'],
      ]),
    );

    // Nothing changed: every step a hit from the local step cache, no miss line.
    const again = await build('json', '1');
    expect(again.code, again.stderr).toBe(0);
    expect(cacheEvents(again.stderr).get('COPY src/ /app/')).toMatchObject({ type: 'step-cached', hit: true, source: 'local' });
    expect(cacheEvents(again.stderr).get('RUN echo "$VERSION" > /version')).toMatchObject({ type: 'step-cached', hit: true, source: 'local' });

    // One source file changed: the COPY names it, the RUN after it says its previous step changed.
    await fs.writeFile(path.join(ctx, 'src/app.py'), 'print(2)\n');
    const edited = await build('plain', '1');
    expect(edited.code, edited.stderr).toBe(0);
    expect(missLines(edited.stderr)).toEqual(
      new Map([
        ['COPY src/ /app/', '/app/app.py changed'],
        ['RUN echo "$VERSION" > /version', 'previous step changed'],
      ]),
    );

    // A build arg changed: the step that sees it names it, as json fields; a COPY that does
    // not use it stays cached (as BuildKit: ARG is no operation of its own).
    const arg = await build('json', '2');
    expect(arg.code, arg.stderr).toBe(0);
    const events = cacheEvents(arg.stderr);
    expect(events.get('COPY src/ /app/')).toMatchObject({ type: 'step-cached', hit: true, source: 'local' });
    expect(events.get('RUN echo "$VERSION" > /version')).toMatchObject({ type: 'step-miss', hit: false, source: 'local' });
    expect(events.get('RUN echo "$VERSION" > /version')?.reason).toMatch(/^build arg VERSION changed/);

    // The base image changed digest in the registry: every step says so.
    await fs.writeFile(path.join(baseCtx, 'v'), 'two\n');
    expect((await tsbuild(['build', '--push', '-t', base, '--progress', 'quiet', baseCtx], { root: builder })).code).toBe(0);
    const rebased = await build('plain', '2');
    expect(rebased.code, rebased.stderr).toBe(0);
    const lines = missLines(rebased.stderr);
    expect(lines.get('COPY src/ /app/')).toBe(`base image ${base} changed digest`);
    expect(lines.get('RUN echo "$VERSION" > /version')).toMatch(new RegExp(`^base image ${base.replace(/[.]/g, '\\.')} changed digest`));

    // --no-cache says so; it is not a change of inputs.
    const off = await tsbuild(['build', '--no-cache', '--progress', 'plain', '--build-arg', 'VERSION=2', ctx], { root });
    expect(missLines(off.stderr).get('COPY src/ /app/')).toBe('cache disabled (--no-cache)');
  });

  it('explains a miss on a second machine from the cache it imported from the registry', async () => {
    const one = path.join(work, 'machine-one');
    await storeWithBusybox(one);
    const ref = `${reg.host}/explain/cache:main`;
    const files = { Dockerfile: 'FROM busybox\nCOPY src/ /app/\nRUN cat /app/app.py > /seen\n', 'src/app.py': 'print(1)\n', 'src/util.py': 'u = 1\n' };
    const ctxOne = path.join(work, 'checkout-one');
    await writeTree(ctxOne, files);
    const exported = await tsbuild(['build', '--progress', 'plain', '--cache-to', `type=registry,ref=${ref},mode=max`, ctxOne], { root: one });
    expect(exported.code, exported.stderr).toBe(0);

    // Another machine: an empty store (busybox only), another checkout path, one file changed.
    const two = path.join(work, 'machine-two');
    await storeWithBusybox(two);
    const ctxTwo = path.join(work, 'checkout-two');
    await writeTree(ctxTwo, { ...files, 'src/util.py': 'u = 2\n' });
    const r = await tsbuild(['build', '--progress', 'json', '--cache-from', `type=registry,ref=${ref}`, ctxTwo], { root: two });
    expect(r.code, r.stderr).toBe(0);
    const events = cacheEvents(r.stderr);
    expect(events.get('COPY src/ /app/')).toMatchObject({ type: 'step-miss', hit: false, reason: '/app/util.py changed', source: `registry ${ref}` });
    expect(events.get('RUN cat /app/app.py > /seen')).toMatchObject({ type: 'step-miss', hit: false, reason: 'previous step changed', source: `registry ${ref}` });

    // Unchanged, the same machine imports and hits, naming the registry as the source.
    await fs.writeFile(path.join(ctxTwo, 'src/util.py'), 'u = 1\n');
    const two2 = path.join(work, 'machine-three');
    await storeWithBusybox(two2);
    const hit = await tsbuild(['build', '--progress', 'json', '--cache-from', `type=registry,ref=${ref}`, ctxTwo], { root: two2 });
    expect(hit.code, hit.stderr).toBe(0);
    expect(cacheEvents(hit.stderr).get('COPY src/ /app/')).toMatchObject({ type: 'step-cached', hit: true, source: `registry ${ref}` });

    // The imported hits were kept with their inputs and as the steps' last keys: a later miss
    // on that machine, without the source, still names what changed.
    await fs.writeFile(path.join(ctxTwo, 'src/app.py'), 'print(2)\n');
    const local = await tsbuild(['build', '--progress', 'json', ctxTwo], { root: two2 });
    expect(local.code, local.stderr).toBe(0);
    const misses = cacheEvents(local.stderr);
    expect(misses.get('COPY src/ /app/')).toMatchObject({ type: 'step-miss', hit: false, reason: '/app/app.py changed', source: 'local' });
    expect(misses.get('RUN cat /app/app.py > /seen')).toMatchObject({ type: 'step-miss', hit: false, reason: 'previous step changed', source: 'local' });
  });
});
