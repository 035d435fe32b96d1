export type { PlanState, PlanCall, CallKind, Change, ChangeReason, FieldChange, Plan, Planner } from './types.js';
export { diffStates, specFieldChanges } from './diff.js';
export { minimalPlanner } from './minimal.js';
export { blueGreenPlanner } from './blue-green.js';
export { planners, getPlanner } from './registry.js';
export { buildDocument, parsePlanDocument, stateDigest, PLAN_FORMAT_VERSION } from './document.js';
export type { PlanDocument, PlanMachine } from './document.js';
export { renderHuman, summaryLine, colours } from './render-human.js';
