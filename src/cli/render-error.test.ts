import { describe, expect, it } from 'vitest';
import { EXIT, TsbuildError } from '../errors.js';
import { renderError } from './render-error.js';

// STYLE.md 7: 0 ok, 1 build failed, 2 usage, 130 cancelled, 70 internal bug.
describe('renderError', () => {
  it('a located TsbuildError is FILE:LINE: message with its hint, exit 1, no stack', () => {
    const err = new TsbuildError('DOCKERFILE_SYNTAX', 'unterminated heredoc', {
      location: { file: 'ci/Dockerfile', startLine: 3, endLine: 5 },
      hint: 'end it with EOF',
    });
    expect(renderError(err)).toEqual({ text: 'error: ci/Dockerfile:3: unterminated heredoc\nhint: end it with EOF\n', exitCode: EXIT.failed });
  });

  it('a usage error exits 2', () => {
    expect(renderError(new TsbuildError('USAGE', '--push needs at least one -t NAME'))).toEqual({ text: 'error: --push needs at least one -t NAME\n', exitCode: EXIT.usage });
  });

  it('an abort is "cancelled", exit 130', () => {
    expect(renderError(new DOMException('received SIGINT', 'AbortError'))).toEqual({ text: 'cancelled\n', exitCode: EXIT.cancelled });
    expect(renderError(Object.assign(new Error('aborted'), { code: 'ABORT_ERR' })).exitCode).toBe(130);
  });

  it('anything else is a bug: exit 70 with the stack, so it can be reported', () => {
    const r = renderError(new TypeError("Cannot read properties of undefined (reading 'x')"));
    expect(r.exitCode).toBe(EXIT.internal);
    expect(r.exitCode).toBe(70);
    expect(r.text).toMatch(/^internal error \(this is a bug in tsbuild/);
    expect(r.text).toMatch(/\n\s+at /);
    expect(renderError('a string').exitCode).toBe(70);
  });
});
