/**
 * Robustness past the parser: every mutated Dockerfile that parses into stages is planned and
 * each planned stage's instructions expanded, as the build engine does before it touches
 * anything. The outcome is a plan with expanded steps or a TsbuildError with a location,
 * never another throw (which the CLI would report as an internal bug, exit 70).
 */
import { describe, expect, it } from 'vitest';
import { TsbuildError } from '../errors.js';
import { parseDockerfile, splitStages, toInstructions } from '../dockerfile/index.js';
import { corpus, mutate, prng } from '../dockerfile/test-fuzz-inputs.js';
import { plan, runStages } from './test-support.js';

const SEED = 0x91a7_2026;
const INPUTS = 5_000;

describe('planner fuzz', () => {
  it(`plans and expands ${INPUTS} mutated Dockerfiles or gives a located TsbuildError`, () => {
    const rand = prng(SEED);
    const seeds = corpus();
    let planned = 0;
    let rejected = 0;
    for (let i = 0; i < INPUTS; i++) {
      // latin1 keeps every byte as one character, as the engine's byte-level parse does.
      const text = mutate(seeds[i % seeds.length] ?? Buffer.alloc(0), rand).toString('latin1');
      try {
        // The engine refuses a file without FROM (located) before it plans.
        if (splitStages(toInstructions(parseDockerfile(text, { file: 'Dockerfile' }))).stages.length === 0) continue;
        runStages(plan(text, { args: { A: '1', HTTP_PROXY: 'http://p' } }));
        planned++;
      } catch (e) {
        const context = `seed ${SEED} input ${i} (${JSON.stringify(text.slice(0, 200))})`;
        if (!(e instanceof TsbuildError)) throw new Error(`${context}: threw a non-TsbuildError: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
        const loc = e.location;
        if (loc === undefined || loc.file !== 'Dockerfile' || !(loc.startLine >= 1) || !(loc.endLine >= loc.startLine)) {
          throw new Error(`${context}: TsbuildError ${e.code} "${e.message}" without a proper location`);
        }
        rejected++;
      }
    }
    expect(planned).toBeGreaterThan(INPUTS / 10);
    expect(rejected).toBeGreaterThan(INPUTS / 100);
  });
});
