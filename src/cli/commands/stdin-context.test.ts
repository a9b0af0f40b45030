import { describe, expect, it } from 'vitest';
import { markStdinContext, STDIN_CONTEXT } from './index.js';

describe('markStdinContext (build -)', () => {
  it('marks a lone - that is the context, keeps one that is an option value', () => {
    expect(markStdinContext(['-'])).toEqual([STDIN_CONTEXT]);
    expect(markStdinContext(['-q', '-'])).toEqual(['-q', STDIN_CONTEXT]);
    expect(markStdinContext(['-f', '-', '.'])).toEqual(['-f', '-', '.']);
    expect(markStdinContext(['-f', '-', '-'])).toEqual(['-f', '-', STDIN_CONTEXT]);
    expect(markStdinContext(['--file=x', '-'])).toEqual(['--file=x', STDIN_CONTEXT]);
    expect(markStdinContext(['-t', 'a', '.'])).toEqual(['-t', 'a', '.']);
  });
});
