import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fs from 'node:fs/promises';
import path from 'node:path';
import { storeWithBusybox, tempDir, tsbuild, writeTree } from './support/cli.js';

// BuildKit's build checks end to end: `build --check` / `--call check` (no step runs, exit 1 on
// findings) and the same checks as warnings in an ordinary build, with # check= honoured.

let work: string;
let root: string;

beforeAll(async () => {
  work = await tempDir('checks');
  root = path.join(work, 'store');
  await storeWithBusybox(root);
});
afterAll(async () => {
  await fs.rm(work, { recursive: true, force: true });
});

async function imageCount(): Promise<number> {
  const r = await tsbuild(['images', '-q'], { root });
  expect(r.code, r.stderr).toBe(0);
  return r.stdout.split('\n').filter((l) => l.trim() !== '').length;
}

describe('tsbuild build --check', () => {
  it('prints each finding with its name, URL, description, file and line; exit 1; builds nothing', async () => {
    const ctx = path.join(work, 'ctx-bad');
    await writeTree(ctx, {
      Dockerfile: 'FROM busybox as Build\nENV GREETING=$PAHT\nCMD echo hi\nFROM Build\nWORKDIR app\nEXPOSE 80/TCP\n',
      'f.txt': 'f\n',
    });
    const before = await imageCount();
    const r = await tsbuild(['build', '--check', ctx], { root });
    expect(r.code, r.stderr).toBe(1);
    expect(r.stdout).toMatch(/^Check complete, 7 warnings have been found!/);
    const found = [...r.stdout.matchAll(/^WARNING: (\w+) - (\S+)\n(.*)\n(.*)\n(\S+):(\d+)$/gm)].map((m) => ({ rule: m[1], url: m[2], description: m[3], message: m[4], file: m[5], line: Number(m[6]) }));
    expect(found.map((f) => [f.rule, f.line])).toEqual([
      ['StageNameCasing', 1],
      ['FromAsCasing', 1],
      ['UndefinedVar', 2],
      ['JSONArgsRecommended', 3],
      // "Build" is no valid image name; BuildKit says so too before it finds the stage.
      ['InvalidDefaultArgInFrom', 4],
      ['WorkdirRelativePath', 5],
      ['ExposeProtoCasing', 6],
    ]);
    expect(found.find((f) => f.rule === 'UndefinedVar')).toEqual({
      rule: 'UndefinedVar',
      url: 'https://docs.docker.com/go/dockerfile/rule/undefined-var/',
      description: 'Variables should be defined before their use',
      message: "Usage of undefined variable '$PAHT' (did you mean $PATH?)",
      file: expect.stringMatching(/ctx-bad\/Dockerfile$/),
      line: 2,
    });
    expect(r.stdout).toContain('   5 | >>> WORKDIR app');
    expect(await imageCount()).toBe(before);
  });

  it('exit 0 with none; --call check is the same; other --call values are usage errors', async () => {
    const ctx = path.join(work, 'ctx-good');
    await writeTree(ctx, { Dockerfile: 'FROM busybox\nENV P=$PATH\nCMD ["sh"]\n' });
    const r = await tsbuild(['build', '--check', ctx], { root });
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toBe('Check complete, no warnings found.\n');
    const c = await tsbuild(['build', '--call', 'check', '-f', path.join(ctx, 'Dockerfile'), ctx], { root });
    expect(c.code).toBe(0);
    const o = await tsbuild(['build', '--call', 'outline', ctx], { root });
    expect(o.code).toBe(2);
    expect(o.stderr).toContain('--call "outline" is not supported');
  });

  it('with --target looks at the dispatch-time checks of that target only', async () => {
    const ctx = path.join(work, 'ctx-target');
    await writeTree(ctx, { Dockerfile: 'FROM scratch AS one\nCMD echo one\nFROM scratch AS two\nCMD ["two"]\n' });
    const all = await tsbuild(['build', '--check', ctx], { root });
    expect(all.code).toBe(1);
    expect(all.stdout).toContain('WARNING: JSONArgsRecommended');
    const two = await tsbuild(['build', '--check', '--target', 'two', ctx], { root });
    expect(two.code, two.stdout).toBe(0);
  });

  it('honours skip, experimental and the BUILDKIT_DOCKERFILE_CHECK build arg', async () => {
    const ctx = path.join(work, 'ctx-skip');
    await writeTree(ctx, {
      Dockerfile: '# check=skip=JSONArgsRecommended;experimental=CopyIgnoredFile\nFROM scratch\nCMD echo hi\nCOPY secret.txt /\n',
      '.dockerignore': 'secret.txt\n',
      'secret.txt': 's\n',
    });
    const r = await tsbuild(['build', '--check', ctx], { root });
    expect(r.code).toBe(1);
    expect(r.stdout).not.toContain('JSONArgsRecommended');
    expect(r.stdout).toContain('Attempting to Copy file "secret.txt" that is excluded by .dockerignore');
    const all = await tsbuild(['build', '--check', '--build-arg', 'BUILDKIT_DOCKERFILE_CHECK=skip=all', ctx], { root });
    expect(all.code, all.stdout).toBe(0);
  });
});

describe('build checks during a build', () => {
  it('one warning line per finding at its line, the build goes on; skip=all silences them', async () => {
    const ctx = path.join(work, 'ctx-warn');
    await writeTree(ctx, {
      Dockerfile: 'FROM scratch\nMAINTAINER me\nLABEL a b\nCOPY f.txt /\n',
      'quiet.Dockerfile': '# check=skip=all\nFROM scratch\nMAINTAINER me\nLABEL a b\nCOPY f.txt /\n',
      'f.txt': 'f\n',
    });
    const r = await tsbuild(['build', '--progress', 'plain', ctx], { root });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^sha256:[0-9a-f]{64}\n$/);
    const warnings = r.stderr.split('\n').filter((l) => l.startsWith('WARNING: '));
    expect(warnings).toEqual([
      expect.stringMatching(/Dockerfile:2: MaintainerDeprecated: Maintainer instruction is deprecated in favor of using label$/),
      expect.stringMatching(/Dockerfile:3: LegacyKeyValueFormat: "LABEL key=value" should be used instead of legacy "LABEL key value" format$/),
    ]);
    const q = await tsbuild(['build', '--progress', 'plain', '-f', path.join(ctx, 'quiet.Dockerfile'), ctx], { root });
    expect(q.code, q.stderr).toBe(0);
    expect(q.stderr).not.toContain('WARNING');
  });

  it('check=error=true fails the build before any step, naming the rules; an unknown name warns', async () => {
    const ctx = path.join(work, 'ctx-error');
    await writeTree(ctx, {
      Dockerfile: '# check=error=true;skip=NoSuchCheck\nFROM busybox\nRUN touch /ran\nCMD echo hi\n',
      'ok.Dockerfile': '# check=error=true\nFROM busybox\nCMD ["sh"]\n',
    });
    const r = await tsbuild(['build', '--progress', 'plain', ctx], { root });
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toContain('lint violation found for rules: JSONArgsRecommended');
    expect(r.stderr).toContain('"NoSuchCheck", which is no build check');
    expect(r.stderr).not.toContain('RUN touch');
    const ok = await tsbuild(['build', '-q', '-f', path.join(ctx, 'ok.Dockerfile'), ctx], { root });
    expect(ok.code, ok.stderr).toBe(0);
  });
});
