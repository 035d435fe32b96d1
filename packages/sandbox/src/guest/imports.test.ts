import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { moduleGraph } from '../../../../test/helpers/module-graph.js';

// A guest host loads its modules at every start, in its process and again in each guest's worker
// thread. `@lowcloud/api`'s barrel brings the infra file's parser, signing and ws with it
// (~110-150 ms to load here): guest code takes what it needs of the api from a narrow entry
// (`@lowcloud/api/grants/network`), or only types. Checked on the sources: every module the guest
// entries reach, statically or by `import()`.

const here = path.dirname(fileURLToPath(import.meta.url));
const ENTRIES = ['main.ts', 'worker.ts', 'shared.ts'].map((f) => path.join(here, f));

describe('the guest host modules', () => {
  it("load no value from @lowcloud/api's barrel (narrow entries and types only)", () => {
    const imports = moduleGraph(ENTRIES).bare;
    expect(imports.get('@lowcloud/api')).toBeUndefined();
    // The walk does reach the api, through its narrow entry: what this test looks at is really walked.
    expect(imports.get('@lowcloud/api/grants/network')).toBeDefined();
  });
});
