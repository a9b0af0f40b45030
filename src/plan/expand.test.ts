import { describe, expect, it } from 'vitest';
import { TsbuildError } from '../errors.js';
import { parseDockerfile, ShellLex, splitStages, toInstructions } from '../dockerfile/index.js';
import { expandInstruction } from './expand.js';
import type { Step } from './expand.js';
import { normalizeWorkdir, parsePortSpec } from './index.js';
import { plan, runStages, targetSteps, thrown } from './test-support.js';

/** The last step of a one-stage Dockerfile `FROM scratch` + `lines`. */
function last(lines: string, args: Record<string, string> = {}): Step {
  const steps = targetSteps(`FROM scratch\n${lines}`, { args });
  const step = steps[steps.length - 1];
  if (step === undefined) throw new Error('no steps');
  return step;
}

/** Fields of a step worth comparing in a table. */
function essence(step: Step): unknown {
  switch (step.kind) {
    case 'ENV':
    case 'LABEL':
      return Object.fromEntries(step.pairs.map((p) => [p.key, p.value]));
    case 'ARG':
      return Object.fromEntries(step.args.map((a) => [a.key, a.value ?? null]));
    case 'COPY':
    case 'ADD':
      return { sources: step.sources, dest: step.dest, chown: step.chown, chmod: step.chmod, contents: step.contents };
    case 'WORKDIR':
      return step.path;
    case 'USER':
      return step.user;
    case 'VOLUME':
      return step.volumes;
    case 'EXPOSE':
      return step.ports;
    case 'STOPSIGNAL':
      return step.signal;
    case 'RUN':
      return step.args;
    case 'CMD':
      return step.cmd;
    case 'ENTRYPOINT':
      return step.entrypoint;
    case 'SHELL':
      return step.shell;
    case 'ONBUILD':
      return step.expression;
    case 'MAINTAINER':
      return step.maintainer;
    case 'HEALTHCHECK':
      return step.test;
    default:
      return step satisfies never;
  }
}

describe('expansion per instruction kind', () => {
  it.each([
    // ENV: keys and values, quotes removed, all words against the env before the instruction
    ['ENV A="x y"', { A: 'x y' }],
    ["ENV A='$B' C=\\$B", { A: '$B', C: '$B' }],
    ['ARG B=2\nENV A=$B', { A: '2' }],
    ['ENV abc=hello\nENV abc=bye def=$abc', { abc: 'bye', def: 'hello' }],
    ['ENV A hello  world', { A: 'hello  world' }],
    ['ARG K=key\nENV ${K}_1=v', { key_1: 'v' }],
    ['ENV A=${UNSET:-dflt} B=${UNSET-d2} C=${UNSET:+alt}', { A: 'dflt', B: 'd2', C: '' }],
    ['ARG V=1.2.3\nENV A=${V:+set} B=${V#1.} C=${V%.3} D=${V/2/two} E=${V//./-}', { A: 'set', B: '2.3', C: '1.2', D: '1.two.3', E: '1-2-3' }],
    ['ARG E=\nENV A=${E:-empty} B=${E-unset}', { A: 'empty', B: '' }],
    // LABEL: keys and values
    ['ARG N=name\nLABEL "org.$N"="a $N" plain=x', { 'org.name': 'a name', plain: 'x' }],
    // ARG: defaults expand, names do not
    ['ARG A=1\nARG B="$A two" C', { B: '1 two', C: null }],
    // WORKDIR, USER, STOPSIGNAL, VOLUME
    ['ARG D=/app\nWORKDIR $D/sub', '/app/sub'],
    ['WORKDIR /a\nWORKDIR b/../c', '/a/c'],
    ['ARG U=1000 G=1000\nUSER $U:${G}', '1000:1000'],
    ['ARG S=SIGKILL\nSTOPSIGNAL $S', 'SIGKILL'],
    ['STOPSIGNAL 9', '9'],
    ['ARG D=/data\nVOLUME $D /logs', ['/data', '/logs']],
    ['ARG D=/data\nVOLUME ["$D", "/x"]', ['/data', '/x']],
    // EXPOSE: split into words after expansion, then port specs
    ['ARG P="80 443/udp"\nEXPOSE $P 8000-8002/TCP', ['80/tcp', '443/udp', '8000/tcp', '8001/tcp', '8002/tcp']],
    ['EXPOSE 127.0.0.1:8080:80', ['80/tcp']],
    // COPY/ADD: sources, dest, --chown, --chmod
    ['ARG S=src U=app M=0644\nCOPY --chown=$U:$U --chmod=$M ${S}/a "$S"b /dst/$S/', { sources: ['src/a', 'srcb'], dest: '/dst/src/', chown: 'app:app', chmod: '0644', contents: [] }],
    ['ARG F=f\nADD ["$F", "/d"]', { sources: ['f'], dest: '/d', chown: undefined, chmod: undefined, contents: [] }],
    // not expanded: RUN, CMD, ENTRYPOINT, SHELL, ONBUILD, MAINTAINER, HEALTHCHECK
    ['ARG X=1\nRUN echo $X "$X"', ['/bin/sh', '-c', 'echo $X "$X"']],
    ['ARG X=1\nRUN ["echo", "$X"]', ['echo', '$X']],
    ['ARG X=1\nCMD echo $X', ['/bin/sh', '-c', 'echo $X']],
    ['ARG X=1\nENTRYPOINT ["run", "$X"]', ['run', '$X']],
    ['SHELL ["/bin/bash", "-c", "$X"]', ['/bin/bash', '-c', '$X']],
    ['ARG X=1\nONBUILD RUN echo $X', 'RUN echo $X'],
    ['MAINTAINER $ME', '$ME'],
    ['ARG X=1\nHEALTHCHECK CMD curl $X', ['CMD-SHELL', 'curl $X']],
  ])('%s', (lines, want) => {
    expect(essence(last(lines))).toEqual(want);
  });

  it('heredoc sources expand unless the delimiter is quoted, keeping quotes', () => {
    const step = last("ARG X=1\nCOPY <<EOF <<'RAW' <<-TABS /d/\n\"$X\" '${X}' \\$X\nEOF\n$X\nRAW\n\t\t$X\n\tTABS");
    expect(essence(step)).toMatchObject({
      contents: [
        { path: 'EOF', data: `"1" '1' $X\n` },
        { path: 'RAW', data: '$X\n' },
        { path: 'TABS', data: '1\n' },
      ],
    });
  });

  it('--from is resolved, never expanded by the stage env', () => {
    const loaded = plan('FROM alpine AS b\nFROM alpine\nCOPY --from=B /a /a\nCOPY --from=0 /a /a\nCOPY --from=img:1 /a /a\nCOPY /a /a\nCOPY --from=scratch /a /a');
    const steps = runStages(loaded).get(1)?.steps ?? [];
    expect(steps.map((s) => (s.kind === 'COPY' ? s.source : undefined))).toEqual([
      { kind: 'stage', index: 0 },
      { kind: 'stage', index: 0 },
      { kind: 'image', ref: 'img:1' },
      { kind: 'context' },
      { kind: 'scratch' },
    ]);
    expect(loaded.plan.stages[1]?.imageSources).toEqual(['img:1']);
  });

  it('ADD --checksum expands', () => {
    const step = last('ARG C=sha256:abc\nADD --checksum=$C https://x/y /y');
    expect(step.kind === 'ADD' && step.checksum).toBe('sha256:abc');
  });

  it('RUN --mount values expand against the stage env; relative targets join WORKDIR', () => {
    const step = last('ARG ID=gomod\nWORKDIR /src\nRUN --mount=type=cache,id=$ID,target=cache,sharing=locked --mount=type=secret,id=tok true');
    expect(step.kind === 'RUN' && step.mounts).toEqual([
      { type: 'cache', id: 'gomod', target: '/src/cache', sharing: 'locked', readOnly: false, required: false, from: { kind: 'scratch' } },
      { type: 'secret', id: 'tok', readOnly: true, required: false },
    ]);
  });

  it.each([
    'RUN --mount=type=nope true',
    'RUN --mount=type=bind,mode=0644,target=/x true',
    'RUN --mount=type=cache,target=/ true',
    'RUN --mount=type=bind,bogus=1 true',
  ])('bad mount %s is a located error', (line) => {
    const e = thrown(() => last(line)) as TsbuildError;
    expect(e.code).toBe('DOCKERFILE_INSTRUCTION');
    expect(e.location?.startLine).toBe(2);
  });
});

describe('shell form and SHELL', () => {
  it.each([
    ['CMD echo hi', ['/bin/sh', '-c', 'echo hi']],
    ['SHELL ["/bin/bash", "-eu", "-c"]\nCMD echo hi', ['/bin/bash', '-eu', '-c', 'echo hi']],
    ['SHELL ["/bin/bash", "-c"]\nCMD ["echo", "hi"]', ['echo', 'hi']],
    ['SHELL ["pwsh", "-c"]\nENTRYPOINT exec app', ['pwsh', '-c', 'exec app']],
    ['SHELL ["/bin/bash", "-c"]\nRUN echo hi', ['/bin/bash', '-c', 'echo hi']],
  ])('%s', (lines, want) => {
    expect(essence(last(lines))).toEqual(want);
  });

  it('CMD history is Go %q of the argv', () => {
    expect(last('CMD echo "hi"').history).toBe('CMD ["/bin/sh" "-c" "echo \\"hi\\""]');
    // Go's escapes, not JSON's: \x01 and \x7f where JSON.stringify writes \u0001 and a raw DEL.
    expect(last('CMD ["a\\u0001", "b\\u007f", "é"]').history).toBe('CMD ["a\\x01" "b\\x7f" "é"]');
  });

  it('a lone RUN heredoc is the script; with a shebang it becomes a file', () => {
    expect(essence(last('RUN <<EOF\necho a\necho b\nEOF'))).toEqual(['/bin/sh', '-c', 'echo a\necho b\n']);
    const step = last('RUN <<EOF\n#!/usr/bin/env python3\nprint(1)\nEOF');
    expect(step.kind === 'RUN' && [step.args, step.inlineFile]).toEqual([
      ['/bin/sh', '-c', '/dev/pipes/EOF'],
      { path: '/dev/pipes/EOF', data: '#!/usr/bin/env python3\nprint(1)\n' },
    ]);
    expect(essence(last('RUN python3 <<EOF\nprint(1)\nEOF'))).toEqual(['/bin/sh', '-c', 'python3 <<EOF\nprint(1)\nEOF']);
  });
});

describe('escape directive', () => {
  it.each([
    ['# escape=`\nFROM scratch\nENV P=C:\\tools\\bin Q=a`$B', { P: 'C:\\tools\\bin', Q: 'a$B' }],
    ['FROM scratch\nENV P=C:\\tools Q=a\\$B', { P: 'C:tools', Q: 'a$B' }],
  ])('%s', (text, want) => {
    const steps = targetSteps(text);
    expect(essence(steps[steps.length - 1] as Step)).toEqual(want);
  });

  it('heredoc bodies always expand with `\\` as the escape', () => {
    const steps = targetSteps('# escape=`\nFROM scratch\nARG X=1\nCOPY <<EOF /d\n\\$X `$X\nEOF');
    const step = steps[steps.length - 1] as Step;
    expect(step.kind === 'COPY' && step.contents[0]?.data).toBe('$X `1\n');
  });
});

describe('errors carry the instruction location', () => {
  it.each([
    ['FROM scratch\n\nENV A=${B:?required}', 'DOCKERFILE_EXPANSION', 3],
    ['FROM scratch\nLABEL a=${B', 'DOCKERFILE_EXPANSION', 2],
    ['FROM scratch\nARG A=${Z:?}', 'DOCKERFILE_EXPANSION', 2],
    ['FROM scratch\nCOPY <<EOF /d\n${X:?no}\nEOF', 'DOCKERFILE_EXPANSION', 2],
    ['FROM scratch\nSTOPSIGNAL SIGNOPE', 'DOCKERFILE_INSTRUCTION', 2],
    ['FROM scratch\nSTOPSIGNAL 0', 'DOCKERFILE_INSTRUCTION', 2],
    ['FROM scratch\nEXPOSE 80/foo', 'DOCKERFILE_INSTRUCTION', 2],
    ['FROM scratch\nEXPOSE 70000', 'DOCKERFILE_INSTRUCTION', 2],
    ['FROM scratch\nVOLUME $EMPTY', 'DOCKERFILE_INSTRUCTION', 2],
    ['FROM scratch\nWORKDIR $EMPTY', 'DOCKERFILE_INSTRUCTION', 2],
    [`FROM scratch\nADD --checksum=sha256:${'0'.repeat(64)} a.txt /x`, 'DOCKERFILE_INSTRUCTION', 2],
    [`FROM scratch\nADD --checksum=sha256:${'0'.repeat(64)} https://x/a https://x/b /x/`, 'DOCKERFILE_INSTRUCTION', 2],
    [`FROM scratch\nADD --checksum=sha256:${'0'.repeat(64)} <<EOF /x\nhi\nEOF`, 'DOCKERFILE_INSTRUCTION', 2],
  ])('%s', (text, code, line) => {
    const e = thrown(() => targetSteps(text));
    expect(e).toBeInstanceOf(TsbuildError);
    expect((e as TsbuildError).code).toBe(code);
    expect((e as TsbuildError).location).toEqual({ file: 'Dockerfile', startLine: line, endLine: expect.any(Number) });
  });

  it('FROM is not expandable per step', () => {
    const parsed = parseDockerfile('FROM scratch', { file: 'Dockerfile' });
    const from = splitStages(toInstructions(parsed)).stages[0]?.from;
    const { plan: p } = plan('FROM scratch');
    const scope = runStages({ plan: p, lex: new ShellLex() }).get(0)?.scope;
    if (from === undefined || scope === undefined) throw new Error('setup');
    expect(() => expandInstruction(from, { env: [], scope, lex: new ShellLex(), workdir: '/', shell: [] })).toThrow(Error);
  });
});

describe('history, keyText and visible', () => {
  it.each([
    ['ENV A=1 B="x y"', 'ENV A=1 B=x y'],
    ['LABEL a=b', 'LABEL a=b'],
    ['ARG A=1 B', 'ARG A=1 B'],
    ['WORKDIR app', 'WORKDIR /app'],
    ['USER nobody', 'USER nobody'],
    ['VOLUME /a /b', 'VOLUME [/a /b]'],
    ['EXPOSE 80 53/udp 80', 'EXPOSE map[53/udp:{} 80/tcp:{}]'],
    ['STOPSIGNAL SIGTERM', 'STOPSIGNAL SIGTERM'],
    ['SHELL ["/bin/bash", "-c"]', 'SHELL [/bin/bash -c]'],
    ['MAINTAINER me', 'MAINTAINER me'],
    ['COPY --chown=1:1 a b /d/', 'COPY a b /d/ # buildkit'],
    ['ADD <<EOF /d\nx\nEOF', 'ADD <<EOF /d # buildkit'],
    ['ARG V=1\nRUN make', 'RUN |1 V=1 /bin/sh -c make # buildkit'],
    ['HEALTHCHECK --interval=5m --timeout=3s CMD curl -f http://localhost/', 'HEALTHCHECK {Test:[CMD-SHELL curl -f http://localhost/] Interval:5m0s Timeout:3s StartPeriod:0s StartInterval:0s Retries:0}'],
    ['ONBUILD RUN x', undefined],
  ])('%s', (lines, history) => {
    expect(last(lines).history).toBe(history);
  });

  it('keyText changes exactly with the expanded instruction', () => {
    const key = (lines: string, args: Record<string, string> = {}): string => last(lines, args).keyText;
    expect(key('ARG V=1\nCOPY a /$V')).toBe(key('COPY a /1'));
    expect(key('ARG V\nCOPY a /$V', { V: '1' })).toBe(key('COPY a /1'));
    expect(key('ARG V\nCOPY a /$V', { V: '2' })).not.toBe(key('COPY a /1'));
    expect(key('ENV A=1 B=2')).not.toBe(key('ENV A=1\\ B=2'));
    expect(key('RUN echo $V')).toBe(key('ARG V=9\nRUN echo $V')); // the RUN text is the same ...
  });

  it('RUN visible holds the env it sees: ARG and ENV values', () => {
    const a = last('ARG V=9\nENV E=1\nRUN echo $V');
    const b = last('ARG V=8\nENV E=1\nRUN echo $V');
    expect(a.visible).toEqual({ PATH: '/usr/bin:/bin', V: '9', E: '1' }); // ... the env is not
    expect(b.visible['V']).toBe('8');
    expect(last('COPY a /b').visible).toEqual({});
  });
});

describe('helpers', () => {
  it.each([
    ['/', 'a', '/a'],
    ['/a', '../..', '/'],
    ['/a', '/b/./c/', '/b/c'],
    ['', 'x', '/x'],
  ])('normalizeWorkdir(%s, %s)', (cur, req, want) => {
    expect(normalizeWorkdir(cur, req)).toBe(want);
  });

  it.each([
    ['80', ['80/tcp']],
    ['80/UDP', ['80/udp']],
    ['1-3/sctp', ['1/sctp', '2/sctp', '3/sctp']],
    ['[::1]:80:80', ['80/tcp']],
    ['8080-8081:80-81', ['80/tcp', '81/tcp']],
  ])('parsePortSpec(%s)', (spec, want) => {
    expect(parsePortSpec(spec)).toEqual(want);
  });

  it.each(['', '/tcp', 'x', '3-1', '80:1-2', 'a.b.c:80:80'])('parsePortSpec(%s) fails', (spec) => {
    expect(() => parsePortSpec(spec)).toThrow();
  });
});
