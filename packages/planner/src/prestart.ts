// What bin/lowcloud.js runs before it loads anything else: the early start of `plan`'s workers.
// Only Node.js modules load with it.
export { prestartPlan } from './side-thread.js';
