import { describe, expect, it } from 'vitest';
import { Writable } from 'node:stream';
import { createReporter } from './progress.js';

function sink(tty: boolean): { out: Writable & { isTTY?: boolean; columns?: number }; text: () => string } {
  let buf = '';
  const out = new Writable({
    write(chunk: Buffer, _e, cb) {
      buf += chunk.toString();
      cb();
    },
  }) as Writable & { isTTY?: boolean; columns?: number };
  if (tty) {
    out.isTTY = true;
    out.columns = 60;
  }
  return { out, text: () => buf };
}

describe('progress reporters', () => {
  it('plain: docker-like lines, never truncated', () => {
    const s = sink(false);
    const r = createReporter('auto', s.out);
    const long = `RUN ${'x'.repeat(200)}`;
    r({ type: 'step-start', id: 1, name: long });
    r({ type: 'step-log', id: 1, stream: 'stdout', text: 'hello\nworld\n' });
    r({ type: 'step-done', id: 1, durationMs: 1234 });
    r({ type: 'step-start', id: 2, name: 'COPY a /b' });
    r({ type: 'step-cached', id: 2, name: 'COPY a /b', hit: true, source: 'local' });
    r({ type: 'step-start', id: 3, name: 'COPY c /d' });
    r({ type: 'step-miss', id: 3, hit: false, reason: '/d/x.py changed' });
    expect(s.text()).toBe(`#1 ${long}\n#1 hello\n#1 world\n#1 DONE 1.2s\n#2 COPY a /b\n#2 CACHED\n#3 COPY c /d\n#3 cache miss: /d/x.py changed\n`);
  });

  it('tty: redraws steps in place, states last, long names clipped to the width', () => {
    const s = sink(true);
    const r = createReporter('auto', s.out);
    r({ type: 'step-start', id: 1, name: `RUN ${'y'.repeat(200)}` });
    r({ type: 'step-log', id: 1, stream: 'stdout', text: 'building\n' });
    r({ type: 'step-error', id: 1, message: 'boom' });
    r({ type: 'step-start', id: 2, name: 'COPY a /b' });
    r({ type: 'step-cached', id: 2, name: 'COPY a /b' });
    r({ type: 'step-start', id: 3, name: 'RUN make' });
    r({ type: 'step-miss', id: 3, hit: false, reason: 'build arg VERSION changed' });
    r({ type: 'step-done', id: 3, durationMs: 100 });
    const text = s.text();
    expect(text).toContain('\x1b['); // cursor movement: redrawn in place
    const last = text.split('\x1b[2K').slice(-5).map((l) => l.replace(/\n$/, ''));
    expect(last[0]).toMatch(/^#1 RUN y+… {2}ERROR$/);
    expect(last[0]!.length).toBeLessThanOrEqual(60);
    expect(last[1]).toBe('    building');
    expect(last[2]).toBe('#2 COPY a /b  CACHED');
    expect(last[3]).toBe('#3 RUN make  0.1s');
    // Why it ran stays under the step once it is done.
    expect(last[4]).toBe('    cache miss: build arg VERSION changed');
  });

  it('json: one event per line', () => {
    const s = sink(false);
    const r = createReporter('json', s.out);
    r({ type: 'warning', message: 'w' });
    const e = JSON.parse(s.text()) as { type: string; message: string };
    expect(e).toMatchObject({ type: 'warning', message: 'w' });
  });
});
