/**
 * Typed instructions -> build stages: the ARGs before the first FROM (meta args, visible to
 * every FROM line) and one stage per FROM with the instructions up to the next FROM.
 * BuildKit: frontend/dockerfile/instructions/parse.go Parse, dockerfile2llb (duplicate names).
 * https://docs.docker.com/reference/dockerfile/#understand-how-arg-and-from-interact
 */
import { TsbuildError } from '../errors.js';
import type { SourceLocation } from '../errors.js';
import type { ArgInstruction, FromInstruction, Instruction } from './instructions.js';

export interface Stage {
  /** 0-based position in the file; `COPY --from=0` refers to it. */
  readonly index: number;
  /** `FROM ... AS name`, lower-cased. */
  readonly name?: string;
  readonly from: FromInstruction;
  /** The stage's instructions after its FROM, in order. */
  readonly instructions: readonly Instruction[];
  /** From the FROM line to the stage's last line. */
  readonly location: SourceLocation;
}

export interface SplitStages {
  readonly metaArgs: readonly ArgInstruction[];
  readonly stages: readonly Stage[];
}

/**
 * Splits instructions into meta args and stages. Errors (DOCKERFILE_INSTRUCTION, located):
 * an instruction other than ARG before the first FROM; two stages with the same name.
 */
export function splitStages(instructions: readonly Instruction[]): SplitStages {
  const metaArgs: ArgInstruction[] = [];
  const stages: { index: number; name?: string; from: FromInstruction; instructions: Instruction[] }[] = [];
  const names = new Map<string, FromInstruction>();
  for (const ins of instructions) {
    if (ins.kind === 'FROM') {
      if (ins.stageName !== undefined) {
        const earlier = names.get(ins.stageName);
        if (earlier !== undefined) {
          throw new TsbuildError('DOCKERFILE_INSTRUCTION', `duplicate stage name ${JSON.stringify(ins.stageName)}`, {
            location: ins.location,
            hint: `the name is already used by the stage on line ${earlier.location.startLine}`,
          });
        }
        names.set(ins.stageName, ins);
      }
      stages.push({
        index: stages.length,
        ...(ins.stageName === undefined ? {} : { name: ins.stageName }),
        from: ins,
        instructions: [],
      });
      continue;
    }
    const current = stages[stages.length - 1];
    if (current === undefined) {
      if (ins.kind === 'ARG') {
        metaArgs.push(ins);
        continue;
      }
      throw new TsbuildError('DOCKERFILE_INSTRUCTION', 'no build stage in current context', {
        location: ins.location,
        hint: 'only ARG may come before the first FROM',
      });
    }
    current.instructions.push(ins);
  }
  return {
    metaArgs,
    stages: stages.map((s) => {
      const last = s.instructions[s.instructions.length - 1] ?? s.from;
      return {
        ...s,
        location: { file: s.from.location.file, startLine: s.from.location.startLine, endLine: last.location.endLine },
      };
    }),
  };
}
