import type { Logger } from 'pino';
import type { Store } from '../store/index.js';
import type { Argv, ArgumentsCamelCase } from 'yargs';
import type { Io } from './io.js';
import type { GlobalArgs } from './global-options.js';

/** What a command handler gets besides its parsed flags. */
export interface CommandContext {
  readonly io: Io;
  /** The store root directory, resolved from --root / TSBUILD_ROOT / XDG. */
  readonly root: string;
  /** Created on first use so that commands which never log pay nothing. */
  logger(): Logger;
  /** Opens (creating if needed) the store at `root`; the same Store on every call. */
  store(): Promise<Store>;
}

/**
 * One CLI command's flags and handler (its name and summary are in commands/index.ts, so that
 * start-up needs no command module). `run` returns the exit code; errors it throws are rendered by main().
 * Keeping the shape this small keeps yargs inside cli/ (DESIGN.md import rules).
 */
export interface CommandSpec<A> {
  builder(y: Argv<GlobalArgs>): Argv<A>;
  run(args: ArgumentsCamelCase<A>, ctx: CommandContext): Promise<number>;
}

/** Identity helper that keeps the flag types of `builder` and `run` tied together. */
export function defineCommand<A>(spec: CommandSpec<A>): CommandSpec<A> {
  return spec;
}

/**
 * For flags that may be given several times (-t a -t b). yargs' `array: true` would also
 * swallow the positional arguments that follow (`-t x CONTEXT`), so repeated flags are
 * collected by yargs' duplicate handling and flattened here.
 */
export function repeatable(value: unknown): string[] {
  if (value === undefined) return [];
  return (Array.isArray(value) ? value : [value]).map((v) => String(v));
}
