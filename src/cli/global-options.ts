import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import type { Logger } from 'pino';
import type { Io } from './io.js';

export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** Flags every command accepts. */
export interface GlobalArgs {
  readonly root?: string | undefined;
  readonly 'log-level': LogLevel;
}

/**
 * Where the store lives: --root, else $TSBUILD_ROOT, else $XDG_DATA_HOME/tsbuild,
 * else ~/.local/share/tsbuild (as issue 3 and the XDG base directory spec say).
 */
export function resolveRoot(flag: string | undefined, io: Pick<Io, 'env' | 'cwd'>): string {
  if (flag) return path.resolve(io.cwd, flag);
  const env = io.env;
  if (env.TSBUILD_ROOT) return path.resolve(io.cwd, env.TSBUILD_ROOT);
  if (env.XDG_DATA_HOME) return path.join(env.XDG_DATA_HOME, 'tsbuild');
  return path.join(env.HOME || os.homedir(), '.local', 'share', 'tsbuild');
}

/**
 * The logger: structured JSON lines on stderr (stdout carries results only).
 * Credentials are redacted wherever they could appear in a field.
 */
export function createLogger(level: LogLevel): Logger {
  // pino (CommonJS) is loaded here, synchronously, on first use: a command that never logs
  // does not pay its ~20 ms of module loading at start-up.
  const { pino } = createRequire(import.meta.url)('pino') as typeof import('pino');
  return pino(
    {
      level,
      base: undefined,
      redact: {
        paths: ['password', 'token', 'auth', 'authorization', '*.password', '*.token', '*.auth', '*.authorization', 'headers.authorization'],
        censor: '[redacted]',
      },
    },
    pino.destination({ fd: 2, sync: true }),
  );
}

/** pino's numbers for the levels (a line is written when its level is at least the logger's). */
const LEVEL_VALUES: Readonly<Record<LogLevel, number>> = { trace: 10, debug: 20, info: 30, warn: 40, error: 50, fatal: 60, silent: Infinity };

/**
 * A logger that makes the real one (`create`, which loads pino) only when a line at an enabled
 * level is written, or something else of it is used. Commands hand a logger to the registry
 * client, which logs its requests at debug: at the default level (warn) a push or pull then
 * never loads pino. A line below the level is dropped here, as pino would drop it.
 */
export function lazyLogger(level: LogLevel, create: () => Logger): Logger {
  let real: Logger | undefined;
  const min = LEVEL_VALUES[level];
  const noop = (): void => undefined;
  return new Proxy({} as Logger, {
    get(_target, prop) {
      if (real === undefined) {
        if (prop === 'level') return level;
        if (prop === 'isLevelEnabled') return (l: string) => l in LEVEL_VALUES && l !== 'silent' && LEVEL_VALUES[l as LogLevel] >= min;
        if (typeof prop === 'string' && prop in LEVEL_VALUES && LEVEL_VALUES[prop as LogLevel] < min) return noop;
        real = create();
      }
      const value: unknown = Reflect.get(real, prop, real);
      return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(real) : value;
    },
  });
}
