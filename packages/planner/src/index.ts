export * from './plan/index.js';
export { loadFromGit, loadFromWorkingTree } from './load.js';
export type { LoadedInfra } from './load.js';
export { applyPlan } from './apply/engine.js';
export type { ApplyResult, CallResult, ApplyOptions } from './apply/engine.js';
export { mapLimited } from './apply/limit.js';
