import { describe, expect, it } from 'vitest';
import { TsbuildError } from '../errors.js';
import { parseDockerfile, splitStages, toInstructions } from './index.js';
import type { SplitStages } from './index.js';

const split = (text: string): SplitStages => splitStages(toInstructions(parseDockerfile(text, { file: 'Dockerfile' })));

function splitError(text: string): TsbuildError {
  try {
    split(text);
  } catch (e) {
    expect(e).toBeInstanceOf(TsbuildError);
    return e as TsbuildError;
  }
  throw new Error('expected an error');
}

describe('splitStages', () => {
  const text = [
    'ARG BASE=alpine', // 1
    'ARG TAG', // 2
    'FROM $BASE:$TAG AS Builder', // 3
    'RUN make', // 4
    'COPY . /src', // 5
    '', // 6
    'FROM scratch', // 7
    'COPY --from=builder /out /', // 8
    'CMD ["/app"]', // 9
  ].join('\n');

  it('collects meta ARGs and one stage per FROM', () => {
    const { metaArgs, stages } = split(text);
    expect(metaArgs.map((a) => a.args)).toEqual([[{ key: 'BASE', value: 'alpine' }], [{ key: 'TAG' }]]);
    expect(stages.map((s) => [s.index, s.name, s.from.image, s.instructions.map((i) => i.kind)])).toEqual([
      [0, 'builder', '$BASE:$TAG', ['RUN', 'COPY']],
      [1, undefined, 'scratch', ['COPY', 'CMD']],
    ]);
  });

  it('spans each stage from its FROM to its last instruction', () => {
    const { stages } = split(text);
    expect(stages.map((s) => [s.location.startLine, s.location.endLine])).toEqual([
      [3, 5],
      [7, 9],
    ]);
    expect(split('FROM a').stages[0]?.location).toEqual({ file: 'Dockerfile', startLine: 1, endLine: 1 });
  });

  it('keeps ARGs after the first FROM inside the stage', () => {
    const { metaArgs, stages } = split('FROM a\nARG X\n');
    expect(metaArgs).toEqual([]);
    expect(stages[0]?.instructions.map((i) => i.kind)).toEqual(['ARG']);
  });

  it('rejects instructions other than ARG before the first FROM', () => {
    const err = splitError('ARG A\nRUN x\nFROM a\n');
    expect(err.code).toBe('DOCKERFILE_INSTRUCTION');
    expect(err.message).toBe('no build stage in current context');
    expect(err.location).toEqual({ file: 'Dockerfile', startLine: 2, endLine: 2 });
  });

  it('rejects duplicate stage names, case-insensitively', () => {
    const err = splitError('FROM a AS one\nFROM b AS two\nFROM c AS ONE\n');
    expect(err.code).toBe('DOCKERFILE_INSTRUCTION');
    expect(err.message).toBe('duplicate stage name "one"');
    expect(err.location?.startLine).toBe(3);
  });

  it('allows a file of meta ARGs only', () => {
    expect(split('ARG A')).toMatchObject({ stages: [], metaArgs: [{ kind: 'ARG' }] });
  });
});
