import { FlagError } from '../errors.js';
import { blueGreenPlanner } from './blue-green.js';
import { minimalPlanner } from './minimal.js';
import type { Planner } from './types.js';

export const planners: Record<string, Planner> = {
  [minimalPlanner.name]: minimalPlanner,
  [blueGreenPlanner.name]: blueGreenPlanner,
};

export function getPlanner(name: string): Planner {
  const p = planners[name];
  if (p === undefined) {
    throw new FlagError(`--planner ${name}: unknown planner; use one of: ${Object.keys(planners).join(', ')}`);
  }
  return p;
}
