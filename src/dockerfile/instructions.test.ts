import { describe, expect, it } from 'vitest';
import { TsbuildError } from '../errors.js';
import { parseDockerfile, toInstruction, toInstructions } from './index.js';
import type { Instruction } from './index.js';

/** The typed form of the first instruction of `text`, without location and original text. */
function typed(text: string): Omit<Instruction, 'location' | 'original'> {
  const [first] = toInstructions(parseDockerfile(text, { file: 'Dockerfile' }));
  if (first === undefined) throw new Error('no instruction');
  const { location: _l, original: _o, ...rest } = first;
  return rest;
}

function typeError(text: string): TsbuildError {
  try {
    toInstructions(parseDockerfile(text, { file: 'Dockerfile' }));
  } catch (e) {
    expect(e).toBeInstanceOf(TsbuildError);
    return e as TsbuildError;
  }
  throw new Error(`expected an error for ${JSON.stringify(text)}`);
}

describe('toInstruction: typed values', () => {
  it.each<[string, object]>([
    ['FROM alpine', { kind: 'FROM', image: 'alpine' }],
    ['FROM --platform=linux/arm64 alpine:3 AS Build', { kind: 'FROM', image: 'alpine:3', stageName: 'build', platform: 'linux/arm64' }],
    ['from $BASE as b-1.x_y', { kind: 'FROM', image: '$BASE', stageName: 'b-1.x_y' }],
    ['RUN echo "$HOME"  &&  ls', { kind: 'RUN', form: 'shell', args: ['echo "$HOME"  &&  ls'], heredocs: [], mounts: [] }],
    ['RUN ["sh", "-c", "x"]', { kind: 'RUN', form: 'exec', args: ['sh', '-c', 'x'], heredocs: [], mounts: [] }],
    ['RUN --network=default --security=sandbox x', { kind: 'RUN', args: ['x'], network: 'default', security: 'sandbox' }],
    ['RUN --network=host x', { kind: 'RUN', args: ['x'], network: 'host' }],
    [
      'RUN --mount=type=cache,target=/c --mount=type=secret,id=s --network=none --security=insecure make',
      {
        kind: 'RUN',
        form: 'shell',
        args: ['make'],
        mounts: ['type=cache,target=/c', 'type=secret,id=s'],
        network: 'none',
        security: 'insecure',
      },
    ],
    [
      'RUN <<EOF\nset -e\nEOF\n',
      { kind: 'RUN', form: 'shell', args: ['<<EOF'], heredocs: [{ name: 'EOF', content: 'set -e\n', expand: true, chomp: false }] },
    ],
    ['CMD ["nginx", "-g", "daemon off;"]', { kind: 'CMD', form: 'exec', args: ['nginx', '-g', 'daemon off;'] }],
    ['CMD nginx -g "daemon off;"', { kind: 'CMD', form: 'shell', args: ['nginx -g "daemon off;"'] }],
    ['ENTRYPOINT []', { kind: 'ENTRYPOINT', form: 'exec', args: [] }],
    ['SHELL ["/bin/bash", "-c"]', { kind: 'SHELL', args: ['/bin/bash', '-c'] }],
    [
      'ENV A=1 B="two words" C=x\\ y',
      {
        kind: 'ENV',
        pairs: [
          { key: 'A', value: '1', legacy: false },
          { key: 'B', value: '"two words"', legacy: false },
          { key: 'C', value: 'x\\ y', legacy: false },
        ],
      },
    ],
    ['ENV PATH /usr/bin:$PATH', { kind: 'ENV', pairs: [{ key: 'PATH', value: '/usr/bin:$PATH', legacy: true }] }],
    ['LABEL a.b="c d"', { kind: 'LABEL', pairs: [{ key: 'a.b', value: '"c d"', legacy: false }] }],
    ['ARG A B=2 C=', { kind: 'ARG', args: [{ key: 'A' }, { key: 'B', value: '2' }, { key: 'C', value: '' }] }],
    [
      'COPY --from=build --chown=1:2 --chmod=644 --link --parents --exclude=*.md --exclude=x a b /dst/',
      {
        kind: 'COPY',
        form: 'shell',
        sources: ['a', 'b'],
        sourceContents: [],
        dest: '/dst/',
        from: 'build',
        chown: '1:2',
        chmod: '644',
        link: true,
        parents: true,
        exclude: ['*.md', 'x'],
      },
    ],
    ['COPY ["a b", "/c"]', { kind: 'COPY', form: 'exec', sources: ['a b'], dest: '/c', link: false, parents: false }],
    [
      'COPY <<-EOF /etc/x\n\tone\nEOF\n',
      { kind: 'COPY', sources: [], sourceContents: [{ path: 'EOF', data: 'one\n', expand: true }], dest: '/etc/x' },
    ],
    [
      'ADD --checksum=sha256:abc --keep-git-dir=false --unpack=true --link=false http://x/y.tgz /z',
      {
        kind: 'ADD',
        sources: ['http://x/y.tgz'],
        dest: '/z',
        checksum: 'sha256:abc',
        keepGitDir: false,
        unpack: true,
        link: false,
      },
    ],
    ['WORKDIR /a b', { kind: 'WORKDIR', path: '/a b' }],
    ['USER app:app', { kind: 'USER', user: 'app:app' }],
    ['VOLUME ["/a", "/b"]', { kind: 'VOLUME', form: 'exec', volumes: ['/a', '/b'] }],
    ['VOLUME /a /b', { kind: 'VOLUME', form: 'shell', volumes: ['/a', '/b'] }],
    ['EXPOSE 80/tcp 53/udp $P', { kind: 'EXPOSE', ports: ['80/tcp', '53/udp', '$P'] }],
    ['STOPSIGNAL SIGKILL', { kind: 'STOPSIGNAL', signal: 'SIGKILL' }],
    ['HEALTHCHECK NONE', { kind: 'HEALTHCHECK', test: ['NONE'] }],
    [
      'HEALTHCHECK --interval=1m30s --timeout=3s --start-period=500ms --start-interval=1.5s --retries=3 CMD curl -f http://x/ || exit 1',
      {
        kind: 'HEALTHCHECK',
        test: ['CMD-SHELL', 'curl -f http://x/ || exit 1'],
        interval: 90000,
        timeout: 3000,
        startPeriod: 500,
        startInterval: 1500,
        retries: 3,
      },
    ],
    ['HEALTHCHECK cmd ["/bin/check", "-q"]', { kind: 'HEALTHCHECK', test: ['CMD', '/bin/check', '-q'] }],
    ['MAINTAINER Jane <jane@example.com>', { kind: 'MAINTAINER', maintainer: 'Jane <jane@example.com>' }],
  ])('%s', (text, expected) => {
    expect(typed(text)).toMatchObject(expected);
  });

  it('types ONBUILD triggers and keeps the expression as written', () => {
    const ins = typed('ONBUILD  RUN --mount=type=cache,target=/x  make all');
    expect(ins).toMatchObject({
      kind: 'ONBUILD',
      expression: 'RUN --mount=type=cache,target=/x  make all',
      trigger: { kind: 'RUN', args: ['make all'], mounts: ['type=cache,target=/x'] },
    });
  });

  it('gives every instruction its location and original text', () => {
    const parsed = parseDockerfile('FROM a\nRUN x \\\n  y\nCOPY <<EOF /f\nz\nEOF\n', { file: 'df' });
    const all = toInstructions(parsed);
    expect(all.map((i) => [i.kind, i.location])).toEqual([
      ['FROM', { file: 'df', startLine: 1, endLine: 1 }],
      ['RUN', { file: 'df', startLine: 2, endLine: 3 }],
      ['COPY', { file: 'df', startLine: 4, endLine: 6 }],
    ]);
    expect(all[1]?.original).toBe('RUN x   y');
    const single = parsed.children[2];
    if (single === undefined) throw new Error('missing node');
    expect(toInstruction(single, 'other').location.file).toBe('other');
  });
});

describe('toInstruction: errors', () => {
  it.each<[string, string, number?]>([
    ['FROM a\nFORM b', 'unknown instruction: FORM', 2],
    ['FROM a\nBOGUS x', 'unknown instruction: BOGUS', 2],
    ['FROM', 'FROM requires either one or three arguments', 1],
    ['FROM a b', 'FROM requires either one or three arguments'],
    ['FROM a AS 1x', 'invalid name for build stage: "1x", name can\'t start with a number or contain symbols'],
    ['FROM --plat=x a', 'unknown flag: plat'],
    ['FROM a\nCOPY x', 'COPY requires at least two arguments, but only one was provided. Destination could not be determined', 2],
    ['FROM a\nADD x', 'ADD requires at least two arguments, but only one was provided. Destination could not be determined'],
    ['FROM a\nCOPY --foo=1 a b', 'unknown flag: foo (did you mean from?)'],
    ['FROM a\nCOPY --verbose a b', 'unknown flag: verbose'],
    ['FROM a\nCOPY --from a b', 'missing a value on flag: from'],
    ['FROM a\nCOPY --from=a --from=b a b', 'duplicate flag specified: from'],
    ['FROM a\nCOPY --link=maybe a b', 'expecting boolean value for flag link, not: maybe'],
    ['FROM a\nCOPY a <<EOF\nx\nEOF\n', 'COPY cannot accept a heredoc as a destination'],
    ['FROM a\nRUN --checksum=x y', 'unknown flag: checksum'],
    ['FROM a\nRUN --network=bogus y', 'invalid network mode "bogus"'],
    ['FROM a\nRUN --network=$NET y', 'invalid network mode "$NET"'],
    ['FROM a\nRUN --security=bogus y', 'security "bogus" is not valid'],
    ['FROM a\nENV', 'ENV requires at least one argument'],
    ['FROM a\nLABEL', 'LABEL requires at least one argument'],
    ['FROM a\nARG', 'ARG requires at least one argument'],
    ['FROM a\nARG =x', 'ARG names can not be blank'],
    ['FROM a\nENV =x', 'ENV names can not be blank'],
    ['FROM a\nWORKDIR', 'WORKDIR requires exactly one argument'],
    ['FROM a\nUSER', 'USER requires exactly one argument'],
    ['FROM a\nSTOPSIGNAL', 'STOPSIGNAL requires exactly one argument'],
    ['FROM a\nMAINTAINER', 'MAINTAINER requires exactly one argument'],
    ['FROM a\nEXPOSE', 'EXPOSE requires at least one argument'],
    ['FROM a\nVOLUME', 'VOLUME requires at least one argument'],
    ['FROM a\nVOLUME [" "]', 'VOLUME specified can not be an empty string'],
    ['FROM a\nSHELL sh -c', 'SHELL requires the arguments to be in JSON form'],
    ['FROM a\nSHELL []', 'SHELL requires at least one argument'],
    ['FROM a\nHEALTHCHECK', 'HEALTHCHECK requires at least one argument'],
    ['FROM a\nHEALTHCHECK NONE x', 'HEALTHCHECK NONE takes no arguments'],
    ['FROM a\nHEALTHCHECK CONNECT x', 'Unknown type "CONNECT" in HEALTHCHECK (try CMD)'],
    ['FROM a\nHEALTHCHECK CMD []', 'Missing command after HEALTHCHECK CMD'],
    ['FROM a\nHEALTHCHECK --interval=5 CMD x', 'time: missing unit in duration "5"'],
    ['FROM a\nHEALTHCHECK --interval=10us CMD x', 'Interval "interval" cannot be less than 1ms'],
    ['FROM a\nHEALTHCHECK --retries=0 CMD x', '--retries must be at least 1 (not 0)'],
    ['FROM a\nHEALTHCHECK --retries=x CMD x', 'strconv.ParseInt: parsing "x": invalid syntax'],
    ['FROM a\nONBUILD', 'ONBUILD requires at least one argument'],
    ['FROM a\nONBUILD ONBUILD RUN x', 'Chaining ONBUILD via `ONBUILD ONBUILD` isn\'t allowed'],
    ['FROM a\nONBUILD FROM b', "FROM isn't allowed as an ONBUILD trigger"],
    ['FROM a\nONBUILD maintainer me', "MAINTAINER isn't allowed as an ONBUILD trigger"],
    ['FROM a\nONBUILD BOGUS', 'unknown instruction: BOGUS'],
    ['FROM a\nCMD --x y', 'unknown flag: x'],
  ])('%j', (text, message, line) => {
    const err = typeError(text);
    expect(err.code).toBe('DOCKERFILE_INSTRUCTION');
    expect(err.message).toBe(message);
    expect(err.location?.file).toBe('Dockerfile');
    if (line !== undefined) expect(err.location?.startLine).toBe(line);
  });

  it('suggests close instruction and flag names', () => {
    expect(typeError('FROM a\nFORM b').hint).toBe('did you mean FROM?');
    expect(typeError('FROM a\nRUNN x').hint).toBe('did you mean RUN?');
    expect(typeError('FROM a\nXYZZY x').hint).toBeUndefined();
    expect(typeError('FROM a\nCOPY --form=x a b').message).toBe('unknown flag: form (did you mean from?)');
  });

  it('refuses RUN --device (a CDI device name) as unsupported, at its line, naming the flag and why', () => {
    const err = typeError('FROM a\n\nRUN --device=vendor.com/gpu=all nvidia-smi');
    expect(err.code).toBe('UNSUPPORTED');
    expect(err.location?.startLine).toBe(3);
    expect(err.message).toMatch(/^RUN --device=vendor\.com\/gpu=all is not supported: .*CDI/);
  });
});
