import type { Grants } from '@lowcloud/api';
import { callsFor, sortCalls } from './calls.js';
import { diffStates } from './diff.js';
import type { Plan, PlanCall, PlanState, Planner } from './types.js';
import { own } from '../own.js';

const PHASE = { earlyStart: 1, stop: 2, replaceConfig: 3, start: 4 } as const;

/**
 * Start-before-stop where it can be done: a process moving to another machine is started there
 * before the old instance stops, if the new machine has room for it next to everything still
 * running. An agent keys processes by name, so a replace on the same machine cannot run both
 * instances; it falls back to stop-then-start, and the plan says so.
 */
export const blueGreenPlanner: Planner = {
  name: 'blue-green',
  description: 'moves start on the new machine before stopping the old one when capacity allows; otherwise like minimal',
  reads: 'all',
  plan(a: PlanState, b: PlanState): Plan {
    const changes = diffStates(a, b);
    const calls: PlanCall[] = [];
    // What each machine holds while early starts run: everything of A, plus early starts so far.
    const load = new Map<string, Totals>();
    for (const p of Object.values(a.processes)) add(load, p.machine, p.spec.grants);

    for (const change of changes) {
      const c = callsFor(change, b);
      if (change.reason === 'moved' && c.start !== undefined && c.stop !== undefined) {
        const target = own(b.machines, c.start.machine);
        const grants = c.start.spec.grants;
        const room = target === undefined ? null : fits(load.get(target.name), grants, target.capacity);
        if (room === null) {
          add(load, c.start.machine, grants);
          calls.push({ ...c.start, phase: PHASE.earlyStart }, { ...c.stop, phase: PHASE.stop });
          change.actions = ['start', 'stop'];
          continue;
        }
        change.note = `no room on ${c.start.machine} to run both (${room}); stop then start`;
      }
      if (change.reason === 'replaced' || (change.reason === 'secret-changed' && c.start !== undefined)) change.note = 'same machine: an agent runs one instance per name; stop then start';
      if (c.stop !== undefined) calls.push({ ...c.stop, phase: PHASE.stop });
      if (c.replace !== undefined) calls.push({ ...c.replace, phase: PHASE.replaceConfig });
      if (c.start !== undefined) calls.push({ ...c.start, phase: PHASE.start });
      if (change.reason === 'moved' || change.reason === 'replaced' || (change.reason === 'secret-changed' && c.start !== undefined)) change.actions = ['stop', 'start'];
    }
    return { planner: 'blue-green', calls: sortCalls(calls), changes };
  },
};

interface Totals {
  cpu: number;
  memory: number;
  disk: number;
}

function add(load: Map<string, Totals>, machine: string, g: Grants): void {
  const t = load.get(machine) ?? { cpu: 0, memory: 0, disk: 0 };
  t.cpu += g.cpu ?? 0;
  t.memory += g.memory ?? 0;
  t.disk += g.disk ?? 0;
  load.set(machine, t);
}

/** null when it fits, else which dimension does not. */
function fits(t: Totals | undefined, g: Grants, cap: { cpu?: number; memory?: number; disk?: number }): string | null {
  const cur = t ?? { cpu: 0, memory: 0, disk: 0 };
  for (const dim of ['cpu', 'memory', 'disk'] as const) {
    const limit = cap[dim];
    if (limit !== undefined && cur[dim] + (g[dim] ?? 0) > limit + 1e-9) return `${dim} capacity`;
  }
  return null;
}
