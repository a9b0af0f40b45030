import { TsbuildError, isAbortError, type ErrorCode } from '../errors.js';

/**
 * Errors of the registry client. Every failure of an HTTP exchange passes through
 * `responseError` (a response we did not expect) or `transportError` (no response at all):
 * the one gate that decides the error code and whether trying again can help (`temporary`).
 * Retries read `temporary` and nothing else (STYLE.md 8).
 *
 * Messages name what was being fetched and the registry; they never contain credentials,
 * tokens or URLs with query strings (presigned blob URLs carry signatures).
 */
export class RegistryError extends TsbuildError {
  /** True when the same request may succeed later: 408, 429, 5xx, resets, timeouts, truncation. */
  readonly temporary: boolean;
  /** HTTP status, when there was a response. */
  readonly status: number | undefined;
  /** Wait asked for by Retry-After, in ms. */
  readonly retryAfterMs: number | undefined;
  /** The registry error codes from the body (`MANIFEST_UNKNOWN`, ...), if any. */
  readonly registryCodes: readonly string[];

  constructor(
    code: ErrorCode,
    message: string,
    opts: {
      readonly temporary: boolean;
      readonly status?: number | undefined;
      readonly retryAfterMs?: number | undefined;
      readonly registryCodes?: readonly string[];
      readonly hint?: string | undefined;
      readonly cause?: unknown;
    },
  ) {
    super(code, message, {
      ...(opts.hint !== undefined ? { hint: opts.hint } : {}),
      ...(opts.cause !== undefined ? { cause: opts.cause } : {}),
    });
    this.name = 'RegistryError';
    this.temporary = opts.temporary;
    this.status = opts.status;
    this.retryAfterMs = opts.retryAfterMs;
    this.registryCodes = opts.registryCodes ?? [];
  }
}

/** Whether an error is worth retrying: only a RegistryError that says so. */
export function isTemporary(e: unknown): boolean {
  return e instanceof RegistryError && e.temporary;
}

/** What a failing exchange was about, for messages: `manifest localhost:5000/app:v1`. */
export interface ExchangeContext {
  /** e.g. `manifest localhost:5000/app:v1`, `blob sha256:... of localhost:5000/app`. */
  readonly what: string;
  /** Registry name as the user wrote it (host[:port]). */
  readonly registry: string;
}

/** One entry of an OCI error body (distribution spec, "error codes"). */
interface RegistryErrorEntry {
  readonly code: string;
  readonly message: string;
}

const MAX_ERROR_BODY = 64 * 1024;

/** Parse `{"errors":[{"code","message"}]}`; anything else gives no entries. */
function parseErrorBody(body: string): RegistryErrorEntry[] {
  let value: unknown;
  try {
    value = JSON.parse(body);
  } catch {
    return [];
  }
  if (typeof value !== 'object' || value === null) return [];
  const errors = (value as { errors?: unknown }).errors;
  if (!Array.isArray(errors)) return [];
  const out: RegistryErrorEntry[] = [];
  for (const e of errors) {
    if (typeof e !== 'object' || e === null) continue;
    const code = (e as { code?: unknown }).code;
    const message = (e as { message?: unknown }).message;
    if (typeof code === 'string') out.push({ code, message: typeof message === 'string' ? message : '' });
  }
  return out;
}

/** Retry-After as delta-seconds or an HTTP date, in ms from now; undefined if absent or invalid. */
export function parseRetryAfter(value: string | undefined, now = Date.now()): number | undefined {
  if (value === undefined || value.trim() === '') return undefined;
  const v = value.trim();
  if (/^\d+$/.test(v)) return Number(v) * 1000;
  const t = Date.parse(v);
  return Number.isNaN(t) ? undefined : Math.max(0, t - now);
}

/**
 * The gate: an unexpected HTTP response becomes a RegistryError with the right code and
 * `temporary` flag. `body` is at most the first 64 KiB of the response body.
 */
export function responseError(status: number, body: string, retryAfter: string | undefined, ctx: ExchangeContext): RegistryError {
  const entries = parseErrorBody(body.slice(0, MAX_ERROR_BODY));
  const codes = entries.map((e) => e.code);
  const detail = entries
    .map((e) => (e.message !== '' ? e.message : e.code.toLowerCase().replace(/_/g, ' ')))
    .filter((m) => m !== '')
    .join('; ');
  const at = `(registry ${ctx.registry}, HTTP ${status})`;
  const said = detail !== '' ? `: ${detail}` : '';
  const retryAfterMs = parseRetryAfter(retryAfter);
  const base = { status, registryCodes: codes, retryAfterMs };
  const has = (c: string): boolean => codes.includes(c);

  if (status === 401) {
    return new RegistryError('REGISTRY_UNAUTHORIZED', `${ctx.what}: authentication required${said} ${at}`, {
      ...base,
      temporary: false,
      hint: `log in with \`tsbuild login ${ctx.registry}\`, or check the credentials stored for it`,
    });
  }
  if (status === 403 || has('DENIED')) {
    return new RegistryError('REGISTRY_DENIED', `${ctx.what}: access denied${said} ${at}`, {
      ...base,
      temporary: false,
      hint: 'the credentials in use are not allowed to do this; check the repository name and your permissions',
    });
  }
  if (status === 429 || has('TOOMANYREQUESTS')) {
    return new RegistryError('REGISTRY_TOO_MANY_REQUESTS', `${ctx.what}: too many requests${said} ${at}`, {
      ...base,
      temporary: true,
      hint: 'the registry is rate limiting; wait and try again, or log in for a higher limit',
    });
  }
  // What is unknown: the registry's code says so; a bare 404 is about what we asked for.
  const unknown = has('MANIFEST_UNKNOWN')
    ? 'manifest'
    : has('NAME_UNKNOWN')
      ? 'name'
      : has('BLOB_UNKNOWN') || has('MANIFEST_BLOB_UNKNOWN')
        ? 'blob'
        : status === 404 && ctx.what.startsWith('manifest')
          ? 'manifest'
          : status === 404 && ctx.what.startsWith('blob')
            ? 'blob'
            : undefined;
  if (unknown === 'manifest') {
    return new RegistryError('REGISTRY_MANIFEST_UNKNOWN', `${ctx.what}: not found${said} ${at}`, {
      ...base,
      temporary: false,
      hint: 'check the repository and tag; list tags with `skopeo list-tags docker://REPOSITORY`',
    });
  }
  if (unknown === 'name') {
    return new RegistryError('REGISTRY_NAME_UNKNOWN', `${ctx.what}: repository not found${said} ${at}`, {
      ...base,
      temporary: false,
      hint: 'check the repository name (and that you are logged in, for a private one)',
    });
  }
  if (unknown === 'blob') {
    return new RegistryError('REGISTRY_BLOB_UNKNOWN', `${ctx.what}: blob unknown to the registry${said} ${at}`, {
      ...base,
      temporary: false,
      hint: 'the registry lacks a blob the image refers to; the image in the registry is incomplete',
    });
  }
  if (status === 408 || (status >= 500 && status !== 501 && status !== 505)) {
    return new RegistryError('REGISTRY_UNAVAILABLE', `${ctx.what}: the registry failed${said} ${at}`, {
      ...base,
      temporary: true,
      hint: 'the registry had a temporary problem; try again later',
    });
  }
  if (has('MANIFEST_INVALID') || has('DIGEST_INVALID') || has('SIZE_INVALID') || has('BLOB_UPLOAD_INVALID') || has('NAME_INVALID') || has('TAG_INVALID')) {
    return new RegistryError('REGISTRY_ERROR', `${ctx.what}: refused by the registry${said} ${at}`, { ...base, temporary: false });
  }
  if (has('UNSUPPORTED') || status === 405 || status === 501) {
    return new RegistryError('REGISTRY_ERROR', `${ctx.what}: the registry does not support this operation${said} ${at}`, { ...base, temporary: false });
  }
  return new RegistryError('REGISTRY_ERROR', `${ctx.what}: unexpected response${said} ${at}`, { ...base, temporary: false });
}

/** The `code` of an error or of its cause chain (undici wraps system errors). */
function errorCodes(e: unknown): string[] {
  const out: string[] = [];
  let cur: unknown = e;
  for (let i = 0; i < 5 && typeof cur === 'object' && cur !== null; i++) {
    const code = (cur as { code?: unknown }).code;
    if (typeof code === 'string') out.push(code);
    cur = (cur as { cause?: unknown }).cause;
  }
  return out;
}

const TLS_CODES = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'ERR_TLS_CERT_ALTNAME_INVALID',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'ERR_SSL_WRONG_VERSION_NUMBER',
  'EPROTO',
]);

/**
 * The gate for exchanges that produced no response: DNS failure, refused connection, TLS
 * failure (permanent); resets, timeouts, truncated bodies (temporary). Aborts pass through.
 */
export function transportError(e: unknown, ctx: ExchangeContext): unknown {
  if (isAbortError(e) || e instanceof TsbuildError) return e;
  const codes = errorCodes(e);
  const has = (c: string): boolean => codes.includes(c);
  if (has('ENOTFOUND') || has('EAI_AGAIN') || has('EAI_NODATA')) {
    return new RegistryError('REGISTRY_UNREACHABLE', `${ctx.what}: cannot resolve the registry host ${ctx.registry}`, {
      temporary: false,
      hint: 'check the registry name in the reference and your DNS settings',
      cause: e,
    });
  }
  if (has('ECONNREFUSED') || has('EHOSTUNREACH') || has('ENETUNREACH')) {
    return new RegistryError('REGISTRY_UNREACHABLE', `${ctx.what}: cannot connect to the registry ${ctx.registry} (${codes[0] ?? 'connection failed'})`, {
      temporary: false,
      hint: 'check that the registry is running and the host and port are right',
      cause: e,
    });
  }
  const tls = codes.find((c) => TLS_CODES.has(c) || c.startsWith('ERR_SSL_') || c.startsWith('ERR_TLS_'));
  if (tls !== undefined) {
    return new RegistryError('REGISTRY_TLS', `${ctx.what}: TLS connection to ${ctx.registry} failed (${tls})`, {
      temporary: false,
      hint: `if the registry uses a private CA, pass it with --tls-ca-file (or SSL_CERT_FILE); for a registry without TLS use --insecure-registry ${ctx.registry}`,
      cause: e,
    });
  }
  const reason = codes[0] ?? (e instanceof Error ? e.message : String(e));
  return new RegistryError('REGISTRY_UNAVAILABLE', `${ctx.what}: connection to ${ctx.registry} failed (${reason})`, {
    temporary: true,
    hint: 'the connection broke; try again',
    cause: e,
  });
}

/** A response that breaks the protocol (missing Location, wrong digest header, ...). */
export function protocolError(message: string, ctx: ExchangeContext, temporary = false): RegistryError {
  return new RegistryError('REGISTRY_PROTOCOL', `${ctx.what}: ${message} (registry ${ctx.registry})`, { temporary });
}
