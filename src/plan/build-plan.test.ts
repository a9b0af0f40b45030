import { describe, expect, it } from 'vitest';
import { TsbuildError } from '../errors.js';
import type { RunStep, Step } from './expand.js';
import { plan, runStages, targetSteps, thrown } from './test-support.js';

const runs = (steps: Step[]): RunStep[] => steps.filter((s): s is RunStep => s.kind === 'RUN');
const labels = (steps: Step[]): Record<string, string> =>
  Object.fromEntries(steps.flatMap((s) => (s.kind === 'LABEL' ? s.pairs.map((p) => [p.key, p.value]) : [])));

function expectError(fn: () => unknown, code: string, line?: number): TsbuildError {
  const e = thrown(fn);
  expect(e).toBeInstanceOf(TsbuildError);
  const err = e as TsbuildError;
  expect(err.code).toBe(code);
  if (line !== undefined) expect(err.location?.startLine).toBe(line);
  return err;
}

describe('meta ARGs and FROM', () => {
  const text = [
    'ARG IMG=alpine',
    'ARG TAG=3.${MINOR:-19}',
    'FROM ${IMG}:${TAG} AS one',
    'LABEL before=x$TAG',
    'ARG TAG',
    'LABEL after=$TAG',
    'RUN echo $TAG',
  ].join('\n');

  it.each<{ args: Record<string, string>; ref: string }>([
    { args: {}, ref: 'alpine:3.19' },
    { args: { MINOR: '18' }, ref: 'alpine:3.19' }, // MINOR is no ARG: not in the global scope
    { args: { TAG: 'edge' }, ref: 'alpine:edge' },
    { args: { IMG: 'debian', TAG: '12' }, ref: 'debian:12' },
  ])('FROM expands with meta ARGs and build args $args', ({ args, ref }) => {
    const { plan: p } = plan(text, { args });
    expect(p.stages[0]?.base).toEqual({ kind: 'image', ref });
  });

  it('a meta ARG is visible in a stage only once re-declared, with the global value', () => {
    const steps = targetSteps(text);
    expect(labels(steps)).toEqual({ before: 'x', after: '3.19' });
    const [run] = runs(steps);
    expect(run?.env).toContain('TAG=3.19');
    expect(run?.history).toBe('RUN |1 TAG=3.19 /bin/sh -c echo $TAG # buildkit');
  });

  it('meta ARG defaults expand against earlier meta ARGs; build args win over defaults', () => {
    const { plan: p } = plan('ARG A=1\nARG B=${A}2\nFROM scratch', { args: { A: 'x' } });
    expect(p.globalArgs.get('A')).toBe('x');
    expect(p.globalArgs.get('B')).toBe('x2');
    expect(p.stages[0]?.base).toEqual({ kind: 'scratch' });
  });

  it('FROM --platform expands with the global args', () => {
    const { plan: p } = plan('FROM --platform=$BUILDPLATFORM golang AS build\nFROM --platform=${TARGETPLATFORM} alpine\nCOPY --from=build /a /a');
    expect(p.stages.map((s) => s.platform)).toEqual(['linux/amd64', 'linux/arm64']);
  });

  it.each([
    ['FROM $NOPE', 'DOCKERFILE_INSTRUCTION'],
    ['FROM --platform=$NOPE alpine', 'DOCKERFILE_INSTRUCTION'],
    ['FROM --platform=linux/a/b/c alpine', 'PLATFORM_INVALID'],
    ['FROM ${X:?needs}', 'DOCKERFILE_EXPANSION'],
  ])('bad FROM %s is a located error', (text, code) => {
    expectError(() => plan(`\n${text}`), code, 2);
  });

  it('a meta ARG error is located at the ARG', () => {
    expectError(() => plan('ARG A=${B:?no B}\nFROM scratch'), 'DOCKERFILE_EXPANSION', 1);
  });
});

describe('automatic platform args', () => {
  it('are in the global scope', () => {
    const { plan: p } = plan('FROM scratch', { targetPlatform: { os: 'linux', architecture: 'arm', variant: 'v7' } });
    expect(Object.fromEntries([...p.globalArgs].filter(([k]) => k.startsWith('TARGET') || k.startsWith('BUILD')))).toEqual({
      BUILDPLATFORM: 'linux/amd64',
      BUILDOS: 'linux',
      BUILDOSVERSION: '',
      BUILDARCH: 'amd64',
      BUILDVARIANT: '',
      TARGETPLATFORM: 'linux/arm/v7',
      TARGETOS: 'linux',
      TARGETOSVERSION: '',
      TARGETARCH: 'arm',
      TARGETVARIANT: 'v7',
      TARGETSTAGE: '',
    });
  });

  it('are visible in a stage only through ARG, and --build-arg overrides them', () => {
    const text = 'FROM scratch AS out\nLABEL a=[$TARGETARCH]\nARG TARGETARCH\nARG BUILDOS\nLABEL b=$TARGETARCH c=$BUILDOS d=$TARGETSTAGE';
    expect(labels(targetSteps(text))).toEqual({ a: '[]', b: 'arm64', c: 'linux', d: '' });
    expect(labels(targetSteps(text, { args: { TARGETARCH: 'riscv64' } }))).toMatchObject({ b: 'riscv64' });
    expect(plan(text, { target: 'out' }).plan.globalArgs.get('TARGETSTAGE')).toBe('out');
  });
});

describe('ARG scope per stage', () => {
  it('an ARG of one stage is not visible in another', () => {
    const text = 'FROM alpine AS a\nARG A=1\nFROM alpine AS b\nCOPY --from=a / /\nLABEL a=[$A]\nRUN true';
    const steps = targetSteps(text);
    expect(labels(steps)).toEqual({ a: '[]' });
    expect(runs(steps)[0]?.env.some((e) => e.startsWith('A='))).toBe(false);
  });

  it('a stage built FROM another stage keeps its ARG values (BuildKit carries the LLB state)', () => {
    const steps = targetSteps('FROM alpine AS a\nARG A=1\nFROM a\nRUN echo');
    expect(runs(steps)[0]?.history).toBe('RUN |1 A=1 /bin/sh -c echo # buildkit');
    expect(runs(steps)[0]?.visible).toMatchObject({ A: '1' });
  });

  it.each<{ args: Record<string, string>; want: Record<string, string> }>([
    { args: {}, want: { d: 'dflt', u: '', g: 'meta' } },
    { args: { D: 'cli', U: 'cli-u', G: 'cli-g' }, want: { d: 'cli', u: 'cli-u', g: 'cli-g' } },
  ])('--build-arg overrides defaults $args', ({ args, want }) => {
    const text = 'ARG G=meta\nFROM scratch\nARG D=dflt U G\nLABEL d=$D u=$U g=$G';
    expect(labels(targetSteps(text, { args }))).toEqual(want);
  });

  it('a build arg nobody declares is not visible', () => {
    expect(labels(targetSteps('FROM scratch\nLABEL x=[$X]', { args: { X: '1' } }))).toEqual({ x: '[]' });
  });

  it('ARG defaults see earlier ARGs of the same instruction, ENV values do not', () => {
    expect(labels(targetSteps('FROM scratch\nARG A=1 B=${A}2\nENV C=3 D=x$C\nLABEL b=$B d=$D'))).toEqual({ b: '12', d: 'x' });
  });

  it('an ARG without any value is declared (RUN history shows it empty) but not in the env', () => {
    const [run] = runs(targetSteps('FROM alpine\nARG V\nRUN echo'));
    expect(run?.history).toBe('RUN |1 V= /bin/sh -c echo # buildkit');
    expect(run?.env.some((e) => e.startsWith('V='))).toBe(false);
  });
});

describe('ENV and ARG precedence', () => {
  it.each([
    { text: 'ARG A=arg\nENV A=env', want: 'env', note: 'ENV after ARG wins (reference)' },
    { text: 'ENV A=env\nARG A=arg', want: 'arg', note: 'ARG after ENV wins (BuildKit state env)' },
    { text: 'ARG A=arg\nENV A=env\nARG A', want: 'env', note: 'ARG without value keeps the env' },
    { text: 'ARG V\nENV A=${V:-v1.0.0}', want: 'v1.0.0', note: 'reference example, no build arg' },
  ])('$note', ({ text, want }) => {
    const steps = targetSteps(`FROM alpine\n${text}\nLABEL a=$A\nRUN x`);
    expect(labels(steps).a).toBe(want);
    expect(runs(steps)[0]?.visible['A']).toBe(want);
  });

  it('reference example with a build arg', () => {
    const steps = targetSteps('FROM alpine\nARG V\nENV A=${V:-v1.0.0}\nLABEL a=$A', { args: { V: 'v2.0.1' } });
    expect(labels(steps).a).toBe('v2.0.1');
  });

  it('an ARG overrides an ENV of the base image', () => {
    const loaded = plan('FROM alpine\nARG DEBIAN_FRONTEND=noninteractive\nRUN env');
    const run = runs(runStages(loaded, ['PATH=/bin', 'DEBIAN_FRONTEND=teletype']).get(0)?.steps ?? [])[0];
    expect(run?.env).toEqual(['PATH=/bin', 'DEBIAN_FRONTEND=noninteractive']);
  });
});

describe('predefined proxy args', () => {
  const args = { HTTP_PROXY: 'http://p:3128', no_proxy: 'localhost' };

  it('reach RUN without an ARG, but not its history, cache key or the unused list', () => {
    const { plan: p, ...rest } = plan('FROM alpine\nRUN curl x', { args });
    const [run] = runs(runStages({ plan: p, ...rest }).get(0)?.steps ?? []);
    expect(run?.env).toEqual(
      expect.arrayContaining(['HTTP_PROXY=http://p:3128', 'http_proxy=http://p:3128', 'NO_PROXY=localhost', 'no_proxy=localhost']),
    );
    expect(Object.keys(run?.visible ?? {})).toEqual(['PATH']);
    expect(run?.history).toBe('RUN /bin/sh -c curl x # buildkit');
    expect(p.unusedBuildArgs).toEqual([]);
  });

  it('are keyed and shown once declared', () => {
    const [run] = runs(targetSteps('FROM alpine\nARG HTTP_PROXY\nRUN curl x', { args }));
    expect(run?.visible['HTTP_PROXY']).toBe('http://p:3128');
    expect(run?.history).toBe('RUN |1 HTTP_PROXY=http://p:3128 /bin/sh -c curl x # buildkit');
  });
});

describe('--target and stage dependencies', () => {
  const text = [
    'FROM alpine AS base', // 0
    'FROM base AS viafrom', // 1
    'FROM alpine AS named', // 2
    'FROM alpine', // 3 (unnamed, used by index)
    'FROM alpine AS mounted', // 4
    'FROM alpine AS unrelated', // 5
    'FROM viafrom AS final', // 6
    'COPY --from=NAMED /a /a',
    'COPY --from=3 /b /b',
    'RUN --mount=type=bind,from=mounted,target=/m true',
    'COPY --from=busybox:1 /bin/sh /sh',
    'RUN --mount=type=cache,target=/c --mount=from=node:20,target=/n true',
  ].join('\n');

  it('keeps only the stages the target needs, dependencies first', () => {
    const { plan: p } = plan(text);
    expect(p.target).toBe(6);
    expect(p.stages.map((s) => s.stage.index)).toEqual([0, 1, 2, 3, 4, 6]);
    const final = p.stages.find((s) => s.stage.index === 6);
    expect(final?.base).toEqual({ kind: 'stage', index: 1 });
    expect(final?.dependsOn).toEqual([1, 2, 3, 4]);
    expect(final?.imageSources).toEqual(['busybox:1', 'node:20']);
    expect(p.stages.find((s) => s.stage.index === 1)?.dependsOn).toEqual([0]);
  });

  it.each([
    ['viafrom', [0, 1]],
    ['Named', [2]],
    ['unrelated', [5]],
  ])('--target %s', (target, want) => {
    const { plan: p } = plan(text, { target });
    expect(p.stages.map((s) => s.stage.index)).toEqual(want);
    expect(p.target).toBe(want[want.length - 1]);
  });

  it('an unknown target is STAGE_NOT_FOUND listing the stages', () => {
    const err = expectError(() => plan(text, { target: 'nope' }), 'STAGE_NOT_FOUND');
    expect(err.message).toBe('target stage "nope" could not be found');
    expect(err.hint).toContain('viafrom');
  });

  it('a FROM naming a later stage is an image', () => {
    const { plan: p } = plan('FROM alpine AS a\nFROM b AS c\nFROM alpine AS b', { target: 'c' });
    expect(p.stages.map((s) => [s.stage.index, s.base])).toEqual([[1, { kind: 'image', ref: 'b' }]]);
  });

  it('a FROM names a stage through a global ARG, case-sensitively (stage names are lower-case)', () => {
    const text = 'ARG B=build\nFROM alpine AS build\nFROM $B AS viaarg';
    expect(plan(text).plan.stages.map((s) => s.base)).toEqual([
      { kind: 'image', ref: 'alpine' },
      { kind: 'stage', index: 0 },
    ]);
    // `Build` is then an image name, and not a valid one (even in a stage the target skips).
    expectError(() => plan(`${text}\nFROM Build AS upper\nFROM scratch`), 'REFERENCE_INVALID', 4);
  });

  it('ONBUILD triggers of a base stage run in the child and add dependencies', () => {
    const loaded = plan('FROM alpine AS src\nFROM alpine AS base\nONBUILD COPY --from=src /x /x\nFROM base');
    expect(loaded.plan.stages.map((s) => s.stage.index)).toEqual([0, 1, 2]);
    expect(loaded.plan.stages[2]?.dependsOn).toEqual([0, 1]);
    expect(runStages(loaded).get(2)?.steps.map((s) => s.kind)).toEqual(['COPY']);
  });
});

describe('bad stage references', () => {
  it.each([
    ['FROM alpine\nFROM alpine\nCOPY --from=2 /a /b', 'STAGE_NOT_FOUND', 3, 'invalid stage index 2'],
    ['FROM alpine\nCOPY --from=-1 /a /b', 'STAGE_NOT_FOUND', 2, 'invalid stage index -1'],
    ['ARG S=x\nFROM alpine\nCOPY --from=$S /a /b', 'DOCKERFILE_INSTRUCTION', 3, undefined],
    ['FROM alpine\nRUN --mount=from=$S,target=/x true', 'DOCKERFILE_INSTRUCTION', 2, undefined],
    ['FROM alpine AS a\nCOPY --from=a /x /y', 'STAGE_CYCLE', 2, 'circular dependency detected on stage: a'],
    ['FROM alpine AS a\nCOPY --from=b /x /y\nFROM alpine AS b\nRUN --mount=from=a,target=/a true', 'STAGE_CYCLE', 2, undefined],
    ['FROM alpine AS a\nCOPY --from=b /x /y\nFROM alpine AS b\nFROM a', 'STAGE_NOT_FOUND', 2, 'cannot copy from stage "b", it needs to be defined before current stage "a"'],
    ['FROM alpine AS a\nRUN --mount=from=b,target=/b true\nFROM alpine AS b\nFROM a', 'STAGE_NOT_FOUND', 2, undefined],
  ])('%s', (text, code, line, message) => {
    const err = expectError(() => plan(text), code, line);
    if (message !== undefined) expect(err.message).toBe(message);
  });

  it.each([
    ['FROM alpine\nCOPY --from=Bad:x /a /b', 2],
    ['FROM alpine\nRUN --mount=from=UPPER,target=/x true', 2],
    ['FROM alpine:b@d', 1],
  ])('an invalid image name %s is a located REFERENCE_INVALID', (text, line) => {
    expectError(() => plan(text), 'REFERENCE_INVALID', line);
  });

  it('an index in an unreachable stage is still checked (BuildKit builds the whole graph)', () => {
    expectError(() => plan('FROM alpine AS a\nCOPY --from=9 /a /b\nFROM alpine AS b', { target: 'b' }), 'STAGE_NOT_FOUND', 2);
  });

  it('a forward reference in an unreachable stage is not an error', () => {
    expect(plan('FROM alpine AS a\nCOPY --from=b /x /y\nFROM alpine AS b', { target: 'b' }).plan.stages).toHaveLength(1);
  });
});

describe('unused build args', () => {
  it.each<{ text: string; args: Record<string, string>; want: string[] }>([
    { text: 'FROM scratch', args: { A: '1', B: '2' }, want: ['A', 'B'] },
    { text: 'ARG A\nFROM scratch', args: { A: '1', B: '2' }, want: ['B'] },
    { text: 'FROM scratch\nARG B', args: { A: '1', B: '2' }, want: ['A'] },
    { text: 'FROM scratch AS x\nARG A\nFROM scratch', args: { A: '1' }, want: ['A'] },
    { text: 'FROM scratch', args: { https_proxy: 'p', ALL_PROXY: 'q', Http_Proxy: 'r' }, want: ['Http_Proxy'] },
    { text: 'FROM scratch', args: { TARGETARCH: 'x', SOURCE_DATE_EPOCH: '0', targetarch: 'y' }, want: ['targetarch'] },
  ])('$text with $args', ({ text, args, want }) => {
    expect(plan(text, { args }).plan.unusedBuildArgs).toEqual(want);
  });
});
