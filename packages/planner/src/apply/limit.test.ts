import { describe, expect, it } from 'vitest';
import { mapLimited } from './limit.js';

describe('mapLimited', () => {
  it('never runs more than the limit at once and keeps input order', async () => {
    let running = 0;
    let peak = 0;
    const results = await mapLimited([30, 10, 20, 5, 15], 2, async (ms, i) => {
      running++;
      peak = Math.max(peak, running);
      await new Promise((r) => setTimeout(r, ms));
      running--;
      return i;
    });
    expect(peak).toBe(2);
    expect(results.map((r) => (r.status === 'fulfilled' ? r.value : -1))).toEqual([0, 1, 2, 3, 4]);
  });

  it('reports a failure without stopping the others', async () => {
    const results = await mapLimited(['a', 'b', 'c'], 3, async (x) => {
      if (x === 'b') throw new Error('b is down');
      return x;
    });
    expect(results[0]).toEqual({ status: 'fulfilled', value: 'a' });
    expect(results[1]?.status).toBe('rejected');
    expect(results[2]).toEqual({ status: 'fulfilled', value: 'c' });
  });

  it('rejects a nonsensical limit', async () => {
    await expect(mapLimited([1], 0, async (x) => x)).rejects.toThrow('parallelism must be a positive integer');
  });
});
