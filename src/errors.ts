/**
 * The one error type tsbuild raises for anything a user can cause or fix.
 *
 * Contract (STYLE.md 7): every error carries a stable `code` (tests assert on it, never
 * on message text), an optional `hint` saying what to do, an optional `cause`, and, for
 * Dockerfile problems, the `location` it came from. Only `cli/` turns errors into text.
 * Anything thrown that is not a TsbuildError (or an abort) is a bug: exit code 70.
 */

/** A place in a source file; lines are 1-based and inclusive. */
export interface SourceLocation {
  readonly file: string;
  readonly startLine: number;
  readonly endLine: number;
}

/**
 * Stable error codes. Grouped by the folder that raises them; add new codes here so the
 * set stays reviewable in one place.
 */
export type ErrorCode =
  // usage
  | 'USAGE'
  // any operation: the caller's AbortSignal fired (the API's form of Ctrl-C; exit code 130)
  | 'CANCELLED'
  // dockerfile/
  | 'DOCKERFILE_SYNTAX'
  | 'DOCKERFILE_EMPTY'
  | 'DOCKERFILE_NOT_FOUND'
  | 'DOCKERFILE_INSTRUCTION'
  | 'DOCKERFILE_EXPANSION'
  // plan/
  | 'STAGE_NOT_FOUND'
  | 'STAGE_CYCLE'
  | 'BUILD_ARG'
  // context/
  | 'CONTEXT_NOT_FOUND'
  | 'CONTEXT_SOURCE_MISSING'
  | 'CONTEXT_SOURCE_EXCLUDED'
  | 'CONTEXT_ESCAPE'
  | 'DOCKERIGNORE_INVALID'
  // oci/
  | 'REFERENCE_INVALID'
  | 'DIGEST_INVALID'
  | 'DIGEST_MISMATCH'
  | 'MANIFEST_INVALID'
  | 'PLATFORM_INVALID'
  // store/
  | 'IMAGE_NOT_FOUND'
  | 'BLOB_NOT_FOUND'
  | 'STORE_LOCKED'
  | 'STORE_CORRUPT'
  | 'ARCHIVE_INVALID'
  | 'BLOB_TOO_LARGE'
  | 'STORE_IO'
  // layer/
  | 'LAYER_INVALID'
  | 'LAYER_UNSAFE'
  | 'LAYER_IO'
  // engine/
  | 'BUILD_STEP_FAILED'
  | 'BUILD_CHECK_FAILED'
  | 'OUTPUT_INVALID'
  | 'FETCH_FAILED'
  | 'CHECKSUM_MISMATCH'
  | 'UNSUPPORTED'
  // registry/
  | 'REGISTRY_UNREACHABLE'
  | 'REGISTRY_TLS'
  | 'REGISTRY_UNAUTHORIZED'
  | 'REGISTRY_DENIED'
  | 'REGISTRY_NAME_UNKNOWN'
  | 'REGISTRY_MANIFEST_UNKNOWN'
  | 'REGISTRY_BLOB_UNKNOWN'
  | 'REGISTRY_TOO_MANY_REQUESTS'
  | 'REGISTRY_UNAVAILABLE'
  | 'REGISTRY_PROTOCOL'
  | 'REGISTRY_ERROR'
  | 'PLATFORM_UNAVAILABLE'
  | 'AUTH_CONFIG_INVALID'
  | 'AUTH_HELPER_FAILED'
  // sandbox/
  | 'SANDBOX_UNAVAILABLE'
  | 'SANDBOX_FAILED'
  | 'SANDBOX_ID_MAPPING'
  | 'EMULATOR_MISSING'
  // compose/
  | 'COMPOSE_SYNTAX'
  | 'COMPOSE_INVALID'
  | 'COMPOSE_VARIABLE'
  | 'COMPOSE_CYCLE'
  | 'COMPOSE_NOT_FOUND'
  // cli/ (rmi)
  | 'IMAGE_IN_USE';

export interface TsbuildErrorOptions {
  readonly hint?: string;
  readonly cause?: unknown;
  readonly location?: SourceLocation;
  /** Exit code override; defaults to 2 for USAGE and 1 for everything else. */
  readonly exitCode?: number;
}

export class TsbuildError extends Error {
  readonly code: ErrorCode;
  readonly hint: string | undefined;
  readonly location: SourceLocation | undefined;
  readonly exitCode: number;

  constructor(code: ErrorCode, message: string, opts: TsbuildErrorOptions = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'TsbuildError';
    this.code = code;
    this.hint = opts.hint;
    this.location = opts.location;
    this.exitCode = opts.exitCode ?? (code === 'USAGE' ? 2 : 1);
  }
}

export function isTsbuildError(e: unknown): e is TsbuildError {
  return e instanceof TsbuildError;
}

/** True for the errors an AbortSignal produces (DOMException AbortError or Node's ABORT_ERR). */
export function isAbortError(e: unknown): boolean {
  if (typeof e !== 'object' || e === null) return false;
  const err = e as { name?: unknown; code?: unknown };
  return err.name === 'AbortError' || err.code === 'ABORT_ERR';
}

export const EXIT = {
  ok: 0,
  failed: 1,
  usage: 2,
  internal: 70,
  cancelled: 130,
} as const;

/**
 * Runs `fn` and gives a TsbuildError it throws without a location this one (its code, hint and
 * exit code kept, the original as the cause): how a step's errors get their Dockerfile line.
 * `prefix` goes before the message and `hint` is the hint when the error has none. Works for
 * synchronous and asynchronous `fn` alike.
 */
export function withLocation<T>(location: SourceLocation, fn: () => T, opts: { readonly prefix?: string; readonly hint?: string } = {}): T {
  const locate = (e: unknown): unknown => {
    if (!(e instanceof TsbuildError) || e.location) return e;
    const hint = e.hint ?? opts.hint;
    return new TsbuildError(e.code, `${opts.prefix ?? ''}${e.message}`, { location, cause: e, exitCode: e.exitCode, ...(hint !== undefined ? { hint } : {}) });
  };
  let result: T;
  try {
    result = fn();
  } catch (e) {
    throw locate(e);
  }
  if (result instanceof Promise) {
    return result.catch((e: unknown) => {
      throw locate(e);
    }) as T;
  }
  return result;
}
