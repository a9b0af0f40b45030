import { TsbuildError } from '../errors.js';

/**
 * SOURCE_DATE_EPOCH (https://reproducible-builds.org/specs/source-date-epoch/) as seconds,
 * or undefined when unset. A malformed value is a usage error, not silently ignored.
 */
export function sourceDateEpoch(env: NodeJS.ProcessEnv): number | undefined {
  const raw = env.SOURCE_DATE_EPOCH;
  if (raw === undefined || raw === '') return undefined;
  if (!/^\d+$/.test(raw)) {
    throw new TsbuildError('USAGE', `SOURCE_DATE_EPOCH must be a whole number of seconds, got ${JSON.stringify(raw)}`);
  }
  return Number(raw);
}

/** The `created` time of new images: SOURCE_DATE_EPOCH when set, else now (RFC 3339, UTC). */
export function createdTime(env: NodeJS.ProcessEnv, now: Date = new Date()): string {
  const epoch = sourceDateEpoch(env);
  return (epoch === undefined ? now : new Date(epoch * 1000)).toISOString().replace(/\.000Z$/, 'Z');
}
