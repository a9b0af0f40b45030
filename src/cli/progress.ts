import type { Writable } from 'node:stream';
import type { BuildEvent, BuildReporter } from '../build/events.js';

export type ProgressMode = 'auto' | 'plain' | 'tty' | 'json' | 'quiet';

/**
 * Renders build events. plain: docker/BuildKit-like lines (`#3 [2/4] COPY a /b`,
 * `#3 CACHED`, `#3 DONE 0.2s`), never truncated; json: one event per line; quiet: warnings only.
 * DEBT: tty mode (live, folded RUN output) renders as plain until RUN steps exist.
 */
export function createReporter(mode: ProgressMode, out: Writable): BuildReporter {
  const isTty = Boolean((out as { isTTY?: boolean }).isTTY);
  const effective = mode === 'auto' ? (isTty ? 'tty' : 'plain') : mode;
  if (effective === 'json') return (e: BuildEvent) => out.write(`${JSON.stringify({ time: new Date().toISOString(), ...e })}\n`);
  if (effective === 'quiet') {
    return (e) => {
      if (e.type === 'warning') out.write(`WARNING: ${e.message}\n`);
    };
  }
  return (e) => {
    switch (e.type) {
      case 'step-start':
        out.write(`#${e.id} ${e.name}\n`);
        return;
      case 'step-cached':
        out.write(`#${e.id} CACHED\n`);
        return;
      case 'step-done':
        out.write(`#${e.id} DONE ${(e.durationMs / 1000).toFixed(1)}s\n`);
        return;
      case 'step-error':
        out.write(`#${e.id} ERROR: ${e.message}\n`);
        return;
      case 'step-log':
        for (const line of e.text.split('\n')) if (line !== '') out.write(`#${e.id} ${line}\n`);
        return;
      case 'warning':
        out.write(`WARNING: ${e.location ? `${e.location.file}:${e.location.startLine}: ` : ''}${e.message}\n`);
        return;
      case 'info':
        out.write(`${e.message}\n`);
        return;
      default:
        e satisfies never;
    }
  };
}
