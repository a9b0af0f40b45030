import { describe, expect, it } from 'vitest';
import { parseDockerfile } from '../parser.js';
import { toInstructions } from '../instructions.js';
import { runBuildChecks, type CheckOptions } from './run-checks.js';
import { CHECK_NAMES, type CheckName } from './rules.js';

const AUTO = new Map([
  ['BUILDPLATFORM', 'linux/amd64'],
  ['BUILDOS', 'linux'],
  ['BUILDARCH', 'amd64'],
  ['TARGETPLATFORM', 'linux/amd64'],
  ['TARGETOS', 'linux'],
  ['TARGETARCH', 'amd64'],
  ['TARGETVARIANT', ''],
]);

function check(text: string, opts: Partial<CheckOptions> = {}) {
  const parsed = parseDockerfile(text, { file: 'Dockerfile' });
  return runBuildChecks(parsed, toInstructions(parsed), {
    buildArgs: new Map(),
    automaticArgs: AUTO,
    dispatched: 'all',
    baseImage: (ref) => (ref === 'busybox' ? { env: ['PATH=/bin', 'HOME=/root'], platform: 'linux/amd64' } : ref === 'armonly' ? { env: [], platform: 'linux/arm64/v8' } : undefined),
    ...opts,
  });
}
const names = (text: string, opts: Partial<CheckOptions> = {}): string[] => check(text, opts).hits.map((h) => h.rule.name);

// One row per check: a Dockerfile that triggers it (at `line`) and one that does not.
const TABLE: Array<{ rule: CheckName; bad: string; line: number; message: RegExp; good: string; opts?: Partial<CheckOptions> }> = [
  { rule: 'StageNameCasing', bad: 'FROM scratch AS Build\n', line: 1, message: /^Stage name 'Build' should be lowercase$/, good: 'FROM scratch AS build\n' },
  { rule: 'FromAsCasing', bad: 'FROM scratch as build\n', line: 1, message: /^'as' and 'FROM' keywords' casing do not match$/, good: 'from scratch as build\n' },
  { rule: 'NoEmptyContinuation', bad: 'FROM scratch\nLABEL a=1 \\\n\n  b=2\n', line: 2, message: /^Empty continuation line$/, good: 'FROM scratch\nLABEL a=1 \\\n  b=2\n' },
  { rule: 'ConsistentInstructionCasing', bad: 'FROM scratch\nLABEL a=1\nlabel b=2\n', line: 3, message: /^Command 'label' should match the case of the command majority \(uppercase\)$/, good: 'from scratch\nlabel b=2\n' },
  { rule: 'DuplicateStageName', bad: 'FROM scratch AS a\nFROM scratch AS a\n', line: 2, message: /^Duplicate stage name "a"/, good: 'FROM scratch AS a\nFROM scratch AS b\n' },
  { rule: 'ReservedStageName', bad: 'FROM scratch AS context\n', line: 1, message: /reserved stage "context"/, good: 'FROM scratch AS ctx\n' },
  { rule: 'JSONArgsRecommended', bad: 'FROM scratch\nCMD echo hi\n', line: 2, message: /^JSON arguments recommended for CMD /, good: 'FROM scratch\nSHELL ["/bin/sh", "-c"]\nCMD echo hi\nENTRYPOINT ["x"]\n' },
  { rule: 'MaintainerDeprecated', bad: 'FROM scratch\nMAINTAINER me\n', line: 2, message: /^Maintainer instruction is deprecated/, good: 'FROM scratch\nLABEL org.opencontainers.image.authors=me\n' },
  { rule: 'UndefinedArgInFrom', bad: 'ARG VERSION=1\nFROM busybox:${VERSIN}\n', line: 2, message: /^FROM argument 'VERSIN' is not declared \(did you mean VERSION\?\)$/, good: 'ARG VERSION=1\nFROM busybox:${VERSION}\n' },
  { rule: 'WorkdirRelativePath', bad: 'FROM scratch\nWORKDIR app\n', line: 2, message: /^Relative workdir "app"/, good: 'FROM scratch\nWORKDIR /app\nWORKDIR sub\n' },
  { rule: 'UndefinedVar', bad: 'FROM busybox\nENV A=$HOMe\n', line: 2, message: /^Usage of undefined variable '\$HOMe' \(did you mean \$HOME\?\)$/, good: 'FROM busybox\nARG X\nENV A=$HOME B=$X\n' },
  { rule: 'MultipleInstructionsDisallowed', bad: 'FROM scratch\nCMD ["a"]\nCMD ["b"]\n', line: 2, message: /^Multiple CMD instructions should not be used/, good: 'FROM scratch AS a\nCMD ["a"]\nFROM a\nCMD ["b"]\n' },
  { rule: 'LegacyKeyValueFormat', bad: 'FROM scratch\nENV A b\n', line: 2, message: /^"ENV key=value" should be used instead of legacy "ENV key value" format$/, good: 'FROM scratch\nENV A=b\n' },
  { rule: 'InvalidBaseImagePlatform', bad: 'FROM armonly\n', line: 1, message: /^Base image armonly was pulled with platform "linux\/arm64\/v8", expected "linux\/amd64" for current build$/, good: 'FROM busybox\nFROM --platform=linux/arm64 armonly AS build-arm64\n' },
  { rule: 'RedundantTargetPlatform', bad: 'FROM --platform=$TARGETPLATFORM scratch\n', line: 1, message: /predefined \$TARGETPLATFORM in FROM is redundant/, good: 'FROM --platform=$BUILDPLATFORM scratch\n' },
  { rule: 'SecretsUsedInArgOrEnv', bad: 'FROM scratch\nARG GITHUB_TOKEN\n', line: 2, message: /^Do not use ARG or ENV instructions for sensitive data \(ARG "GITHUB_TOKEN"\)$/, good: 'FROM scratch\nARG PUBLIC_KEY\n' },
  { rule: 'InvalidDefaultArgInFrom', bad: 'ARG TAG\nFROM busybox:${TAG}\n', line: 2, message: /^Default value for ARG busybox:\$\{TAG\} results in empty or invalid base image name$/, good: 'ARG TAG=latest\nFROM busybox:${TAG}\n' },
  { rule: 'FromPlatformFlagConstDisallowed', bad: 'FROM --platform=linux/amd64 scratch AS base\n', line: 1, message: /^FROM --platform flag should not use constant value "linux\/amd64"$/, good: 'FROM --platform=linux/amd64 scratch AS build-amd64\n' },
  {
    rule: 'CopyIgnoredFile',
    bad: '# check=experimental=CopyIgnoredFile\nFROM scratch\nCOPY ./tmp/x.txt /\n',
    line: 3,
    message: /^Attempting to Copy file "\.\/tmp\/x\.txt" that is excluded by \.dockerignore$/,
    good: '# check=experimental=CopyIgnoredFile\nFROM scratch\nCOPY ./keep/x.txt /\nCOPY --from=busybox /tmp/x /\n',
    opts: { isIgnored: (src) => src.replace(/^\.\//, '').startsWith('tmp/') || src === 'tmp' },
  },
  {
    rule: 'InvalidDefinitionDescription',
    bad: '# check=experimental=all\n\n# a comment\nFROM scratch AS base\n',
    line: 4,
    message: /^Comment for FROM should follow the format: `# base <description>`$/,
    good: '# check=experimental=all\n\n# base is where it starts\nFROM scratch AS base\n# another\n\nARG V=1\n',
  },
  { rule: 'ExposeProtoCasing', bad: 'FROM scratch\nEXPOSE 80/TcP\n', line: 2, message: /^Defined protocol '80\/TcP' in EXPOSE instruction should be lowercase$/, good: 'FROM scratch\nEXPOSE 80/tcp 53/udp 8080\n' },
  { rule: 'ExposeInvalidFormat', bad: 'FROM scratch\nEXPOSE 127.0.0.1:80:80\n', line: 2, message: /found '127\.0\.0\.1:80:80'$/, good: 'FROM scratch\nEXPOSE 80\n' },
];

describe('build checks: one row per check', () => {
  it.each(TABLE)('$rule', ({ rule, bad, line, message, good, opts }) => {
    const hits = check(bad, opts).hits.filter((h) => h.rule.name === rule);
    expect(hits.length, JSON.stringify(check(bad, opts).hits)).toBe(1);
    expect(hits[0]!.location.startLine).toBe(line);
    expect(hits[0]!.message).toMatch(message);
    expect(hits[0]!.rule.url).toMatch(/^https:\/\/docs\.docker\.com\/go\/dockerfile\/rule\/[a-z-]+\/$/);
    expect(names(good, opts)).not.toContain(rule);
  });

  it('covers every check', () => {
    expect(new Set(TABLE.map((r) => r.rule))).toEqual(new Set(CHECK_NAMES));
  });
});

describe('the check directive', () => {
  const bad = 'FROM scratch AS Build\nCMD echo hi\n';
  it('skips named checks, or all', () => {
    expect(names(bad)).toEqual(['StageNameCasing', 'JSONArgsRecommended']);
    expect(names(`# check=skip=StageNameCasing\n${bad}`)).toEqual(['JSONArgsRecommended']);
    expect(names(`# check=skip=StageNameCasing,JSONArgsRecommended\n${bad}`)).toEqual([]);
    expect(names(`# check=skip=all\n${bad}`)).toEqual([]);
  });
  it('error=true makes hits fatal; unknown names are reported', () => {
    const r = check(`# check=skip=NoSuchCheck;error=true\n${bad}`);
    expect(r.failOnHit).toBe(true);
    expect(r.unknownNames).toEqual(['NoSuchCheck']);
    expect(check(bad).failOnHit).toBe(false);
  });
  it('BUILDKIT_DOCKERFILE_CHECK replaces the directive', () => {
    expect(names(`# check=skip=all\n${bad}`, { buildArgs: new Map([['BUILDKIT_DOCKERFILE_CHECK', 'skip=JSONArgsRecommended']]) })).toEqual(['StageNameCasing']);
  });
  it('experimental checks stay off unless named', () => {
    const text = '\n# a comment\nFROM scratch AS base\n';
    expect(names(text)).toEqual([]);
    expect(names(`# check=experimental=InvalidDefinitionDescription\n${text}`)).toEqual(['InvalidDefinitionDescription']);
  });
});

describe('where the dispatch-time checks look', () => {
  it('only at the dispatched stages; parse-time checks at every stage', () => {
    const text = 'FROM scratch AS Other\nCMD echo hi\nFROM scratch AS main\nCMD ["ok"]\n';
    expect(names(text, { dispatched: new Set([1]) })).toEqual(['StageNameCasing']);
    expect(names(text, { dispatched: 'all' })).toEqual(['StageNameCasing', 'JSONArgsRecommended']);
  });
  it('UndefinedVar stays quiet on an image whose ENV is unknown, and sees ENV of a base stage', () => {
    expect(names('FROM unknown-image\nENV A=$JAVA_HOME\n')).toEqual([]);
    expect(names('FROM busybox AS a\nENV J=/j\nFROM a\nENV B=$J C=$PATH\n')).toEqual([]);
    expect(names('FROM scratch\nENV A=1 B=$A\n')).toEqual(['UndefinedVar']);
  });
});
