import { describe, expect, it } from 'vitest';
import { mapBounded } from './map-bounded.js';

describe('mapBounded', () => {
  it('runs every item, at most `limit` at once, and returns each error in its place', async () => {
    let running = 0;
    let most = 0;
    const errors = await mapBounded(
      Array.from({ length: 40 }, (_, i) => i),
      8,
      async (i) => {
        running++;
        most = Math.max(most, running);
        await new Promise((r) => setTimeout(r, 1 + (i % 3)));
        running--;
        if (i % 10 === 3) throw new Error(`item ${i}`);
      },
    );
    expect(most).toBe(8);
    expect(errors.map((e, i) => (e === undefined ? null : `${i}: ${(e as Error).message}`)).filter((x) => x !== null)).toEqual(['3: item 3', '13: item 13', '23: item 23', '33: item 33']);
  });

  it('begins at most `perTurn` items in one turn of the event loop, so the first are under way before the rest begin', async () => {
    // Items that finish at once (a guest host's add is a message): with 256 allowed at once, all
    // would begin in the first turn; with 32 a turn, a turn of the event loop passes between each 32.
    // `turn` counts the loop's turns (an immediate that schedules the next).
    const turns: number[] = [];
    let turn = 0;
    const tick = () => {
      turn++;
      if (turn < 1000) setImmediate(tick);
    };
    setImmediate(tick);
    await mapBounded(
      Array.from({ length: 100 }, (_, i) => i),
      256,
      async () => {
        turns.push(turn);
      },
      32,
    );
    const perTurn = new Map<number, number>();
    for (const t of turns) perTurn.set(t, (perTurn.get(t) ?? 0) + 1);
    expect(Math.max(...perTurn.values())).toBeLessThanOrEqual(32);
    expect(perTurn.size).toBeGreaterThanOrEqual(4);
    expect(turns).toHaveLength(100);
  });
});
