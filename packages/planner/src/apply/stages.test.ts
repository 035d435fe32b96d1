import { describe, expect, it } from 'vitest';
import type { PlanCall } from '../plan/types.js';
import { stages } from './engine.js';

const stop = (machine: string, process: string, phase: number): PlanCall => ({ machine, call: 'stop', process, phase });
const start = (machine: string, process: string, phase: number): PlanCall => ({ machine, call: 'start', process, phase, spec: {} as never, specDigest: 'd' });

describe('stages: phases are barriers only where a process moves between machines', () => {
  it('no move: one stage, whatever the phases (each machine runs its calls in order)', () => {
    expect(stages([stop('m1', 'a', 1), start('m1', 'a', 3), stop('m2', 'b', 1), start('m3', 'c', 3)])).toEqual([new Set([1, 3])]);
  });

  it('a move (stop on one machine, start on another): the start waits for the stop', () => {
    expect(stages([stop('m1', 'a', 1), stop('m2', 'b', 1), start('m2', 'a', 3), start('m1', 'b', 3)]).map((s) => [...s])).toEqual([[1], [3]]);
    // minimal's three phases: the cut lies between the stop and the start.
    expect(stages([stop('m1', 'a', 1), { machine: 'm3', call: 'replace-config', process: 'c', phase: 2, config: {}, specDigest: 'd' }, start('m2', 'a', 3)]).map((s) => [...s])).toEqual([[1, 2], [3]]);
  });

  it("blue-green's move (start there first, then stop here): one cut for many moves", () => {
    const calls = [start('m2', 'a', 1), start('m1', 'b', 1), stop('m1', 'a', 2), stop('m2', 'b', 2), start('m3', 'c', 4)];
    expect(stages(calls).map((s) => [...s])).toEqual([[1], [2, 4]]);
  });
});
