import { describe, expect, it } from 'vitest';
import { cacheKeyFor, type CacheKey, type StepKeyInputs } from '../cache/index.js';
import { runCached } from './dispatch.js';
import { InFlightSteps } from './in-flight.js';

// The dispatcher's contract with InFlightSteps, over a plain in-memory record table: two
// operations on one key at the same time execute once; a failure lets the waiter run it.
const inputs: StepKeyInputs = { parent: 'scratch', kind: 'RUN', instruction: 'RUN make', epoch: undefined, platform: 'linux/amd64' } as StepKeyInputs;

function table() {
  const records = new Map<CacheKey, string>();
  return {
    records,
    op: (inFlight: InFlightSteps | undefined, execute: () => Promise<string>) => ({
      keyInputs: inputs,
      noCache: false,
      inFlight,
      lookup: async (key: CacheKey) => (records.has(key) ? { value: records.get(key)! } : undefined),
      execute: async () => ({ value: await execute() }),
      record: async (key: CacheKey, value: string) => void records.set(key, value),
    }),
  };
}

const tick = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('runCached with steps in flight', () => {
  it('runs a key two operations reach at once a single time; the other takes it as a hit', async () => {
    const t = table();
    const shared = new InFlightSteps();
    let runs = 0;
    const slow = async () => {
      runs++;
      await tick(50);
      return `result-${runs}`;
    };
    const [a, b] = await Promise.all([runCached(t.op(shared, slow)), runCached(t.op(shared, slow))]);
    expect(runs).toBe(1);
    expect([a.cached, b.cached].sort()).toEqual([false, true]);
    expect(a.value).toBe(b.value);
    expect(a.key).toBe(cacheKeyFor(inputs));
    expect(shared.running(a.key)).toBeUndefined();
  });

  it('without a shared set both run (the test above can fail)', async () => {
    const t = table();
    let runs = 0;
    const slow = async () => {
      runs++;
      await tick(20);
      return `result-${runs}`;
    };
    await Promise.all([runCached(t.op(new InFlightSteps(), slow)), runCached(t.op(new InFlightSteps(), slow))]);
    expect(runs).toBe(2);
  });

  it('a failure of the running operation lets the waiter run the step itself', async () => {
    const t = table();
    const shared = new InFlightSteps();
    const failing = runCached(t.op(shared, async () => {
      await tick(30);
      throw new Error('step failed');
    }));
    await tick(5);
    let waiterRan = false;
    const waiter = runCached(t.op(shared, async () => {
      waiterRan = true;
      return 'made by the waiter';
    }));
    await expect(failing).rejects.toThrow('step failed');
    const r = await waiter;
    expect(waiterRan).toBe(true);
    expect(r).toMatchObject({ value: 'made by the waiter', cached: false });
  });

  it('a waiter whose own step fails reports its own failure', async () => {
    const t = table();
    const shared = new InFlightSteps();
    const first = runCached(t.op(shared, async () => {
      await tick(20);
      throw new Error('first failed');
    }));
    await tick(5);
    const second = runCached(t.op(shared, async () => {
      throw new Error('second failed');
    }));
    await expect(first).rejects.toThrow('first failed');
    await expect(second).rejects.toThrow('second failed');
  });
});

describe('a waiter is cancelled', () => {
  it('stops waiting as soon as its signal aborts, without the running operation finishing', async () => {
    const t = table();
    const shared = new InFlightSteps();
    let release!: () => void;
    const running = runCached(t.op(shared, () => new Promise<string>((r) => (release = () => r('late')))));
    await tick(5);
    const ac = new AbortController();
    const waiter = runCached({ ...t.op(shared, async () => 'never'), signal: ac.signal });
    await tick(5);
    ac.abort(new Error('cancelled'));
    await expect(waiter).rejects.toThrow('cancelled');
    release();
    await expect(running).resolves.toMatchObject({ value: 'late', cached: false });
  });
});
