import { describe, expect, it } from 'vitest';
import { HOST_OVERHEAD_BYTES, memoryLimits } from './memory.js';

describe('every limit one memory grant becomes, from one place', () => {
  it('pages, process limit, worker heap, host heap', () => {
    expect(memoryLimits(64 * 2 ** 20)).toEqual({ pages: 1024, processBytes: 64 * 2 ** 20 + HOST_OVERHEAD_BYTES, workerHeapMb: 16, hostHeapMb: 64 });
    expect(memoryLimits(1024 * 2 ** 20).workerHeapMb).toBe(256);
    expect(memoryLimits(16 * 2 ** 20).workerHeapMb).toBe(16);
  });

  it('no grant: the wasm32 maximum, no process limit, no worker cap', () => {
    expect(memoryLimits(undefined)).toEqual({ pages: 65536, processBytes: undefined, workerHeapMb: null, hostHeapMb: 64 });
  });
});
