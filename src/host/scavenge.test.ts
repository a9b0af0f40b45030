import v8 from 'node:v8';
import { describe, expect, it } from 'vitest';
import { noteDeadBuffers } from './scavenge.js';

const MiB = 1024 * 1024;
const external = (): number => v8.getHeapStatistics().external_memory;

describe('noteDeadBuffers', () => {
  it('frees buffers that died after they were promoted (a full GC once external memory passes the bar)', async () => {
    // 28 MiB of buffers alive through two scavenges: promoted to the old generation, where a
    // scavenge no longer frees them (and too few for V8 to start a full GC of its own).
    let held: Buffer[] | undefined = Array.from({ length: 28 }, () => Buffer.alloc(MiB, 1));
    noteDeadBuffers(4 * MiB);
    noteDeadBuffers(4 * MiB);
    expect(held.length).toBe(28);
    const alive = external();
    held = undefined;
    // Dead now; the streams go on noting buffers (32 MiB: the spacing between full GCs).
    for (let i = 0; i < 8; i++) noteDeadBuffers(4 * MiB);
    // V8 frees the backing stores on a thread of its own after the GC (within a second: V8's own
    // memory reducer would collect them only after several idle seconds).
    const deadline = Date.now() + 1000;
    while (external() > alive - 24 * MiB && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect(external()).toBeLessThan(alive - 24 * MiB);
  });
});
