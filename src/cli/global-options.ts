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
