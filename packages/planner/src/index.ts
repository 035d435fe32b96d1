// What other packages (test/, bench/) use of @lowcloud/planner, by name; nothing else. The CLI
// commands are the separate entry @lowcloud/planner/cli.
export { loadForPlan, loadFromGit, loadFromWorkingTree } from './load.js';
export { minimalPlanner } from './plan/minimal.js';
export { buildDocument, parsePlanDocument } from './plan/document.js';
export { applyPlan } from './apply/engine.js';
export { mapLimited } from './apply/limit.js';
