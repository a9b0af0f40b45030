/**
 * Robustness: mutated Dockerfiles (from the conformance suite) must each give a tree or a
 * TsbuildError with a location, never hang and never throw anything else; the same holds for
 * the dump, the typed instructions and the stage split of every tree that parses.
 * Deterministic: a seeded PRNG, so a failure names the seed and input index to replay.
 */
import { describe, expect, it } from 'vitest';
import { TsbuildError } from '../errors.js';
import { dumpDockerfile, parseDockerfile, splitStages, toInstructions } from './index.js';
import { corpus, mutate, prng } from './test-fuzz-inputs.js';

const SEED = 0x5eed_2024;
const INPUTS = 20_000;

function expectLocatedTsbuildError(e: unknown, context: string): void {
  if (!(e instanceof TsbuildError)) {
    throw new Error(`${context}: threw a non-TsbuildError: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
  }
  const loc = e.location;
  if (loc === undefined || loc.file !== 'Dockerfile' || !(loc.startLine >= 1) || !(loc.endLine >= loc.startLine)) {
    throw new Error(`${context}: TsbuildError ${e.code} "${e.message}" without a proper location: ${JSON.stringify(loc)}`);
  }
}

describe('parser fuzz', () => {
  it(`gives a tree or a located TsbuildError for ${INPUTS} mutated Dockerfiles`, () => {
    const rand = prng(SEED);
    const seeds = corpus();
    expect(seeds.length).toBeGreaterThan(20);
    const started = performance.now();
    let parsed = 0;
    let rejected = 0;
    for (let i = 0; i < INPUTS; i++) {
      const input = mutate(seeds[i % seeds.length] ?? Buffer.alloc(0), rand);
      const context = `seed ${SEED} input ${i} (${JSON.stringify(input.toString('latin1').slice(0, 200))})`;
      let tree;
      try {
        tree = parseDockerfile(input, { file: 'Dockerfile' });
      } catch (e) {
        expectLocatedTsbuildError(e, context);
        rejected++;
        continue;
      }
      parsed++;
      expect(typeof dumpDockerfile(tree)).toBe('string');
      try {
        splitStages(toInstructions(tree));
      } catch (e) {
        expectLocatedTsbuildError(e, context);
      }
    }
    const seconds = (performance.now() - started) / 1000;
    // Both outcomes must occur, or the mutations are not exercising the parser.
    expect(parsed).toBeGreaterThan(INPUTS / 10);
    expect(rejected).toBeGreaterThan(INPUTS / 100);
    console.log(`fuzz: ${INPUTS} inputs, ${parsed} parsed, ${rejected} rejected, ${seconds.toFixed(2)} s`);
  });

  it('copes with pathological inputs', () => {
    const cases = [
      Buffer.alloc(200_000, 0x5c), // one huge line of backslashes
      Buffer.from(`RUN ${'\\\n'.repeat(50_000)}x`),
      Buffer.from(`RUN ${'<<EOF '.repeat(5_000)}\n`),
      Buffer.from(`CMD ${'['.repeat(20_000)}${']'.repeat(20_000)}`),
      Buffer.from(`ENV ${'a="b c" '.repeat(5_000)}`),
      Buffer.from(`${'#\n'.repeat(100_000)}FROM a`),
      Buffer.alloc(70_000, 0xff),
      Buffer.from(`RUN ${'"'.repeat(30_000)} <<EOF\nEOF\n`),
      Buffer.from(`RUN ${'${a:-'.repeat(10_000)}<<EOF\nEOF\n`),
      Buffer.from(`RUN <<${'${a:-'.repeat(10_000)}x${'}'.repeat(10_000)}\nEOF\n`),
      Buffer.from(`RUN <<${' '.repeat(60_000)}a<\n`),
      Buffer.from(`#a=x${' '.repeat(60_000)}x\nFROM a\n`),
    ];
    for (const [i, input] of cases.entries()) {
      try {
        dumpDockerfile(parseDockerfile(input, { file: 'Dockerfile' }));
      } catch (e) {
        expectLocatedTsbuildError(e, `pathological input ${i}`);
      }
    }
  });
});
