import { describe, expect, it } from 'vitest';
import { ByteBudget, droppedNote } from './output-budget.js';

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
