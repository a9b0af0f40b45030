import { TsbuildError, isAbortError, EXIT } from '../errors.js';
import { sourceMappedStack } from './source-mapped-stack.js';

/**
 * Turns an error into the text a user reads and the exit code (STYLE.md 7).
 * User mistakes never show a stack trace; anything unexpected is reported as a bug.
 */
export function renderError(err: unknown): { text: string; exitCode: number } {
  if (err instanceof TsbuildError && err.code === 'CANCELLED') return { text: 'cancelled\n', exitCode: EXIT.cancelled };
  if (err instanceof TsbuildError) {
    const where = err.location ? `${err.location.file}:${err.location.startLine}: ` : '';
    let text = `error: ${where}${err.message}\n`;
    if (err.hint) text += `hint: ${err.hint}\n`;
    return { text, exitCode: err.exitCode };
  }
  if (isAbortError(err)) {
    return { text: 'cancelled\n', exitCode: EXIT.cancelled };
  }
  // The stack points at the TypeScript sources, not at the bundle (scripts/bundle-cli.mjs).
  const detail = err instanceof Error ? (err.stack !== undefined ? sourceMappedStack(err.stack) : err.message) : String(err);
  return {
    text: `internal error (this is a bug in tsbuild, please report it):\n${detail}\n`,
    exitCode: EXIT.internal,
  };
}
