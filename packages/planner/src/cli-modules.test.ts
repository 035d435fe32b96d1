import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { moduleGraph } from '../../../test/helpers/module-graph.js';

// Every command (`up`, `apply`, `plan`, `status`, ...) loads its modules on the path a user waits
// on: checking requests that arrive (the generated request validator, ~430 KB of code, ~20 ms to
// load) is the agent's side, and cli-progress is loaded only when a terminal shows bars. Checked on
// the sources: every module the planner's commands reach, statically or by `import()`.

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '../../..');

describe("the planner's commands", () => {
  it('load neither the request validator nor cli-progress up front; the agent does load the validator', () => {
    const { files, bare } = moduleGraph([path.join(here, 'cli.ts')], true);
    // The walk reached the commands that talk to agents, so the check below means something.
    expect([...files]).toEqual(expect.arrayContaining(['packages/planner/src/apply/commands.ts', 'packages/api/src/client/index.ts', 'packages/planner/src/apply/progress.ts']));
    expect([...files].filter((f) => /generated\/request-validator|protocol\/(schema|requests)\.ts/.test(f))).toEqual([]);
    expect(bare.has('cli-progress')).toBe(false);
    const agent = moduleGraph([path.join(root, 'packages/node-agent/src/agent/connection.ts')], true);
    expect([...agent.files]).toContain('packages/api/src/generated/request-validator.ts');
  });
});
