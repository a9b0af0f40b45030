import type { Writable } from 'node:stream';
import type { BuildEvent, BuildReporter } from '../engine/index.js';

export type ProgressMode = 'auto' | 'plain' | 'tty' | 'json' | 'quiet';

/**
 * Renders build events. plain: docker/BuildKit-like lines (`#3 [2/4] COPY a /b`,
 * `#3 CACHED`, `#3 cache miss: /app/a.py changed`, `#3 DONE 0.2s`), never truncated; tty: one line per step redrawn in place
 * with its state and elapsed time, why it missed the cache and the live output of running steps
 * folded under it; json: one event per line (a hit's `hit`/`source`, a miss's `hit`/`reason`);
 * quiet: warnings only.
 */
export function createReporter(mode: ProgressMode, out: Writable): BuildReporter {
  const isTty = Boolean((out as { isTTY?: boolean }).isTTY);
  const effective = mode === 'auto' ? (isTty ? 'tty' : 'plain') : mode;
  if (effective === 'json') return (e: BuildEvent) => out.write(`${JSON.stringify({ time: new Date().toISOString(), ...e })}\n`);
  if (effective === 'tty') return ttyReporter(out);
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
      case 'step-miss':
        out.write(`#${e.id} cache miss: ${e.reason}\n`);
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

interface TtyStep {
  readonly id: number;
  readonly name: string;
  state: 'running' | 'cached' | 'done' | 'error';
  readonly started: number;
  durationMs?: number;
  /** Why it missed the cache, shown under it. */
  miss?: string;
  tail: string[];
}

const FOLDED_LINES = 6;

/** Live display for terminals: the whole step list is redrawn in place, at most 10 times a second. */
function ttyReporter(out: Writable): BuildReporter {
  const steps: TtyStep[] = [];
  const notes: string[] = [];
  let drawn = 0;
  let timer: NodeJS.Timeout | undefined;
  const width = () => Math.max(40, ((out as { columns?: number }).columns ?? 100) - 1);
  const clip = (s: string) => (s.length > width() ? `${s.slice(0, width() - 1)}…` : s);
  const render = () => {
    timer = undefined;
    const lines: string[] = [...notes];
    for (const s of steps) {
      const t = ((s.durationMs ?? Date.now() - s.started) / 1000).toFixed(1);
      const mark = s.state === 'cached' ? 'CACHED' : s.state === 'error' ? 'ERROR' : s.state === 'done' ? `${t}s` : `${t}s …`;
      const head = `#${s.id} `;
      const room = Math.max(10, width() - head.length - mark.length - 2);
      const name = s.name.length > room ? `${s.name.slice(0, room - 1)}…` : s.name;
      lines.push(`${head}${name}  ${mark}`);
      if (s.miss !== undefined) lines.push(clip(`    cache miss: ${s.miss}`));
      if (s.state === 'running' || s.state === 'error') for (const l of s.tail) lines.push(clip(`    ${l}`));
    }
    let buf = drawn > 0 ? `\x1b[${drawn}F` : '';
    for (const l of lines) buf += `\x1b[2K${l}\n`;
    if (drawn > lines.length) buf += '\x1b[J';
    out.write(buf);
    drawn = lines.length;
  };
  const schedule = () => {
    timer ??= setTimeout(render, 100);
  };
  const tick = setInterval(() => steps.some((s) => s.state === 'running') && schedule(), 500);
  tick.unref();
  return (e: BuildEvent) => {
    const step = 'id' in e ? steps.find((s) => s.id === e.id) : undefined;
    switch (e.type) {
      case 'step-start':
        steps.push({ id: e.id, name: e.name, state: 'running', started: Date.now(), tail: [] });
        break;
      case 'step-cached':
        if (step) step.state = 'cached';
        break;
      case 'step-miss':
        if (step) step.miss = e.reason;
        break;
      case 'step-done':
        if (step) Object.assign(step, { state: 'done', durationMs: e.durationMs });
        break;
      case 'step-error':
        if (step) step.state = 'error';
        break;
      case 'step-log':
        if (step) {
          step.tail.push(...e.text.split('\n').filter((l) => l !== ''));
          if (step.tail.length > FOLDED_LINES) step.tail.splice(0, step.tail.length - FOLDED_LINES);
        }
        break;
      case 'warning':
        notes.push(`WARNING: ${e.location ? `${e.location.file}:${e.location.startLine}: ` : ''}${e.message}`);
        break;
      case 'info':
        notes.push(e.message);
        break;
      default:
        e satisfies never;
    }
    if (e.type === 'step-start' || e.type === 'step-log') schedule();
    else {
      if (timer) clearTimeout(timer);
      render();
    }
  };
}
