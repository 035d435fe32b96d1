import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

// A guest host loads its modules at every start, in its process and again in each guest's worker
// thread. `@lowcloud/api`'s barrel brings the infra file's parser, signing and ws with it
// (~110-150 ms to load here): guest code takes what it needs of the api from a narrow entry
// (`@lowcloud/api/grants/network`), or only types. Checked on the sources: every module the guest
// entries reach, statically or by `import()`.

const here = path.dirname(fileURLToPath(import.meta.url));
const ENTRIES = ['main.ts', 'worker.ts', 'shared.ts'].map((f) => path.join(here, f));

/** The bare specifiers a module graph imports for its values (not `import type`), by the file that does. */
function valueImports(entries: string[]): Map<string, string[]> {
  const out = new Map<string, string[]>();
  const seen = new Set<string>();
  const walk = (file: string) => {
    if (seen.has(file)) return;
    seen.add(file);
    const text = fs.readFileSync(file, 'utf8');
    const specs = [...text.matchAll(/^(?:import|export)\s+(?!type\b)(?:[^;]*?\sfrom\s+)?'([^']+)'/gm), ...text.matchAll(/\bimport\('([^']+)'\)/g)].map((m) => m[1] as string);
    for (const spec of specs) {
      if (spec.startsWith('.')) walk(path.resolve(path.dirname(file), spec.replace(/\.js$/, '.ts')));
      else if (!spec.startsWith('node:')) out.set(spec, [...(out.get(spec) ?? []), path.relative(here, file)]);
    }
  };
  for (const e of entries) walk(e);
  return out;
}

describe('the guest host modules', () => {
  it("load no value from @lowcloud/api's barrel (narrow entries and types only)", () => {
    const imports = valueImports(ENTRIES);
    expect(imports.get('@lowcloud/api')).toBeUndefined();
    // The walk does reach the api, through its narrow entry: what this test looks at is really walked.
    expect(imports.get('@lowcloud/api/grants/network')).toBeDefined();
  });
});
