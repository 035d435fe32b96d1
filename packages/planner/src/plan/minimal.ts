import { callsFor, sortCalls } from './calls.js';
import { diffStates } from './diff.js';
import type { Plan, PlanCall, PlanState, Planner } from './types.js';

export const PHASE = { stop: 1, replaceConfig: 2, start: 3 } as const;

/**
 * The fewest calls that turn A into B: stops first (they free the grants later starts may need),
 * then config replacements, then starts. A replaced or moved process is down between its stop and
 * its start; `blue-green` trades capacity for that gap.
 */
export const minimalPlanner: Planner = {
  name: 'minimal',
  description: 'fewest calls; stops run first so freed grants can be reused (a replaced process is briefly down)',
  reads: 'changed',
  plan(a: PlanState, b: PlanState): Plan {
    const changes = diffStates(a, b);
    const calls: PlanCall[] = [];
    for (const change of changes) {
      const c = callsFor(change, b);
      if (c.stop !== undefined) calls.push({ ...c.stop, phase: PHASE.stop });
      if (c.replace !== undefined) calls.push({ ...c.replace, phase: PHASE.replaceConfig });
      if (c.start !== undefined) calls.push({ ...c.start, phase: PHASE.start });
      if (change.reason === 'moved' || change.reason === 'replaced' || (change.reason === 'secret-changed' && c.start !== undefined)) change.actions = ['stop', 'start'];
    }
    return { planner: 'minimal', calls: sortCalls(calls), changes };
  },
};
