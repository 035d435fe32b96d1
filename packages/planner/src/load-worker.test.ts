import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { moduleGraph } from '../../../test/helpers/module-graph.js';

// A side worker of `lowcloud plan` loads its modules on the plan's path, while the other side's
// worker and the command load theirs on the same two cores: it takes the api's narrow infra entry
// (parse, check, resolve, hash), not the barrel with signing, the protocol, ws and the @noble
// libraries (the worker's modules loaded in 113-140 ms with them, 58-66 ms without). Checked on
// the sources: every module the worker reaches, statically or by `import()`, across packages.

const here = path.dirname(fileURLToPath(import.meta.url));

describe("plan's side worker", () => {
  it("loads neither the api's barrel nor signing, the protocol, ws or the @noble libraries", () => {
    const { files, bare } = moduleGraph([path.join(here, 'load-worker.ts')], true);
    expect(files).not.toContain('packages/api/src/index.ts');
    expect([...files].filter((f) => /signing|protocol|client|secrets\/sealed\.ts/.test(f))).toEqual([]);
    expect([...bare.keys()].filter((s) => s.startsWith('@noble/') || s === 'ws')).toEqual([]);
    // What it must reach is really walked: the resolver, the sealed format it checks, the state digest.
    expect([...files]).toEqual(expect.arrayContaining(['packages/api/src/infra/resolve.ts', 'packages/api/src/secrets/sealed-format.ts', 'packages/planner/src/plan/state-digest.ts']));
  });
});
