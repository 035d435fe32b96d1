export * from './plan/index.js';
export { loadFromGit, loadFromWorkingTree } from './load.js';
export type { LoadedInfra } from './load.js';
