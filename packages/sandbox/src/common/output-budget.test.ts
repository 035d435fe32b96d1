import { afterEach, describe, expect, it, vi } from 'vitest';
import { ByteBudget, droppedNote, DroppingOutput } from './output-budget.js';

describe('ByteBudget', () => {
  it('gives its burst at once, then its rate, and says how long a debt takes to pay', () => {
    let t = 0;
    const b = new ByteBudget(1000, 4000, () => t);
    expect(b.take(4000)).toBe(0);
    // 500 bytes past it: half a second at 1,000 a second.
    expect(b.take(500)).toBe(500);
    t = 250;
    expect(b.waitFor(1)).toBe(251);
    t = 2000;
    // Refilled past the debt, but never above the burst.
    expect(b.tryTake(1500)).toBe(true);
    t = 100_000;
    expect(b.tryTake(4001)).toBe(false);
    expect(b.tryTake(4000)).toBe(true);
    expect(b.tryTake(1)).toBe(false);
  });

  it('a note that names the dropped bytes and the budget', () => {
    expect(droppedNote(123)).toBe("[lowcloud: 123 bytes of this guest's output dropped: over its budget of 16 MiB a second after 64 MiB at once]\n");
  });
});

describe('DroppingOutput', () => {
  afterEach(() => void vi.useRealTimers());

  it('a writer that ignores its budget (a host taken over): what is past it is counted, not passed on, and the note comes first once there is room', () => {
    vi.useFakeTimers();
    const passed: [number, string][] = [];
    const o = new DroppingOutput((fd, d) => passed.push([fd, Buffer.from(d).toString()]), new ByteBudget(1000, 4000, () => Date.now()), () => false, 100);
    o.write(1, Buffer.alloc(4000, 'a'));
    o.write(1, Buffer.from('past'));
    o.write(2, Buffer.from('also past'));
    expect(passed.map(([fd, t]) => [fd, t.length])).toEqual([[1, 4000]]);
    // The budget's room for 100 bytes comes in 100 ms; writes meanwhile are dropped too, even small.
    vi.advanceTimersByTime(50);
    o.write(1, Buffer.from('x'));
    vi.advanceTimersByTime(60);
    expect(passed[1]).toEqual([2, droppedNote(14)]);
    // The note is paid from the budget like any output; once that is, writes pass again.
    vi.advanceTimersByTime(200);
    o.write(1, Buffer.from('after'));
    expect(passed.at(-1)).toEqual([1, 'after']);
  });

  it('refused by `full` as by the budget; the note of what went comes at the end too', () => {
    const passed: string[] = [];
    let full = true;
    const o = new DroppingOutput((_fd, d) => passed.push(Buffer.from(d).toString()), new ByteBudget(), () => full);
    o.write(1, Buffer.from('queued past the bound'));
    full = false;
    o.end();
    expect(passed).toEqual([droppedNote(21)]);
  });
});
